/**
 * The workload, the same for every side: `concurrency` client loops. Each keeps one job
 * queued ahead of the one it holds and repeats: enqueue one job → complete the held job →
 * take the next (any job, not necessarily its own; with the finish itself where the side
 * can, as geospool's Complete with then_dequeue, else a dequeue that waits). After
 * `warmupMs`, the jobs completed during the next `durationMs` are counted (steady state);
 * then every loop finishes the cycle it is in, completes the job it holds and stops, so
 * the queue ends empty. A job's latency runs from the start of its enqueue to the end of
 * its completion. Phases: enqueue; complete (with the next job's checkout, where taken);
 * dequeue (only when the complete took nothing; else about 0).
 */

import type { Held, QueueSide } from "./grpc-sides.js";
import { type Distribution, distribution } from "./grpc-stats.js";

export interface LoopResult {
  /** Jobs completed inside the measuring window. */
  jobs: number;
  elapsedMs: number;
  perSecond: number;
  /** Enqueue start → complete done, of the jobs completed inside the window (ms). */
  latencyMs: Distribution;
  /** Client-side duration of each call, over the cycles counted in the window (ms). */
  phasesMs: { enqueue: Distribution; dequeue: Distribution; complete: Distribution };
  /** Empty dequeues (retried) inside the whole run. */
  emptyDequeues: number;
}

export interface LoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Called when the measuring window opens and when it closes (e.g. to read CPU times). */
  atWindowStart?: () => void;
  atWindowEnd?: () => void;
}

export async function runLoops<H extends Held>(
  side: QueueSide<H>,
  opts: LoopOptions,
): Promise<LoopResult> {
  const { concurrency, warmupMs, durationMs } = opts;
  let measuring = false;
  let stopping = false;
  let nextId = 0;
  const latency: number[] = [];
  const enqueue: number[] = [];
  const dequeue: number[] = [];
  const complete: number[] = [];
  let windowStart = 0;
  let windowEnd = 0;
  const window = new Promise<void>((resolve) => {
    setTimeout(() => {
      opts.atWindowStart?.();
      windowStart = performance.now();
      measuring = true;
      setTimeout(() => {
        measuring = false;
        windowEnd = performance.now();
        opts.atWindowEnd?.();
        stopping = true;
        resolve();
      }, durationMs);
    }, warmupMs);
  });
  const loop = async () => {
    try {
      await cycles();
    } catch (err) {
      stopping = true;
      throw err;
    }
  };
  const cycles = async () => {
    // Each loop keeps one job queued ahead of the one it holds, so a finish can take the
    // next job at once: enqueue → finish the held job (taking the next where the side can
    // in the same call) → dequeue only if nothing was taken.
    await side.enqueue(nextId++, performance.now());
    let held = await side.dequeue();
    while (!stopping) {
      const t0 = performance.now();
      await side.enqueue(nextId++, t0);
      const t1 = performance.now();
      const done = held;
      let taken: H | undefined;
      if (side.completeAndTake) taken = await side.completeAndTake(done);
      else await side.complete(done);
      const t2 = performance.now();
      held = taken ?? (await side.dequeue());
      const t3 = performance.now();
      if (measuring) {
        latency.push(t2 - done.t0);
        enqueue.push(t1 - t0);
        complete.push(t2 - t1);
        dequeue.push(t3 - t2);
      }
    }
    await side.complete(held);
  };
  await Promise.all([window, ...Array.from({ length: concurrency }, loop)]);
  const elapsedMs = windowEnd - windowStart;
  return {
    jobs: latency.length,
    elapsedMs,
    perSecond: (latency.length / elapsedMs) * 1000,
    latencyMs: distribution(latency),
    phasesMs: {
      enqueue: distribution(enqueue),
      dequeue: distribution(dequeue),
      complete: distribution(complete),
    },
    emptyDequeues: side.emptyDequeues,
  };
}
