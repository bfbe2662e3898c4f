import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { RejectionLog } from "../../src/cache/rejection-log.js";
import type { RunningNode } from "../../src/node/node.js";
import {
  GUIX,
  NIX_XZ,
  narinfoFixtures,
  readFixture,
  TEST_KEY,
  writeGuixKeyFile,
} from "../helpers/cache-fixtures.js";
import {
  HAVE_NIX,
  NO_NIX_MESSAGE,
  nixCopyFrom,
  nixCopyTo,
  seedStore,
  writeNetrc,
} from "../helpers/nix-cli.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * A narinfo uploaded before its nar, on a real node over real HTTP: held (202, never
 * served) until the nar comes, then checked and served; rejected and kept as such when the
 * nar does not come within cache.narWait. Nix 2.8's own order (nar first) still works.
 */
if (!HAVE_NIX) console.warn(`cache-narinfo-first: ${NO_NIX_MESSAGE}`);

const TOKEN = "upload-token-0123456789abcdef";
const NAR_WAIT_MS = 3_000;
const dir = useSuiteTempDir("geospool-cache-narinfo-first-");
const rejectedDir = () => join(dir.path, "rejected");
let pg: TestPostgres[] = [];
let node: RunningNode | undefined;

beforeAll(async () => {
  const guixKey = await writeGuixKeyFile(dir.path);
  pg = await startPostgresServers(1, { dir: join(dir.path, "pg") });
  node = await startTestNode({
    id: "n1",
    dir: dir.path,
    postgresUrl: pg[0]!.url,
    config: {
      spool: { queues: ["inbox", "dead", "cache"] },
      cache: {
        enabled: true,
        trustedPublicKeys: [TEST_KEY],
        trustedGuixKeysFile: guixKey,
        uploadTokens: [{ name: "ci", token: TOKEN }],
        narWait: `${NAR_WAIT_MS}ms`,
        rejectedDir: rejectedDir(),
      },
    },
  });
}, 120_000);
afterAll(async () => {
  await node?.stop();
  await stopPostgresServers(pg);
}, 60_000);

const port = () => node!.cachePort!;

async function fetch(path: string) {
  const [r] = await rawHttp(port(), [get(path)]);
  return r!;
}

describe("a narinfo uploaded before its nar", () => {
  it("is held, not served, until its nar comes, then served with it", async () => {
    const [file, bytes] = narinfoFixtures(NIX_XZ)[0]!;
    const url = parseNarinfo(bytes).url;
    const [held, early] = await rawHttp(port(), [put(`/${file}`, bytes, TOKEN), get(`/${file}`)]);
    expect(held!.status).toBe(202);
    expect(held!.body.toString()).toMatch(/^held: /);
    expect(early!.status).toBe(404);

    const [nar] = await rawHttp(port(), [put(`/${url}`, readFixture(NIX_XZ, url), TOKEN, true)]);
    expect(nar!.status).toBe(200);
    // The nar's answer comes once the held narinfo is stored.
    expect(nar!.body.toString()).toBe(`ok\n${file}: stored\n`);
    const served = await fetch(`/${file}`);
    expect(served.status).toBe(200);
    expect(served.body).toEqual(bytes);
    expect((await fetch(`/${url}`)).body).toEqual(readFixture(NIX_XZ, url));
  });

  it("is rejected with its reason when the nar does not come within cache.narWait, never served", async () => {
    const [file, bytes] = narinfoFixtures(NIX_XZ)[1]!;
    const hashPart = file.slice(0, 32);
    const heldAt = Date.now();
    const [held] = await rawHttp(port(), [put(`/${file}`, bytes, TOKEN, true)]);
    expect(held!.status).toBe(202);
    let polls = 0;
    const kept = await vi.waitFor(
      async () => {
        // Never served while it waits, nor after.
        expect((await fetch(`/${file}`)).status).toBe(404);
        polls++;
        const rejections = await RejectionLog.read(rejectedDir());
        const mine = rejections.find((r) => r.hashPart === hashPart);
        expect(mine).toBeDefined();
        return mine!;
      },
      { timeout: 30_000, interval: 200 },
    );
    expect(polls).toBeGreaterThan(1);
    expect(kept.at - heldAt).toBeGreaterThanOrEqual(NAR_WAIT_MS - 50);
    expect(kept).toMatchObject({ reason: "nar_missing", by: "ci" });
    expect((await fetch(`/${file}`)).status).toBe(404);
    // Its nar coming later stores nothing: the narinfo is gone.
    const url = parseNarinfo(bytes).url;
    const [late] = await rawHttp(port(), [put(`/${url}`, readFixture(NIX_XZ, url), TOKEN, true)]);
    expect(late!.body.toString()).toBe("ok\n");
    expect((await fetch(`/${file}`)).status).toBe(404);
  }, 60_000);

  it("of a Guix narinfo listing two nars waits for both, then serves it byte for byte", async () => {
    const [file, bytes] = narinfoFixtures(GUIX)[0]!;
    const urls = parseNarinfo(bytes).files.map((f) => f.url);
    expect(urls).toHaveLength(2);
    // One request at a time: a nar PUT pipelined behind the narinfo would already be
    // streaming when the narinfo is looked at (it then waits for it, as for Nix's order).
    const [held] = await rawHttp(port(), [put(`/${file}`, bytes, TOKEN, true)]);
    const [first] = await rawHttp(port(), [
      put(`/${urls[0]}`, readFixture(GUIX, urls[0]!), TOKEN, true),
    ]);
    expect(held!.status).toBe(202);
    expect(first!.body.toString()).toBe("ok\n");
    expect((await fetch(`/${file}`)).status).toBe(404);
    const [second] = await rawHttp(port(), [
      put(`/${urls[1]}`, readFixture(GUIX, urls[1]!), TOKEN, true),
    ]);
    expect(second!.body.toString()).toBe(`ok\n${file}: stored\n`);
    expect((await fetch(`/${file}`)).body).toEqual(bytes);
    for (const u of urls) expect((await fetch(`/${u}`)).body).toEqual(readFixture(GUIX, u));
  });

  it("a narinfo that could never be served is refused at once, not held", async () => {
    const [file, bytes] = narinfoFixtures(NIX_XZ)[2]!;
    const unsigned = bytes
      .toString()
      .split("\n")
      .filter((l) => !l.startsWith("Sig: "))
      .join("\n");
    const [r] = await rawHttp(port(), [put(`/${file}`, unsigned, TOKEN, true)]);
    expect(r!.status).toBe(400);
    expect(r!.body.toString()).toMatch(/^rejected \(unsigned\)/);
  });

  it.skipIf(!HAVE_NIX)(
    "Nix 2.8's own order (nar, then narinfo) still stores at once",
    async () => {
      const cache = `http://127.0.0.1:${port()}`;
      const local = join(dir.path, "local");
      await seedStore(dir.path, local);
      const netrc = await writeNetrc(join(dir.path, "netrc"), TOKEN, "ci");
      const up = await nixCopyTo(dir.path, local, `${cache}?compression=zstd`, netrc);
      expect(up.code, up.stderr).toBe(0);
      const down = await nixCopyFrom(
        join(dir.path, "client"),
        cache,
        join(dir.path, "fresh"),
        TEST_KEY,
      );
      expect(down.code, down.stderr).toBe(0);
    },
    120_000,
  );
});
