import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { NIX_XZ, readFixture } from "../helpers/cache-fixtures.js";
import { startTestCluster, type TestCluster } from "../helpers/cluster.js";
import { get, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The cache's lookup index in each node's PostgreSQL: it follows replicated placements and
 * drops at once (the periodic refresh is set to an hour here, so it cannot be what serves),
 * and a node whose index rows are gone rebuilds them from its spool at start.
 */
const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const TEST_KEY = readFixture("nix-2.8-test-key.public").toString().trim();
const FILES = [
  "l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo",
  "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx.narinfo",
];

const dir = useSuiteTempDir("geospool-cache-index-");
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({
    n: 2,
    dir: dir.path,
    config: {
      spool: {
        queues: ["inbox", "dead", "cache"],
        leases: { grace: "0ms", deadLetterQueue: "dead" },
      },
      cache: {
        enabled: true,
        trustedPublicKeys: [TEST_KEY],
        uploadTokens: [{ name: "uploader", token: UPLOAD_TOKEN }],
        refreshEvery: "1h",
      },
    },
  });
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
}, 120_000);

function put(path: string, body: Buffer): Buffer {
  const head = `PUT ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${UPLOAD_TOKEN}\r\nContent-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), body]);
}

async function narinfos(i: number): Promise<Array<{ status: number; body: Buffer }>> {
  const answers = await rawHttp(
    cluster.node(i).httpPort,
    FILES.map((f, j) => get(`/${f}`, {}, "GET", j === FILES.length - 1)),
  );
  return answers.map((r) => ({ status: r.status, body: r.body }));
}

async function indexRows(i: number): Promise<number> {
  const client = new pg.Client(cluster.postgres[i]!.url);
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      "select count(*)::int as n from cache_served",
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

describe("the cache's lookup index across two nodes", () => {
  it("serves an upload replicated from a peer without waiting for a timer, and stops serving a replicated removal", async () => {
    const requests: Buffer[] = [];
    for (const file of FILES) {
      const bytes = readFixture(NIX_XZ, file);
      const url = parseNarinfo(bytes).url;
      requests.push(put(`/${url}`, readFixture(NIX_XZ, url)), put(`/${file}`, bytes));
    }
    const answers = await rawHttp(cluster.node(0).httpPort, [...requests, get("/nix-cache-info")]);
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 200));
    const uploaded = FILES.map((f) => readFixture(NIX_XZ, f));
    await vi.waitFor(
      async () => {
        const served = await narinfos(1);
        expect(served.map((r) => r.status)).toEqual([200, 200]);
        for (const [j, r] of served.entries()) expect(r.body.equals(uploaded[j]!)).toBe(true);
      },
      { timeout: 30_000, interval: 100 },
    );
    expect(await indexRows(1)).toBe(2);

    // Taking an entry out of the queue on node 1 (a checkout, then its removal) is a
    // transition there and a replicated change on node 0: neither serves it any more.
    const service = cluster.node(1).service;
    const got = await service.dequeue({ queue: "cache" });
    expect(got).toBeDefined();
    await service.complete({
      queue: "cache",
      name: got!.entry.name,
      leaseToken: got!.leaseToken,
      action: { kind: "remove" },
    });
    let removed = -1;
    await vi.waitFor(
      async () => {
        removed = (await narinfos(1)).findIndex((r) => r.status === 404);
        expect(removed).toBeGreaterThanOrEqual(0);
      },
      { timeout: 30_000, interval: 100 },
    );
    await vi.waitFor(
      async () => {
        expect((await narinfos(0))[removed]!.status).toBe(404);
      },
      { timeout: 30_000, interval: 100 },
    );
  }, 120_000);

  it("rebuilds the index from the spool at start when its rows are gone", async () => {
    const before = await narinfos(1);
    expect(before.filter((r) => r.status === 200)).toHaveLength(1);
    await cluster.stopNode(1);
    const client = new pg.Client(cluster.postgres[1]!.url);
    await client.connect();
    try {
      await client.query("delete from cache_entries");
      await client.query("delete from cache_index_state");
    } finally {
      await client.end();
    }
    await cluster.start(1);
    const after = await narinfos(1);
    expect(after.map((r) => r.status)).toEqual(before.map((r) => r.status));
    for (const [j, r] of after.entries()) expect(r.body.equals(before[j]!.body)).toBe(true);
    expect(await indexRows(1)).toBe(1);
  }, 120_000);
});
