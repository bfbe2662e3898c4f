import { readdir } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { SpoolClient } from "../../src/proto/service-definition.js";
import { eventually } from "../helpers/cluster.js";
import { metricSample } from "../helpers/metrics-text.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The `limits.*` of a node: entry data and metadata sizes and concurrent uploads
 * (RESOURCE_EXHAUSTED past them), an idle time per upload (DEADLINE_EXCEEDED), and List
 * pages bounded by bytes. A refused or abandoned upload leaves nothing behind.
 */
const KiB = 1024;

describe("node limits", () => {
  const dir = useSuiteTempDir("geospool-limits-");
  let pg: TestPostgres[] = [];
  /** Small sizes and a short idle time. */
  let small: RunningNode;
  /** Two uploads at a time. */
  let narrow: RunningNode;
  const closers: Array<{ close(): void }> = [];

  beforeAll(async () => {
    pg = await startPostgresServers(1, { dir: dir.path });
    small = await startTestNode({
      id: "small",
      dir: dir.path,
      postgresUrl: pg[0]!.url,
      config: {
        limits: {
          entryDataSize: "64KiB",
          metadataSize: "1KiB",
          uploadIdleTimeout: "700ms",
          listPageBytes: "8KiB",
          maxBatchBytes: "1KiB",
        },
      },
    });
    narrow = await startTestNode({
      id: "narrow",
      dir: dir.path,
      postgresUrl: pg[0]!.url.replace(/\/geospool$/, "/postgres"),
      config: { limits: { maxConcurrentUploads: 2 } },
    });
  }, 120_000);

  afterAll(async () => {
    for (const c of closers) c.close();
    await small?.stop();
    await narrow?.stop();
    await stopPostgresServers(pg);
  }, 60_000);

  const clientOf = (node: RunningNode) => {
    const c = new GeospoolClient({ endpoints: [`127.0.0.1:${node.grpcPort}`], retryForMs: 0 });
    closers.push(c);
    return c;
  };
  const rawOf = (node: RunningNode) => {
    const c = new SpoolClient(`127.0.0.1:${node.grpcPort}`, grpc.credentials.createInsecure());
    closers.push(c);
    return c;
  };
  /** Nothing of an unfinished upload is left: every registry name is a live entry, no tmp. */
  async function nothingLeft(node: RunningNode): Promise<void> {
    const regs = await readdir(join(node.spool.dir, ".registry"));
    const data = await readdir(join(node.spool.dir, ".data"));
    for (const n of regs) expect(await node.spool.locate(n)).toBeDefined();
    expect(data.sort()).toEqual(regs.sort());
    expect(await readdir(join(node.spool.dir, ".tmp"))).toEqual([]);
  }
  async function* slowly(parts: Buffer[]): AsyncGenerator<Uint8Array> {
    for (const p of parts) yield p;
  }

  it("refuses data and metadata over their limits, leaving nothing", async () => {
    const client = clientOf(small);
    const atLimit = await client.enqueue("inbox", Buffer.alloc(64 * KiB, 1), {
      metadata: Buffer.alloc(KiB, 2),
    });
    expect(atLimit.entry.dataSize).toBe(64 * KiB);

    // Announced too large: refused before any data is stored.
    const announced = await client.enqueue("inbox", Buffer.alloc(64 * KiB + 1, 1)).catch((e) => e);
    expect(announced.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(announced.message).toMatch(/limits\.entryDataSize/);
    // Not announced (a stream): refused once it passes the limit.
    const streamed = await client
      .enqueue("inbox", slowly([Buffer.alloc(40 * KiB, 1), Buffer.alloc(40 * KiB, 1)]))
      .catch((e) => e);
    expect(streamed.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(streamed.message).toMatch(/limits\.entryDataSize/);
    const meta = await client
      .enqueue("inbox", "x", { metadata: Buffer.alloc(KiB + 1, 2) })
      .catch((e) => e);
    expect(meta.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(meta.message).toMatch(/limits\.metadataSize/);
    await nothingLeft(small);

    // Complete with metadata over the limit: refused, and the checkout is still held.
    const lease = await client.dequeue("inbox");
    expect(lease?.entry.name).toBe(atLimit.entry.name);
    const save = await client.save(lease!, "outbox", Buffer.alloc(KiB + 1, 3)).catch((e) => e);
    expect(save.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(save.message).toMatch(/limits\.metadataSize/);
    expect((await client.stat(atLimit.entry.name)).state).toBe("checked_out");
    await client.remove(lease!);
    await nothingLeft(small);
  });

  it("holds a batch of one entry to the entry's limits, a larger one to the batch's", async () => {
    const client = clientOf(small);
    const streamed = async () =>
      metricSample(await small.metrics.render(), "geospool_operations_total", {
        op: "enqueue",
        outcome: "ok",
      });
    const streamedBefore = await streamed();
    // 4 KiB of data: over limits.maxBatchBytes (1 KiB here), within limits.entryDataSize.
    const [one] = await client.enqueueBatch([{ queue: "outbox", data: Buffer.alloc(4 * KiB, 5) }]);
    expect(one?.ok).toBe(true);
    // What the client sends a small entry as (one EnqueueBatch message): taken as well.
    const sent = await client.enqueue("outbox", Buffer.alloc(4 * KiB, 6));
    expect(sent.entry.dataSize).toBe(4 * KiB);
    const two = await client
      .enqueueBatch([
        { queue: "outbox", data: Buffer.alloc(600, 7) },
        { queue: "outbox", data: Buffer.alloc(600, 8) },
      ])
      .catch((e) => e);
    expect(two.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(two.message).toMatch(/limits\.maxBatchBytes/);
    expect(await streamed()).toBe(streamedBefore); // no Enqueue stream was needed
    for (const name of [one?.ok ? one.entry.name : "", sent.entry.name]) {
      const lease = await client.dequeue("outbox");
      expect(lease?.entry.name).toBe(name);
      await client.remove(lease!);
    }
    await nothingLeft(small);
  });

  it("ends an upload that stays idle with DEADLINE_EXCEEDED, leaving nothing", async () => {
    const raw = rawOf(small);
    const started = Date.now();
    const idle = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.enqueue((err) => resolve(err));
      call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
      call.write({ chunk: Buffer.alloc(10 * KiB, 1) });
      // ... and nothing more: no commit, no end.
    });
    expect(idle?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(idle?.details).toMatch(/limits\.uploadIdleTimeout/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    // A stream that never sends its header is ended too.
    const silent = await new Promise<grpc.ServiceError | null>((resolve) => {
      raw.enqueue((err) => resolve(err));
    });
    expect(silent?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await eventually("the idle upload's files to go", async () => {
      const regs = await readdir(join(small.spool.dir, ".registry"));
      const live = await Promise.all(regs.map((n) => small.spool.locate(n)));
      return live.every((l) => l !== undefined);
    });
    await nothingLeft(small);
    // A steady upload is not idle, however long it takes in all.
    const client = clientOf(small);
    async function* paced(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 300));
        yield Buffer.alloc(KiB, i);
      }
    }
    const ok = await client.enqueue("inbox", paced());
    expect(ok.entry.dataSize).toBe(4 * KiB);
  });

  it("refuses uploads past maxConcurrentUploads, and takes more once one finishes", async () => {
    const raw = rawOf(narrow);
    const client = clientOf(narrow);
    const regsBefore = (await readdir(join(narrow.spool.dir, ".registry"))).length;
    const open = [0, 1].map(() => {
      let resolve!: (v: grpc.ServiceError | null) => void;
      const done = new Promise<grpc.ServiceError | null>((r) => {
        resolve = r;
      });
      const call = raw.enqueue((err) => resolve(err));
      call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
      call.write({ chunk: Buffer.from("part one ") });
      return { call, done };
    });
    await eventually("two uploads to be under way", async () => {
      return (await readdir(join(narrow.spool.dir, ".registry"))).length === regsBefore + 2;
    });
    const third = await client.enqueue("inbox", "third").catch((e) => e);
    expect(third.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(third.message).toMatch(/limits\.maxConcurrentUploads/);
    // Refused as the one-message enqueue it was sent as; the client did not try again as a
    // stream, which the node would refuse too (a second attempt per refusal under load).
    const refused = (op: string, text: string) =>
      metricSample(text, "geospool_operations_total", { op, outcome: "resource_exhausted" });
    const text = await narrow.metrics.render();
    expect(refused("enqueue_batch", text)).toBe(1);
    expect(refused("enqueue", text)).toBeUndefined();

    const first = open[0]!;
    first.call.write({ chunk: Buffer.from("part two") });
    first.call.write({ commit: {} });
    first.call.end();
    expect(await first.done).toBeNull();
    const fourth = await client.enqueue("inbox", "fourth");
    expect(fourth.deduplicated).toBe(false);
    const second = open[1]!;
    second.call.write({ commit: {} });
    second.call.end();
    expect(await second.done).toBeNull();
    await nothingLeft(narrow);
  });

  it("bounds List pages by bytes and still pages through everything", async () => {
    const client = clientOf(small);
    const made: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { entry } = await client.enqueue("outbox", `d${i}`, {
        metadata: Buffer.alloc(1000, 97 + (i % 26)),
      });
      made.push(entry.name);
    }
    const seen: string[] = [];
    let pageToken: string | undefined;
    let pages = 0;
    do {
      const page = await client.list("outbox", {
        pageSize: 1000,
        ...(pageToken ? { pageToken } : {}),
      });
      pages++;
      const bytes = page.entries.reduce((n, e) => n + e.metadata.length + e.name.length, 0);
      expect(bytes).toBeLessThanOrEqual(8 * KiB);
      expect(page.entries.length).toBeGreaterThan(0);
      seen.push(...page.entries.map((e) => e.name));
      pageToken = page.nextPageToken || undefined;
    } while (pageToken);
    expect(seen).toEqual(made);
    expect(pages).toBeGreaterThanOrEqual(3);
  });
});
