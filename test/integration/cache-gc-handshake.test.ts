import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { GcReport } from "../../src/cache/gc.js";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { NIX_XZ, NIX_ZSTD, readFixture, TEST_KEY } from "../helpers/cache-fixtures.js";
import { startTestCluster, type TestCluster } from "../helpers/cluster.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The GC handshake on three nodes, each with its own PostgreSQL (gc-handshake.ts): a lib
 * uploaded to A and left unreferenced past the grace is condemned by A's GC. While node C
 * is down (its PostgreSQL streaming on, so A's fence is clear) no round completes: B, having
 * acknowledged, refuses with a 409 an app referencing the lib, A withdraws and removes
 * nothing, and B accepts the app afterwards. The app uploaded again to B (in zstd) at the
 * moment A runs a GC is either refused (B acknowledged first) or keeps the lib on every
 * node; an unrelated old path goes everywhere, and no marks are left behind.
 */

const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const PEER_TOKEN = "peer-token-0123456789abcdef0";
const ADMIN_TOKEN = "admin-token-0123456789abcdef";

const APP = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const LIB = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";
const DOC = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f";
const GRACE_MS = 10_000;

const CACHE = {
  enabled: true,
  trustedPublicKeys: [TEST_KEY],
  refreshEvery: "1h",
  // ackTimeout leaves room, on a loaded machine, between B acknowledging and A withdrawing.
  gc: { grace: `${GRACE_MS}ms`, maxPeerSilence: "9s", peerSettle: "0ms", ackTimeout: "12s" },
};

const dir = useSuiteTempDir("geospool-cache-gc-handshake-");
let cluster: TestCluster | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({
    n: 3,
    dir: dir.path,
    config: {
      spool: {
        queues: ["inbox", "dead", "cache", "cache-roots"],
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
          {
            name: "operator",
            token: ADMIN_TOKEN,
            permissions: [{ queues: ["cache", "cache-roots"], actions: ["admin"] }],
          },
        ],
      },
      replication: { token: PEER_TOKEN },
      cache: CACHE,
    },
  });
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
}, 120_000);

const port = (i: number) => cluster!.node(i).httpPort;

function upload(i: number, hashPart: string, cache = NIX_XZ) {
  const file = `${hashPart}.narinfo`;
  const bytes = readFixture(cache, file);
  const url = parseNarinfo(bytes).url;
  return rawHttp(port(i), [
    put(`/${url}`, readFixture(cache, url), UPLOAD_TOKEN),
    put(`/${file}`, bytes, UPLOAD_TOKEN, true),
  ]);
}

async function status(i: number, hashPart: string): Promise<number> {
  const [r] = await rawHttp(port(i), [get(`/${hashPart}.narinfo`)]);
  return r!.status;
}

async function servedOn(nodes: number[], hashPart: string, want: number): Promise<void> {
  await vi.waitFor(
    async () => {
      for (const i of nodes) expect(await status(i, hashPart)).toBe(want);
    },
    { timeout: 60_000, interval: 200 },
  );
}

/** Each running node writes a journal row, so A's fence (peers heard from) is clear. */
async function freshen(nodes: number[]): Promise<void> {
  for (const i of nodes) {
    await cluster!.node(i).spool.enqueue(
      "inbox",
      {
        user: Buffer.from("poke"),
        sha256: createHash("sha256").update("x").digest("hex"),
        size: 1,
        enqueuedAt: Date.now(),
      },
      "x",
    );
  }
}

async function gcOn(i: number): Promise<GcReport> {
  const [r] = await rawHttp(port(i), [
    `POST /_geospool/cache/gc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
  ]);
  expect(r!.status, r!.body.toString()).toBe(200);
  return JSON.parse(r!.body.toString()) as GcReport;
}

/** The GC marks (condemnations, acknowledgements) node i holds: `<kind> by <node>`. */
async function marksOn(i: number): Promise<string[]> {
  const spool = cluster!.node(i).spool;
  const out: string[] = [];
  for (const e of await spool.list("cache-roots")) {
    const meta = await e.direct.contents();
    const mark = (JSON.parse(meta.user.toString()) as Record<string, { kind: string; by: string }>)[
      "geospool.cacheGc"
    ];
    if (mark !== undefined) out.push(`${mark.kind} by ${mark.by}`);
  }
  return out.sort();
}

/** Wait until the lib is older than the grace on every node's clock. */
async function libOld(uploadedAt: number): Promise<void> {
  await vi.waitFor(() => expect(Date.now() - uploadedAt).toBeGreaterThan(GRACE_MS + 300), {
    timeout: GRACE_MS + 5_000,
    interval: 100,
  });
}

describe("the cache GC's handshake across three nodes", () => {
  it("while a node does not acknowledge, uploads needing a condemned path are refused with a 409 and nothing is removed", async () => {
    expect((await upload(0, LIB)).map((r) => r.status)).toEqual([200, 200]);
    const uploadedAt = Date.now();
    await servedOn([0, 1, 2], LIB, 200);
    await libOld(uploadedAt);
    // C runs without the GC's queue: it replicates (A's fence is clear) but takes no part
    // in the handshake, so nobody acknowledges for it.
    await cluster!.stopNode(2);
    await cluster!.start(2, { cache: { ...CACHE, gc: { ...CACHE.gc, rootsQueue: "inbox-x" } } });
    await freshen([0, 1, 2]);
    const gc = gcOn(0);
    // B acknowledges the condemnation (nothing it holds needs the lib)...
    await vi.waitFor(async () => expect(await marksOn(1)).toContain("ack by n2"), {
      timeout: 30_000,
      interval: 50,
    });
    // ...then refuses an app that references it: a 4xx naming the reason, never a 5xx, and
    // nothing stored.
    const refused = await upload(1, APP);
    expect(refused[1]!.status, refused[1]!.body.toString()).toBe(409);
    expect(refused[1]!.body.toString()).toMatch(
      new RegExp(`${LIB} is being removed by a cache GC on node n1`),
    );
    const report = await gc;
    expect(report.blocked).toMatch(/no acknowledgement of the GC's condemnation from "n3"/);
    expect(report.removed).toEqual([]);
    expect(await status(1, APP)).toBe(404);
    // The condemnation withdrawn, B accepts the app; the lib is there on both.
    await vi.waitFor(
      async () => expect((await upload(1, APP)).map((r) => r.status)).toEqual([200, 200]),
      { timeout: 30_000, interval: 200 },
    );
    await servedOn([0, 1], APP, 200);
    await servedOn([0, 1], LIB, 200);
    await cluster!.stopNode(2);
    await cluster!.start(2);
    await servedOn([2], APP, 200);
  }, 180_000);

  it("an upload needing a condemned path, accepted on B while A runs a GC, keeps it on every node", async () => {
    // The doc, uploaded to A, ages past the grace; so have the app and the lib by then.
    expect((await upload(0, DOC)).map((r) => r.status)).toEqual([200, 200]);
    const uploadedAt = Date.now();
    await servedOn([0, 1, 2], DOC, 200);
    await libOld(uploadedAt);
    await freshen([0, 1, 2]);
    // B takes the app in zstd (a new upload referencing the lib) as A's GC starts.
    const [again, first] = await Promise.all([upload(1, APP, NIX_ZSTD), gcOn(0)]);
    const reports = [first];
    // The fence may hold the run back (the app's entry journaled on A, its nar not yet
    // fetched): run again until a round completes.
    while (reports.at(-1)!.blocked !== undefined) {
      expect(reports.length, reports.at(-1)!.blocked).toBeLessThan(10);
      await freshen([0, 1, 2]);
      reports.push(await gcOn(0));
    }
    const removed = reports.flatMap((r) => r.removed.map((e) => e.hashPart));
    expect(removed).toContain(DOC);
    if (again[1]!.status === 200) {
      // Accepted: the lib it references is kept by every round and served everywhere.
      expect(removed).not.toContain(LIB);
      expect(removed).not.toContain(APP);
      for (const i of [0, 1, 2]) expect(await status(i, LIB)).toBe(200);
      await servedOn([0, 1, 2], APP, 200);
    } else {
      // B had acknowledged first: refused, and stored nowhere.
      expect(again[1]!.status, again[1]!.body.toString()).toBe(409);
    }
    await servedOn([0, 1, 2], DOC, 404);
    // No marks are left once the rounds are over.
    await vi.waitFor(
      async () => {
        for (const i of [0, 1, 2]) expect(await marksOn(i)).toEqual([]);
      },
      { timeout: 30_000, interval: 200 },
    );
  }, 180_000);
});
