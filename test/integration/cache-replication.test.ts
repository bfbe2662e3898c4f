import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import {
  APP_PATH,
  GUIX,
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
  readFixture,
  TEST_KEY,
  writeGuixKeyFile,
} from "../helpers/cache-fixtures.js";
import { startTestCluster, type TestCluster } from "../helpers/cluster.js";
import {
  HAVE_NIX,
  NO_NIX_MESSAGE,
  nixCopyFrom,
  nixCopyTo,
  runNix,
  seedStore,
  writeNetrc,
} from "../helpers/nix-cli.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The cache across regions, the acceptance of issue #10: three nodes A, B, C, each with its
 * own PostgreSQL, in a replication mesh. The real nix uploads to A and downloads from C,
 * signatures required, and asks B for present and absent paths; tampered and
 * unauthenticated uploads change nothing on any node; one path uploaded to A and B at once
 * converges on all three; Guix's narinfos and nars PUT with curl-style requests are served
 * byte for byte by all three to pipelined GETs.
 */
if (!HAVE_NIX) console.warn(`cache-replication: ${NO_NIX_MESSAGE}`);

const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const PEER_TOKEN = "peer-token-0123456789abcdef0";

const dir = useSuiteTempDir("geospool-cache-repl-");
let cluster: TestCluster | undefined;
let GUIX_KEY_FILE = "";

beforeAll(async () => {
  if (!HAVE_NIX) return;
  GUIX_KEY_FILE = await writeGuixKeyFile(dir.path);
  cluster = await startTestCluster({
    n: 3,
    dir: dir.path,
    config: {
      spool: {
        queues: ["inbox", "outbox", "dead", "cache"],
        leases: { grace: "0ms", deadLetterQueue: "dead" },
      },
      auth: {
        tokens: [
          {
            name: "uploader",
            token: UPLOAD_TOKEN,
            permissions: [{ queues: ["cache"], actions: ["enqueue"] }],
          },
          {
            name: "peers",
            token: PEER_TOKEN,
            permissions: [{ queues: ["*"], actions: ["dequeue"] }],
          },
        ],
      },
      // The peers fetch nars too large for the journal row with this token.
      replication: { token: PEER_TOKEN },
      cache: {
        enabled: true,
        trustedPublicKeys: [TEST_KEY],
        trustedGuixKeysFile: GUIX_KEY_FILE,
        // Replicated entries are indexed as they are placed, not by the periodic refresh.
        refreshEvery: "1h",
      },
    },
  });
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
}, 120_000);

const NODES = [0, 1, 2];
const port = (i: number) => cluster!.node(i).cachePort!;
const url = (i: number) => `http://127.0.0.1:${port(i)}`;

async function statusOn(i: number, path: string): Promise<number> {
  return (await rawHttp(port(i), [get(path)]))[0]!.status;
}

/** Wait until every node serves `path`. */
async function servedEverywhere(path: string): Promise<void> {
  await vi.waitFor(
    async () => {
      for (const i of NODES) expect(await statusOn(i, path)).toBe(200);
    },
    { timeout: 60_000, interval: 200 },
  );
}

describe.skipIf(!HAVE_NIX)("the binary cache across three nodes", () => {
  it("nix copy --to A; C serves the closure to nix copy --from, signatures required; B answers path-info", async () => {
    const local = join(dir.path, "local");
    await seedStore(dir.path, local);
    const netrc = await writeNetrc(join(dir.path, "netrc"), UPLOAD_TOKEN);
    const up = await nixCopyTo(dir.path, local, url(0), netrc);
    expect(up.code, up.stderr).toBe(0);

    for (const hash of ["l493h11hsb577v1lhgwxzcmxh4q2m02w", "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx"]) {
      await servedEverywhere(`/${hash}.narinfo`);
    }
    // A fresh client (its own XDG_CACHE_HOME) and a fresh store.
    const client = join(dir.path, "client-c");
    const fresh = join(dir.path, "fresh");
    const down = await nixCopyFrom(client, url(2), fresh, TEST_KEY);
    expect(down.code, down.stderr).toBe(0);
    const infoOf = async (store: string) => {
      const r = await runNix(
        ["path-info", "--json", "--recursive", "--store", store, APP_PATH],
        client,
      );
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as Array<{ path: string; narHash: string; narSize: number }>)
        .map((p) => [p.path, p.narHash, p.narSize])
        .sort();
    };
    const copied = await infoOf(fresh);
    expect(copied).toHaveLength(2);
    expect(copied).toEqual(await infoOf(local));

    const onB = join(dir.path, "client-b");
    const present = await runNix(["path-info", "--store", url(1), APP_PATH], onB);
    expect(present.code, present.stderr).toBe(0);
    expect(present.stdout.trim()).toBe(APP_PATH);
    const absent = await runNix(
      ["path-info", "--store", url(1), "/nix/store/aaaah11hsb577v1lhgwxzcmxh4q2m02w-nope"],
      onB,
    );
    expect(absent.code).not.toBe(0);
    expect(absent.stderr).toMatch(/is not valid/);
  }, 180_000);

  it("tampered and unauthenticated uploads change nothing on any node", async () => {
    const file = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f.narinfo";
    const bytes = readFixture(NIX_XZ, file).toString();
    const info = parseNarinfo(Buffer.from(bytes));
    const nar = readFixture(NIX_XZ, info.url);
    const narSize = bytes.replace(/^NarSize: \d+$/m, `NarSize: ${info.narSize + 1}`);
    const fileHash = bytes.replace(/^FileHash: sha256:.*$/m, `FileHash: sha256:${"0".repeat(52)}`);
    const entries = async () => (await cluster!.node(0).spool.list("cache")).length;
    const before = await entries();
    const answers = await rawHttp(port(0), [
      put(`/${info.url}`, nar, UPLOAD_TOKEN),
      put(`/${file}`, narSize, UPLOAD_TOKEN),
      put(`/${info.url}`, nar, UPLOAD_TOKEN),
      put(`/${file}`, fileHash, UPLOAD_TOKEN, true),
    ]);
    expect(answers.map((r) => r.status)).toEqual([200, 400, 200, 400]);
    // The xz nar is read (no further than the NarSize declared) before signatures are looked at.
    expect(answers[1]!.body.toString()).toMatch(/^rejected \(nar_size\)/);
    expect(answers[3]!.body.toString()).toMatch(/^rejected \(file_hash\)/);
    const [noToken] = await rawHttp(port(1), [put(`/${info.url}`, nar, null, true)]);
    const [noToken2] = await rawHttp(port(1), [put(`/${file}`, bytes, null, true)]);
    const [badToken] = await rawHttp(port(2), [
      put(`/${file}`, bytes, "not-a-token-0123456789", true),
    ]);
    expect([noToken!.status, noToken2!.status, badToken!.status]).toEqual([401, 401, 401]);

    // A valid upload to A after them: once B and C serve it, they have seen everything A
    // stored before it (the journal keeps A's order).
    const [guixFile, guixBytes] = narinfoFixtures(GUIX)[2]!;
    const guixFiles = parseNarinfo(guixBytes).files;
    const sentinel = await rawHttp(port(0), [
      ...guixFiles.map((f) => put(`/${f.url}`, readFixture(GUIX, f.url), UPLOAD_TOKEN)),
      put(`/${guixFile}`, guixBytes, UPLOAD_TOKEN, true),
    ]);
    expect(sentinel.map((r) => r.status)).toEqual(sentinel.map(() => 200));
    await servedEverywhere(`/${guixFile}`);
    for (const i of NODES) {
      expect(await statusOn(i, `/${file}`)).toBe(404);
      expect(await statusOn(i, `/${info.url}`)).toBe(404);
    }
    expect(await entries()).toBe(before + guixFiles.length);
  }, 120_000);

  it("the same path uploaded to A and B at once, in two compressions, ends as one narinfo served by all three", async () => {
    const file = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f.narinfo";
    const upload = (i: number, cache: string) => {
      const bytes = readFixture(cache, file);
      const url = parseNarinfo(bytes).url;
      return rawHttp(port(i), [
        put(`/${url}`, readFixture(cache, url), UPLOAD_TOKEN),
        put(`/${file}`, bytes, UPLOAD_TOKEN, true),
      ]);
    };
    const [onA, onB] = await Promise.all([upload(0, NIX_XZ), upload(1, NIX_ZSTD)]);
    expect(onA!.map((r) => r.status)).toEqual([200, 200]);
    expect(onB!.map((r) => r.status)).toEqual([200, 200]);
    const variants = [readFixture(NIX_XZ, file), readFixture(NIX_ZSTD, file)];
    await vi.waitFor(
      async () => {
        const served = await Promise.all(
          NODES.map(async (i) => (await rawHttp(port(i), [get(`/${file}`)]))[0]!.body),
        );
        expect(served[0]!.equals(served[1]!)).toBe(true);
        expect(served[0]!.equals(served[2]!)).toBe(true);
        expect(variants.some((v) => v.equals(served[0]!))).toBe(true);
        // Every node holds both entries: each serves the nar its narinfo names.
        const narUrl = parseNarinfo(served[0]!).url;
        for (const i of NODES) expect(await statusOn(i, `/${narUrl}`)).toBe(200);
      },
      { timeout: 60_000, interval: 200 },
    );
  }, 120_000);

  it("Guix narinfos uploaded with curl-style PUTs to A are served byte for byte by all three, pipelined", async () => {
    const fixtures = narinfoFixtures(GUIX);
    const requests: Buffer[] = [];
    for (const [file, bytes] of fixtures) {
      for (const f of parseNarinfo(bytes).files)
        requests.push(put(`/${f.url}`, readFixture(GUIX, f.url), UPLOAD_TOKEN));
      requests.push(put(`/${file}`, bytes, UPLOAD_TOKEN));
    }
    const answers = await rawHttp(port(0), [...requests, Buffer.from(get("/nix-cache-info"))]);
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 200));

    const order = [...fixtures, ...fixtures.slice().reverse()];
    for (const node of NODES) {
      await vi.waitFor(
        async () => {
          const served = await rawHttp(
            port(node),
            order.map(([file], i) => get(`/${file}`, {}, "GET", i === order.length - 1)),
          );
          expect(served.map((r) => r.status)).toEqual(order.map(() => 200));
          for (const [i, [, bytes]] of order.entries())
            expect(served[i]!.body.equals(bytes)).toBe(true);
        },
        { timeout: 60_000, interval: 200 },
      );
      for (const [, bytes] of fixtures) {
        for (const f of parseNarinfo(bytes).files) {
          const [nar] = await rawHttp(port(node), [get(`/${f.url}`)]);
          expect(nar!.body.equals(readFixture(GUIX, f.url))).toBe(true);
        }
      }
    }
  }, 120_000);
});
