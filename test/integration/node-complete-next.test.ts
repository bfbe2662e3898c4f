import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient, type Lease } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { metricSample } from "../helpers/metrics-text.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Complete with `then_dequeue` on a real node: the finish and the next checkout in one call
 * (GeospoolClient.completeThenDequeue). The next checkout is a real lease the worker
 * finishes in turn; a refused next checkout (permission, queue, lease) refuses the whole
 * call before anything is finished, so the entry stays checked out.
 */
const WORKER = "worker-token-0123456789";
const PRODUCER = "producer-token-012345678";

describe("Complete then Dequeue", () => {
  const dir = useSuiteTempDir("geospool-complete-next-");
  let pg: TestPostgres[] = [];
  let node: RunningNode;
  let worker: GeospoolClient;
  let producer: GeospoolClient;

  beforeAll(async () => {
    pg = await startPostgresServers(1, { dir: dir.path });
    node = await startTestNode({
      id: "n1",
      dir: dir.path,
      postgresUrl: (pg[0] as TestPostgres).url,
      config: {
        spool: { queues: ["inbox", "done", "secret", "dead"] },
        auth: {
          tokens: [
            {
              name: "worker",
              token: WORKER,
              permissions: [{ queues: ["inbox", "done"], actions: ["enqueue", "dequeue"] }],
            },
            {
              name: "producer",
              token: PRODUCER,
              permissions: [{ queues: ["*"], actions: ["enqueue", "dequeue"] }],
            },
          ],
        },
      },
    });
    const endpoints = [`127.0.0.1:${node.grpcPort}`];
    worker = new GeospoolClient({ endpoints, token: WORKER, retryForMs: 0 });
    producer = new GeospoolClient({ endpoints, token: PRODUCER, retryForMs: 0 });
  }, 120_000);

  afterAll(async () => {
    worker?.close();
    producer?.close();
    await node?.stop();
    await stopPostgresServers(pg);
  }, 60_000);

  const state = async (name: string) => {
    const s = await producer.stat(name);
    return `${s.entry.queue}/${s.state}`;
  };

  it("a worker drains a queue in one call per entry, in order, each next a real lease", async () => {
    const names: string[] = [];
    for (let i = 0; i < 5; i++) {
      names.push((await producer.enqueue("inbox", `job ${i}`, { metadata: `m${i}` })).entry.name);
    }
    const dequeueCalls = async () => {
      const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
      const labels = { method: "Dequeue", code: "OK" };
      return metricSample(text, "geospool_grpc_requests_total", labels) ?? 0;
    };
    const before = await dequeueCalls();
    let lease = await worker.dequeue("inbox");
    const seen: string[] = [];
    while (lease) {
      seen.push(lease.entry.name);
      expect(await state(lease.entry.name)).toBe("inbox/checked_out");
      const data = await worker.readData(lease.entry.name);
      expect(data.data.toString()).toBe(`job ${seen.length - 1}`);
      const r = await worker.completeThenDequeue(lease, { remove: true });
      expect(r.saved).toBeUndefined();
      await expect(producer.stat(lease.entry.name)).rejects.toMatchObject({
        code: grpc.status.NOT_FOUND,
      });
      lease = r.next;
    }
    expect(seen).toEqual(names);
    // The node handed out each next checkout itself: one Dequeue call, the first.
    expect((await dequeueCalls()) - before).toBe(1);
  });

  it("a save hands back the saved entry and the next checkout of another queue", async () => {
    const first = (await producer.enqueue("inbox", "first")).entry.name;
    const second = (await producer.enqueue("done", "second")).entry.name;
    const lease = (await worker.dequeue("inbox")) as Lease;
    expect(lease.entry.name).toBe(first);
    const r = await worker.completeThenDequeue(
      lease,
      { save: "done", metadata: "handled" },
      { queue: "done", leaseMs: 30_000 },
    );
    expect(r.saved?.queue).toBe("done");
    expect(r.saved?.metadata.toString()).toBe("handled");
    // Queues hand out by name, that is by age: the entry just saved, the older, comes first.
    expect(r.next?.entry.name).toBe(first);
    expect(await state(first)).toBe("done/checked_out");
    expect(await state(second)).toBe("done/queued");
    const last = await worker.completeThenDequeue(
      r.next as Lease,
      { remove: true },
      { queue: "done" },
    );
    expect(last.next?.entry.name).toBe(second);
    const none = await worker.completeThenDequeue(
      last.next as Lease,
      { remove: true },
      { queue: "done" },
    );
    expect(Object.keys(none)).toEqual([]);
  });

  it("waits for the next entry within the wait asked for", async () => {
    await producer.enqueue("inbox", "now");
    const lease = (await worker.dequeue("inbox")) as Lease;
    const call = worker.completeThenDequeue(lease, { remove: true }, { waitMs: 20_000 });
    const later = (await producer.enqueue("inbox", "later")).entry.name;
    const r = await call;
    expect(r.next?.entry.name).toBe(later);
    await worker.remove(r.next as Lease);
  });

  it("a next checkout refused refuses the whole call: the entry stays checked out", async () => {
    const name = (await producer.enqueue("inbox", "kept")).entry.name;
    const lease = (await worker.dequeue("inbox")) as Lease;
    const refused: Array<[Parameters<GeospoolClient["completeThenDequeue"]>[2], grpc.status]> = [
      [{ queue: "secret" }, grpc.status.PERMISSION_DENIED],
      [{ queue: "nosuchqueue" }, grpc.status.PERMISSION_DENIED],
      [{ leaseMs: -5 }, grpc.status.INVALID_ARGUMENT],
      // Longer than the spool takes: refused up front, not after the finish (bad-input
      // campaign, seed 123231363).
      [{ leaseMs: 400 * 24 * 3600_000 }, grpc.status.INVALID_ARGUMENT],
      [{ waitMs: -1 }, grpc.status.INVALID_ARGUMENT],
    ];
    for (const [next, code] of refused) {
      await expect(
        worker.completeThenDequeue(lease, { remove: true }, next),
        JSON.stringify(next),
      ).rejects.toMatchObject({ code });
      expect(await state(name)).toBe("inbox/checked_out");
    }
    // A plain Dequeue refuses such a lease too, even with nothing to hand out.
    await expect(worker.dequeue("done", { leaseMs: 400 * 24 * 3600_000 })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    // With rights on every queue, an unknown queue is NOT_FOUND, still before the finish.
    await expect(
      producer.completeThenDequeue(lease, { remove: true }, { queue: "nosuchqueue" }),
    ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    expect(await state(name)).toBe("inbox/checked_out");
    // The lease is still good for the call that asks for what it may have.
    expect(Object.keys(await worker.completeThenDequeue(lease, { remove: true }))).toEqual([]);
    await expect(producer.stat(name)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});
