import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import {
  GUIX,
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
  readFixture,
  TEST_KEY,
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
 * The cache across regions: two nodes, each with its own PostgreSQL, in a replication
 * mesh; the real nix uploads to one and downloads from the other, signatures required.
 */
if (!HAVE_NIX) console.warn(`cache-replication: ${NO_NIX_MESSAGE}`);

const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const PEER_TOKEN = "peer-token-0123456789abcdef0";

const dir = useSuiteTempDir("geospool-cache-repl-");
let cluster: TestCluster | undefined;
let GUIX_KEY_FILE = "";

beforeAll(async () => {
  if (!HAVE_NIX) return;
  GUIX_KEY_FILE = join(dir.path, "guix-signing-key.pub");
  await writeFile(
    GUIX_KEY_FILE,
    "(public-key (ecc (curve Ed25519) (q #239E994B9C3302A466FD5034D7FF90FEA287312BA1093E72DD195D036100C1FC#)))\n",
  );
  cluster = await startTestCluster({
    n: 2,
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

describe.skipIf(!HAVE_NIX)("the binary cache across two nodes", () => {
  it("nix copy --to node 1; node 2 serves the closure to nix copy --from, signatures required", async () => {
    const a = `http://127.0.0.1:${cluster!.node(0).httpPort}`;
    const b = `http://127.0.0.1:${cluster!.node(1).httpPort}`;
    const local = join(dir.path, "local");
    await seedStore(dir.path, local);
    const netrc = await writeNetrc(join(dir.path, "netrc"), UPLOAD_TOKEN);
    const up = await nixCopyTo(dir.path, local, a, netrc);
    expect(up.code, up.stderr).toBe(0);

    const port = cluster!.node(1).httpPort;
    for (const hash of ["l493h11hsb577v1lhgwxzcmxh4q2m02w", "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx"]) {
      await vi.waitFor(
        async () => {
          const [r] = await rawHttp(port, [get(`/${hash}.narinfo`)]);
          expect(r!.status).toBe(200);
        },
        { timeout: 60_000, interval: 200 },
      );
    }
    const down = await nixCopyFrom(dir.path, b, join(dir.path, "fresh"), TEST_KEY);
    expect(down.code, down.stderr).toBe(0);
    const absent = await runNix(
      ["path-info", "--store", b, "/nix/store/aaaah11hsb577v1lhgwxzcmxh4q2m02w-nope"],
      dir.path,
    );
    expect(absent.stderr).toMatch(/is not valid/);
  }, 180_000);

  it("the same path uploaded to both nodes at once, in two compressions, ends as one served narinfo", async () => {
    const file = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f.narinfo";
    const upload = (i: number, cache: string) => {
      const bytes = readFixture(cache, file);
      const url = parseNarinfo(bytes).url;
      return rawHttp(cluster!.node(i).httpPort, [
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
          [0, 1].map(
            async (i) => (await rawHttp(cluster!.node(i).httpPort, [get(`/${file}`)]))[0]!.body,
          ),
        );
        expect(served[0]!.equals(served[1]!)).toBe(true);
        expect(variants.some((v) => v.equals(served[0]!))).toBe(true);
        // Both nodes hold both entries: each serves the nar its narinfo names.
        const url = parseNarinfo(served[0]!).url;
        for (const i of [0, 1]) {
          const [nar] = await rawHttp(cluster!.node(i).httpPort, [get(`/${url}`)]);
          expect(nar!.status).toBe(200);
        }
      },
      { timeout: 60_000, interval: 200 },
    );
  }, 120_000);

  it("Guix narinfos uploaded with curl-style PUTs to node 1 are served byte for byte by node 2, pipelined", async () => {
    const fixtures = narinfoFixtures(GUIX);
    const requests: Buffer[] = [];
    for (const [file, bytes] of fixtures) {
      for (const f of parseNarinfo(bytes).files)
        requests.push(put(`/${f.url}`, readFixture(GUIX, f.url), UPLOAD_TOKEN));
      requests.push(put(`/${file}`, bytes, UPLOAD_TOKEN));
    }
    const answers = await rawHttp(cluster!.node(0).httpPort, [
      ...requests,
      Buffer.from(get("/nix-cache-info")),
    ]);
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 200));

    const port = cluster!.node(1).httpPort;
    const order = [...fixtures, ...fixtures.slice().reverse()];
    await vi.waitFor(
      async () => {
        const served = await rawHttp(
          port,
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
        const [nar] = await rawHttp(port, [get(`/${f.url}`)]);
        expect(nar!.body.equals(readFixture(GUIX, f.url))).toBe(true);
      }
    }
  }, 120_000);
});
