import { readdir } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { GeospoolClient } from "../../src/node/client/geospool-client.js";
import { SpoolClient } from "../../src/proto/service-definition.js";
import { listingsOf } from "../helpers/listings.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

const dir = useSuiteTempDir("geospool-shutdown-");
let pg: TestPostgres[] = [];

beforeAll(async () => {
  pg = await startPostgresServers(1, { dir: dir.path });
});
afterAll(async () => {
  await stopPostgresServers(pg);
});

const visible = async (spoolDir: string) =>
  (await readdir(join(spoolDir, "inbox"))).filter((n) => n !== ".checkout");

describe("graceful shutdown", () => {
  it("an in-flight upload completes or leaves nothing; checkouts keep their leases across a restart", async () => {
    const node = await startTestNode({ id: "s1", dir: dir.path, postgresUrl: pg[0]!.url });
    const endpoint = `127.0.0.1:${node.grpcPort}`;
    const client = new GeospoolClient({ endpoints: [endpoint], retryForMs: 0 });
    await client.enqueue("inbox", "held");
    const lease = await client.dequeue("inbox", { leaseMs: 10 * 60_000 });
    expect(lease).toBeDefined();

    // An upload that is still sending when the node stops: it never commits, so the drain
    // deadline (2 s) cuts it, and nothing of it may remain.
    const raw = new SpoolClient(endpoint, grpc.credentials.createInsecure());
    const upload = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.enqueue((err) => resolve(err));
      call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
      const timer = setInterval(() => call.write({ chunk: Buffer.alloc(10_000, 1) }), 50);
      call.on("status", () => clearInterval(timer));
    });
    // An upload that commits while the node drains: it completes.
    const finishing = client.enqueue("inbox", Buffer.alloc(50_000, 2));
    // Stop once the node has taken both uploads' headers (each reserved a name).
    await vi.waitFor(
      async () =>
        expect((await readdir(join(node.spool.dir, ".registry"))).length).toBeGreaterThanOrEqual(3),
      { timeout: 20_000, interval: 20 },
    );
    const stopped = node.stop();
    const [uploadErr, finished] = await Promise.all([upload, finishing, stopped]);
    expect(uploadErr).not.toBeNull();
    raw.close();
    client.close();
    expect(await visible(node.spool.dir)).toEqual([finished.entry.name]);
    expect(await readdir(join(node.spool.dir, ".tmp"))).toEqual([]);
    expect((await readdir(join(node.spool.dir, ".registry"))).sort()).toEqual(
      [lease!.entry.name, finished.entry.name].sort(),
    );

    // The checkout made before the stop is still held, and its lease token still works.
    const again = await startTestNode({ id: "s1", dir: dir.path, postgresUrl: pg[0]!.url });
    const client2 = new GeospoolClient({
      endpoints: [`127.0.0.1:${again.grpcPort}`],
      retryForMs: 0,
    });
    expect((await client2.stat(lease!.entry.name)).state).toBe("checked_out");
    await client2.remove({ ...lease!, endpoint: `127.0.0.1:${again.grpcPort}` });
    expect(await visible(again.spool.dir)).toEqual([finished.entry.name]);
    client2.close();
    await again.stop();
  });

  it("a waiting Dequeue and a Watch do not hold up the drain", async () => {
    const node = await startTestNode({
      id: "s2",
      dir: dir.path,
      postgresUrl: pg[0]!.url.replace(/\/geospool$/, "/postgres"),
      config: { shutdown: { deadline: "30s" } },
    });
    const client = new GeospoolClient({
      endpoints: [`127.0.0.1:${node.grpcPort}`],
      retryForMs: 0,
    });
    // A ReadData whose reader stops reading, then cancels: the server must not wait for a
    // "drain" that never comes.
    const big = await client.enqueue("outbox", Buffer.alloc(8 * 1024 * 1024, 7));
    const raw = new SpoolClient(`127.0.0.1:${node.grpcPort}`, grpc.credentials.createInsecure());
    const reading = raw.readData({ name: big.entry.name, offset: 0 });
    await new Promise<void>((resolve) => reading.once("data", () => resolve()));
    reading.pause();
    // The reader's buffer fills: the server's writes now wait for a drain.
    await vi.waitFor(
      () => expect(reading.readableLength).toBeGreaterThanOrEqual(reading.readableHighWaterMark),
      { timeout: 20_000, interval: 20 },
    );
    reading.on("error", () => undefined);
    reading.cancel();
    const listings = listingsOf(node.spool, "inbox");
    const waiting = client.dequeue("inbox", { waitMs: 50_000 });
    const ac = new AbortController();
    let established!: () => void;
    const watchEstablished = new Promise<void>((resolve) => {
      established = resolve;
    });
    const watching = (async () => {
      for await (const _ of client.watch([], ac.signal, { onEstablished: established })) {
      }
    })().catch(() => undefined);
    // Stop once the Dequeue waits (it found the queue empty) and the Watch is registered.
    await Promise.all([listings.emptySeen, watchEstablished]);
    listings.restore();
    const t0 = Date.now();
    await node.stop();
    // Far below the 30 s deadline: waits end at once when the node stops.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await waiting).toBeUndefined();
    ac.abort();
    await watching;
    raw.close();
    client.close();
  });
});
