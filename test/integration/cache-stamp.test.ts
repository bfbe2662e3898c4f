import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { stampMs } from "../../src/cache/upload-stamp.js";
import { NIX_XZ, NIX_ZSTD, readFixture, TEST_KEY } from "../helpers/cache-fixtures.js";
import { startTestCluster, type TestCluster } from "../helpers/cluster.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Upload stamps are the cluster's hybrid logical clock, not the accepting node's wall clock
 * (src/cache/upload-stamp.ts). Two nodes, each with its own PostgreSQL; B's wall clock runs
 * an hour behind A's. A path uploaded to A and served by B, then uploaded again to B in
 * another compression, stays served as A's upload on both (by wall clocks B's upload would
 * be an hour "older" and replace it everywhere). A path uploaded to both at once ends as
 * the same narinfo on both: the candidate first by (stamp, origin, entry).
 */

const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const PEER_TOKEN = "peer-token-0123456789abcdef0";
const SKEW_MS = 3_600_000;

const dir = useSuiteTempDir("geospool-cache-stamp-");
let cluster: TestCluster | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({
    n: 2,
    dir: dir.path,
    clocks: [undefined, () => Date.now() - SKEW_MS],
    config: {
      spool: {
        queues: ["inbox", "dead", "cache"],
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
      replication: { token: PEER_TOKEN },
      cache: { enabled: true, trustedPublicKeys: [TEST_KEY], refreshEvery: "1h" },
    },
  });
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
}, 120_000);

const NODES = [0, 1];
const port = (i: number) => cluster!.node(i).cachePort!;

function upload(i: number, cache: string, file: string) {
  const bytes = readFixture(cache, file);
  const url = parseNarinfo(bytes).url;
  return rawHttp(port(i), [
    put(`/${url}`, readFixture(cache, url), UPLOAD_TOKEN),
    put(`/${file}`, bytes, UPLOAD_TOKEN, true),
  ]);
}

async function servedOn(i: number, file: string): Promise<Buffer | undefined> {
  const [r] = await rawHttp(port(i), [get(`/${file}`)]);
  return r!.status === 200 ? r!.body : undefined;
}

interface Row {
  entry: string;
  origin: string;
  hlc: string;
}

/** Node i's index rows of `hashPart` (its own PostgreSQL). */
async function rowsOn(i: number, hashPart: string): Promise<Row[]> {
  const db = new pg.Client({ connectionString: cluster!.postgres[i]!.url });
  await db.connect();
  try {
    const { rows } = await db.query<Row>(
      "select entry, origin, hlc::text from cache_entries where hash_part = $1 order by entry",
      [hashPart],
    );
    return rows;
  } finally {
    await db.end();
  }
}

/** Wait until both nodes hold both uploads of `hashPart` and serve one narinfo for it. */
async function converged(hashPart: string): Promise<Buffer> {
  let served: Buffer | undefined;
  await vi.waitFor(
    async () => {
      for (const i of NODES) expect(await rowsOn(i, hashPart)).toHaveLength(2);
      const [a, b] = await Promise.all(NODES.map((i) => servedOn(i, `${hashPart}.narinfo`)));
      expect(a).toBeDefined();
      expect(a!.equals(b!)).toBe(true);
      served = a;
    },
    { timeout: 60_000, interval: 200 },
  );
  return served!;
}

describe("upload stamps across nodes with skewed clocks", () => {
  it("an upload accepted after the node held another one of the path does not replace it", async () => {
    const hashPart = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f";
    const file = `${hashPart}.narinfo`;
    const first = readFixture(NIX_XZ, file);
    expect((await upload(0, NIX_XZ, file)).map((r) => r.status)).toEqual([200, 200]);
    await vi.waitFor(async () => expect((await servedOn(1, file))?.equals(first)).toBe(true), {
      timeout: 60_000,
      interval: 200,
    });
    // B, an hour behind, takes another compression of the same path.
    expect((await upload(1, NIX_ZSTD, file)).map((r) => r.status)).toEqual([200, 200]);
    const served = await converged(hashPart);
    expect(served.equals(first)).toBe(true);
    // B's stamp is after A's although B's wall clock is an hour behind.
    const rows = await rowsOn(0, hashPart);
    const a = rows.find((r) => r.origin === cluster!.ids[0])!;
    const b = rows.find((r) => r.origin === cluster!.ids[1])!;
    expect(BigInt(b.hlc)).toBeGreaterThan(BigInt(a.hlc));
    expect(stampMs(BigInt(b.hlc))).toBeGreaterThan(Date.now() - SKEW_MS / 2);
    // Both nodes hold the same stamps.
    expect(await rowsOn(1, hashPart)).toEqual(rows);
  });

  it("one path uploaded to both at once converges to the rule's first upload on both", async () => {
    const hashPart = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";
    const file = `${hashPart}.narinfo`;
    const [onA, onB] = await Promise.all([upload(0, NIX_XZ, file), upload(1, NIX_ZSTD, file)]);
    expect(onA!.map((r) => r.status)).toEqual([200, 200]);
    expect(onB!.map((r) => r.status)).toEqual([200, 200]);
    const served = await converged(hashPart);
    const rows = await rowsOn(0, hashPart);
    expect(await rowsOn(1, hashPart)).toEqual(rows);
    // Both are trusted (signed by the test key): the lowest stamp, then origin, then entry.
    const first = [...rows].sort(
      (x, y) =>
        (BigInt(x.hlc) < BigInt(y.hlc) ? -1 : BigInt(x.hlc) > BigInt(y.hlc) ? 1 : 0) ||
        (x.origin < y.origin ? -1 : x.origin > y.origin ? 1 : 0) ||
        (x.entry < y.entry ? -1 : 1),
    )[0]!;
    const expected = readFixture(first.origin === cluster!.ids[0] ? NIX_XZ : NIX_ZSTD, file);
    expect(served.equals(expected)).toBe(true);
  });
});
