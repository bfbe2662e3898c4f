/**
 * The two sides of bench/grpc.ts, behind one interface so the driver (grpc-loop.ts) runs
 * them identically: geospool over gRPC (GeospoolClient: Enqueue, then Complete(remove)
 * with the next checkout in the same call, as messages on one Session stream;
 * `geospool-unary`: the same two as calls of their own; `geospool-3call`: Enqueue, Complete,
 * then a Dequeue call) and pg-boss (send, complete, fetch).
 */
import PgBoss from "pg-boss";
import { GeospoolClient, type Lease } from "../../src/node/client/geospool-client.js";
import { type GrpcBenchMetadata, jobData, jobDataBytes, jobMetadata } from "./grpc-payload.js";

/**
 * geospool: a Complete takes the next job (then_dequeue), on a Session stream;
 * geospool-unary: the same, each a call; geospool-3call: calls, and a Dequeue call takes it.
 */
export type SideName = "geospool" | "geospool-unary" | "geospool-3call" | "pg-boss";

export const isGeospool = (side: SideName): boolean => side !== "pg-boss";

/** A dequeued job: `t0` is when its enqueue started (performance.now()). */
export interface Held {
  t0: number;
}

export interface QueueSide<H extends Held> {
  readonly name: SideName;
  enqueue(id: number, t0: number): Promise<void>;
  /** The next job; throws when none came within the wait. */
  dequeue(): Promise<H>;
  complete(held: H): Promise<void>;
  /** Complete the job and take the next in the same call, if the side can; undefined: none came. */
  completeAndTake?(held: H): Promise<H | undefined>;
  /** Dequeue attempts that found the queue empty (and were retried). */
  readonly emptyDequeues: number;
  /** Jobs still queued or in progress: 0 after a clean run. */
  leftover(): Promise<number>;
  close(): Promise<void>;
}

/** The queue on both sides: a default queue of a geospool node, a pg-boss queue. */
export const QUEUE = "inbox";
/** How long one dequeue may wait for a job before the run fails. */
export const DEQUEUE_WAIT_MS = 10_000;

interface GeospoolHeld extends Held {
  lease: Lease;
}

/**
 * One GeospoolClient (one HTTP/2 channel) shared by every concurrent client loop. Enqueue
 * of the 1 KiB job goes as one EnqueueBatch message (the client does so for entries up to
 * ONE_MESSAGE_ENQUEUE_MAX); the client adds an idempotency key, as it always does. Dequeue
 * waits up to DEQUEUE_WAIT_MS on the node. Every checkout brings the job's data inline
 * (`inlineDataMax`), as pg-boss's fetch brings the job's: a job whose data does not come
 * fails the run. `geospool` sends its calls as messages on a Session stream (the client's
 * default), the others as calls (`session: false`).
 */
export function geospoolSide(
  endpoint: string,
  name: Exclude<SideName, "pg-boss"> = "geospool",
): QueueSide<GeospoolHeld> {
  const client = new GeospoolClient({
    endpoints: [endpoint],
    retryForMs: 0,
    session: name === "geospool",
  });
  const held = (lease: Lease) => {
    const meta = JSON.parse(lease.entry.metadata.toString("utf8")) as GrpcBenchMetadata;
    if (lease.data?.length !== jobDataBytes.length) {
      throw new Error(`geospool: job ${lease.entry.name} came without its data`);
    }
    return { lease, t0: meta.t0 };
  };
  const take = { inlineDataMax: jobDataBytes.length };
  return {
    name,
    emptyDequeues: 0,
    async enqueue(id, t0) {
      await client.enqueue(QUEUE, jobDataBytes, {
        metadata: JSON.stringify(jobMetadata(id, t0)),
      });
    },
    async dequeue() {
      const lease = await client.dequeue(QUEUE, { ...take, waitMs: DEQUEUE_WAIT_MS });
      if (!lease) throw new Error(`geospool: no entry within ${DEQUEUE_WAIT_MS} ms`);
      return held(lease);
    },
    async complete(h) {
      await client.remove(h.lease);
    },
    ...(name !== "geospool-3call"
      ? {
          async completeAndTake(h: GeospoolHeld) {
            const { next } = await client.completeThenDequeue(h.lease, { remove: true }, take);
            return next && held(next);
          },
        }
      : {}),
    async leftover() {
      const status = await client.clusterStatus();
      const q = status.queues.find((x) => x.queue === QUEUE);
      return (q?.queued ?? 0) + (q?.checkedOut ?? 0);
    },
    async close() {
      client.close();
    },
  };
}

interface BossJobData {
  meta: GrpcBenchMetadata;
  data: string;
}

interface BossHeld extends Held {
  id: string;
}

/** Between two fetches that found the queue empty (pg-boss's fetch does not wait). */
const EMPTY_FETCH_RETRY_MS = 1;

/**
 * One PgBoss instance (default options: supervision and scheduling on) shared by every
 * concurrent client loop; its pool has `poolMax` connections. A job's data is
 * `{meta, data}`: the same metadata and the same 1 KiB as geospool's.
 */
export async function pgBossSide(url: string, poolMax: number): Promise<QueueSide<BossHeld>> {
  const boss = new PgBoss({ connectionString: url, max: poolMax });
  let failure: unknown;
  boss.on("error", (err) => {
    failure ??= err;
  });
  await boss.start();
  await boss.createQueue(QUEUE);
  const side = {
    name: "pg-boss" as const,
    emptyDequeues: 0,
    async enqueue(id: number, t0: number) {
      const job: BossJobData = { meta: jobMetadata(id, t0), data: jobData };
      const sent = await boss.send(QUEUE, job);
      if (sent === null) throw new Error("pg-boss: send returned no id");
    },
    async dequeue(): Promise<BossHeld> {
      const giveUpAt = performance.now() + DEQUEUE_WAIT_MS;
      for (;;) {
        if (failure) throw failure;
        const [job] = await boss.fetch<BossJobData>(QUEUE);
        if (job) return { id: job.id, t0: job.data.meta.t0 };
        side.emptyDequeues++;
        if (performance.now() > giveUpAt) {
          throw new Error(`pg-boss: no job within ${DEQUEUE_WAIT_MS} ms`);
        }
        await new Promise((r) => setTimeout(r, EMPTY_FETCH_RETRY_MS));
      }
    },
    async complete(held: BossHeld) {
      await boss.complete(QUEUE, held.id);
    },
    async leftover() {
      return boss.getQueueSize(QUEUE, { before: "completed" });
    },
    async close() {
      await boss.stop({ graceful: false, wait: true, timeout: 5_000 });
    },
  };
  return side;
}
