import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BulkResult, ClientError, GeospoolClient } from "../../src/node/client/index.js";
import { serviceCodeOf } from "../../src/node/grpc/status.js";
import {
  closeCluster,
  eventually,
  startTestCluster,
  type TestCluster,
} from "../helpers/cluster.js";
import { metricSample } from "../helpers/metrics-text.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * EnqueueBatch on real nodes (real PostgreSQL, real gRPC, real files): each entry of a
 * batch is whole or absent and answered alone, keys are deduplicated within and across
 * batches, the batch limits refuse a whole call, and batch entries replicate to a peer.
 */
const WRITER = "writer-token-0123456789";
const REPLICATION = "replication-token-0123456789";
const MAX_BATCH = 100;

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const ok = (r: BulkResult | undefined) => {
  if (!r?.ok) throw new Error(`expected an entry, got ${JSON.stringify(r)}`);
  return r;
};

describe("EnqueueBatch", () => {
  let cluster: TestCluster;
  const dir = useSuiteTempDir("geospool-batch-");
  const clients: GeospoolClient[] = [];
  const client = (i: number) => clients[i] as GeospoolClient;

  beforeAll(async () => {
    cluster = await startTestCluster({
      n: 2,
      dir: dir.path,
      config: {
        spool: { queues: ["inbox", "closed", "dead"] },
        limits: { maxBatchEntries: MAX_BATCH, metadataSize: "1KiB", entryDataSize: "64KiB" },
        auth: {
          tokens: [
            {
              name: "writer",
              token: WRITER,
              permissions: [{ queues: ["inbox"], actions: ["enqueue", "dequeue"] }],
            },
            {
              name: "replication",
              token: REPLICATION,
              permissions: [{ queues: ["*"], actions: ["dequeue"] }],
            },
          ],
        },
        replication: { token: REPLICATION, fullReconcileEvery: "2s", joinRetry: "300ms" },
      },
    });
    for (const e of cluster.endpoints) {
      clients.push(new GeospoolClient({ endpoints: [e], token: WRITER, retryForMs: 5_000 }));
    }
  }, 120_000);

  afterAll(async () => {
    await closeCluster({ clients, cluster });
  }, 60_000);

  it("stores every good entry whole and refuses each bad one alone", async () => {
    const good = (i: number) => ({
      queue: "inbox",
      data: `data ${i} ${"x".repeat(i * 7)}`,
      metadata: JSON.stringify({ i }),
    });
    const results = await client(0).enqueueBatch([
      good(0),
      { queue: "nosuch", data: "a" },
      good(1),
      { queue: "inbox", data: "b", metadata: "m".repeat(2048) },
      { queue: "closed", data: "c" },
      { queue: "inbox", data: Buffer.alloc(65 * 1024) },
      { queue: "inbox", data: "d", idempotencyKey: "k".repeat(201) },
      good(2),
    ]);
    expect(results.map((r) => (r.ok ? "ok" : r.code))).toEqual([
      "ok",
      // As for Enqueue, rights are checked first: an unknown queue is not one of the token's.
      grpc.status.PERMISSION_DENIED,
      "ok",
      grpc.status.RESOURCE_EXHAUSTED,
      grpc.status.PERMISSION_DENIED,
      grpc.status.RESOURCE_EXHAUSTED,
      grpc.status.INVALID_ARGUMENT,
      "ok",
    ]);
    const refused = results[3];
    expect(refused?.ok === false && refused.message).toMatch(/limits\.metadataSize/);
    for (const [at, i] of [
      [0, 0],
      [2, 1],
      [7, 2],
    ] as const) {
      const r = ok(results[at]);
      const want = good(i);
      expect(r.deduplicated).toBe(false);
      expect(r.entry.metadata.toString()).toBe(want.metadata);
      const stat = await client(0).stat(r.entry.name);
      expect(stat.entry.dataSha256).toBe(sha256(want.data));
      expect((await client(0).readData(r.entry.name)).data.toString()).toBe(want.data);
    }
    // Nothing else was made: the queue holds exactly the three good entries.
    const listed = (await client(0).list("inbox")).entries.map((e) => e.name).sort();
    const names = [0, 2, 7].map((at) => ok(results[at]).entry.name).sort();
    expect(listed.filter((n) => names.includes(n))).toEqual(names);
    expect(listed.length).toBe(names.length);
  });

  it("takes a small client enqueue as one EnqueueBatch message, with Enqueue's answers", async () => {
    const calls = async () => {
      const text = await (
        await fetch(`http://127.0.0.1:${cluster.node(0).httpPort}/metrics`)
      ).text();
      const count = (op: string) =>
        metricSample(text, "geospool_operation_duration_seconds_count", { op }) ?? 0;
      return { one: count("enqueue_batch"), stream: count("enqueue") };
    };
    const before = await calls();
    const small = await client(0).enqueue("inbox", "small job", {
      metadata: "{}",
      idempotencyKey: "one-message",
    });
    expect(small.deduplicated).toBe(false);
    expect(small.entry.dataSha256).toBe(sha256("small job"));
    const afterSmall = await calls();
    expect(afterSmall.one).toBe(before.one + 1);
    expect(afterSmall.stream).toBe(before.stream);

    // The same key sent as a stream (another path on the node) finds the first entry.
    async function* chunks() {
      yield Buffer.from("other data");
    }
    const again = await client(0).enqueue("inbox", chunks(), {
      metadata: "{}",
      idempotencyKey: "one-message",
    });
    expect(again.deduplicated).toBe(true);
    expect(again.entry.name).toBe(small.entry.name);

    // Past 64 KiB of data and metadata: the stream, as before.
    const big = await client(0).enqueue("inbox", Buffer.alloc(64 * 1024, 7), { metadata: "{}" });
    expect(big.entry.dataSize).toBe(64 * 1024);
    const afterBig = await calls();
    expect(afterBig.stream).toBe(afterSmall.stream + 2);
    expect(afterBig.one).toBe(afterSmall.one);

    // An entry refused alone is the caller's error, with the status the stream gets.
    const refused = async (queue: string, data: string | AsyncIterable<Uint8Array>) =>
      client(0)
        .enqueue(queue, data)
        .then(
          () => undefined,
          (err: unknown) => err,
        );
    async function* x() {
      yield Buffer.from("x");
    }
    for (const queue of ["nosuch", "closed"]) {
      const one = await refused(queue, "x");
      const stream = await refused(queue, x());
      expect(one).toBeInstanceOf(ClientError);
      expect(stream).toBeInstanceOf(ClientError);
      expect((one as ClientError).code).toBe((stream as ClientError).code);
      expect((one as ClientError).code).toBe(grpc.status.PERMISSION_DENIED);
      // The service's own error code reaches the caller too (the CLI's message uses it).
      expect(serviceCodeOf((one as ClientError).cause)).toBe("permission_denied");
      expect(serviceCodeOf((one as ClientError).cause)).toBe(
        serviceCodeOf((stream as ClientError).cause),
      );
    }

    // Concurrent sends of one key: one entry, every caller answered with it (a send that
    // finds the key in progress is retried; whether one does depends on the timing).
    const race = await Promise.all(
      Array.from({ length: 6 }, () =>
        client(0).enqueue("inbox", "raced", { metadata: "{}", idempotencyKey: "raced-key" }),
      ),
    );
    expect(new Set(race.map((r) => r.entry.name)).size).toBe(1);
    expect(race.filter((r) => !r.deduplicated)).toHaveLength(1);
  });

  it("deduplicates keys within a batch and across batches", async () => {
    const batch = [
      { queue: "inbox", data: "one", idempotencyKey: "dup-1" },
      { queue: "inbox", data: "two", idempotencyKey: "dup-2" },
      { queue: "inbox", data: "one again", idempotencyKey: "dup-1" },
    ];
    const first = await client(0).enqueueBatch(batch);
    const [a, b, c] = first.map(ok);
    expect([a?.deduplicated, b?.deduplicated, c?.deduplicated]).toEqual([false, false, true]);
    expect(c?.entry.name).toBe(a?.entry.name);
    expect((await client(0).readData(a?.entry.name as string)).data.toString()).toBe("one");

    // The same keys again (a loader's retry), with one new key among them.
    const again = await client(0).enqueueBatch([
      ...batch,
      { queue: "inbox", data: "three", idempotencyKey: "dup-3" },
    ]);
    const names = again.map((r) => ok(r).entry.name);
    expect(names.slice(0, 3)).toEqual(first.map((r) => ok(r).entry.name));
    expect(again.map((r) => ok(r).deduplicated)).toEqual([true, true, true, false]);
    // A key used by one-by-one Enqueue is the same key for a batch.
    const single = await client(0).enqueue("inbox", "single", { idempotencyKey: "dup-4" });
    const viaBatch = ok(
      (await client(0).enqueueBatch([{ queue: "inbox", data: "x", idempotencyKey: "dup-4" }]))[0],
    );
    expect(viaBatch.deduplicated).toBe(true);
    expect(viaBatch.entry.name).toBe(single.entry.name);
  });

  it("concurrent batches sharing keys make one entry per key (claims run beside the writes)", async () => {
    const keys = Array.from({ length: 12 }, (_, k) => `shared-${k}`);
    const before = new Set(
      (await client(0).list("inbox", { pageSize: 1000 })).entries.map((e) => e.name),
    );
    // Each call sends every key, in its own order: claims of one key race between calls
    // while their entries are being written.
    const calls = await Promise.all(
      Array.from({ length: 8 }, (_, c) =>
        client(0).enqueueBatch(
          keys
            .map((key, k) => ({ queue: "inbox", data: `${key} from ${c}`, idempotencyKey: key, k }))
            .sort((a, b) => ((a.k * 7 + c) % 12) - ((b.k * 7 + c) % 12))
            .map(({ k: _k, ...entry }) => entry),
        ),
      ),
    );
    const named = new Map<string, Set<string>>();
    let made = 0;
    for (const results of calls) {
      for (const r of results) {
        if (!r.ok) {
          // A key found in progress is refused for the caller to retry; nothing else.
          expect(r.serviceCode).toBe("in_progress");
          continue;
        }
        if (!r.deduplicated) made++;
        const data = (await client(0).readData(r.entry.name)).data.toString();
        const k = data.split(" from ")[0] as string;
        const set = named.get(k) ?? new Set();
        set.add(r.entry.name);
        named.set(k, set);
      }
    }
    for (const set of named.values()) expect(set.size).toBe(1);
    const now = (await client(0).list("inbox", { pageSize: 1000 })).entries.filter(
      (e) => !before.has(e.name),
    );
    expect(now).toHaveLength(keys.length);
    expect(made).toBe(keys.length);
  });

  it("refuses a batch over the limits as a whole, naming the limit", async () => {
    const before = (await client(0).list("inbox", { pageSize: 1000 })).entries.length;
    const tooMany = Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({
      queue: "inbox",
      data: `${i}`,
    }));
    const err = await client(0)
      .enqueueBatch(tooMany)
      .catch((e) => e);
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.message).toMatch(/limits\.maxBatchEntries/);
    expect((await client(0).list("inbox", { pageSize: 1000 })).entries.length).toBe(before);
  });

  it("streams many entries in batches, in order, and they replicate to the peer", async () => {
    const n = 750;
    const entries = Array.from({ length: n }, (_, i) => ({
      queue: "inbox",
      data: `narinfo ${i}`,
      metadata: `${i}`,
      idempotencyKey: `load-${i}`,
    }));
    const results: BulkResult[] = [];
    for await (const r of client(0).enqueueMany(entries, { batchEntries: 64, concurrency: 3 })) {
      results.push(r);
    }
    expect(results.length).toBe(n);
    results.forEach((r, i) => {
      expect(ok(r).entry.metadata.toString()).toBe(`${i}`);
    });
    const names = results.map((r) => ok(r).entry.name);
    expect(new Set(names).size).toBe(n);
    await eventually(
      "every batch entry on the peer",
      async () => {
        const on1 = new Set<string>();
        let page: string | undefined;
        do {
          const l = await client(1).list("inbox", { pageSize: 1000, pageToken: page ?? "" });
          for (const e of l.entries) on1.add(e.name);
          page = l.nextPageToken || undefined;
        } while (page);
        return names.every((x) => on1.has(x));
      },
      60_000,
    );
    const last = names[n - 1] as string;
    expect((await client(1).readData(last)).data.toString()).toBe(`narinfo ${n - 1}`);
  }, 120_000);
});
