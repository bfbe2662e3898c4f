/**
 * The workloads of bench/replication.ts, over gRPC (GeospoolClient), with 1 KiB of data and
 * about 100 bytes of JSON metadata per entry (bench/lib/grpc-payload.ts):
 * - `runSustained`: enqueues on A on an open-loop schedule (entry i starts at start + i/rate,
 *   whether or not earlier ones have returned), while `consumers` loops on C each take an
 *   entry, then repeat Complete(remove) taking the next one in the same call; probe rows
 *   (the floor) are interleaved at their own rate, so entries and floor share the load;
 * - `runProbes`: probe rows alone (the floor on an otherwise idle cluster);
 * - `enqueueMany`: `count` entries as fast as `concurrency` closed loops go (burst, catch-up).
 */
import type { GeospoolClient, Lease } from "../src/node/client/index.js";
import { jobDataBytes } from "./lib/grpc-payload.js";
import type { JournalWatcher, ProbeRecord, ProbeWriter } from "./replication-probe.js";
import { now } from "./replication-trace.js";

export interface EntryRecord {
  id: number;
  /** Enqueue call started (bench process). */
  t0: number;
  /** Enqueue acknowledged. */
  ack?: number;
  name?: string;
  /** Dequeue on C returned it. */
  deq?: number;
  /** Started inside the measuring window. */
  measured: boolean;
  error?: string;
}

export interface SeenProbe extends ProbeRecord {
  /** Seen in C's journal (poll time), undefined if never within the run. */
  seen?: number;
  measured: boolean;
}

export interface SustainedResult {
  entries: EntryRecord[];
  probes: SeenProbe[];
  windowStart: number;
  windowEnd: number;
  /** Enqueues that started more than 5 ms after their scheduled time (bench process late). */
  lateStarts: number;
  maxInFlight: number;
  consumeErrors: number;
  /** Time spent, after the last enqueue returned, waiting for the rest to be dequeued. */
  drainedMs: number;
}

const metadataOf = (id: number) =>
  JSON.stringify({
    id,
    kind: "bench-entry",
    queuedAt: "2026-01-01T00:00:00.000Z",
    owner: "bench",
    tags: ["small", "1k"],
  });

const sleepUntil = (t: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, t - now())));

export async function runSustained(opts: {
  producer: GeospoolClient;
  consumer: GeospoolClient;
  queue: string;
  rate: number;
  warmupMs: number;
  durationMs: number;
  consumers: number;
  /** How long to wait, after the last enqueue, for every entry to be dequeued. */
  drainMs: number;
  probe?: { writer: ProbeWriter; watcher: JournalWatcher; rate: number };
  atWindowStart?: () => void;
  atWindowEnd?: () => void;
}): Promise<SustainedResult> {
  const { producer, consumer, queue } = opts;
  const entries: EntryRecord[] = [];
  const byId = new Map<number, EntryRecord>();
  const probes: SeenProbe[] = [];
  let stopping = false;
  let consumeErrors = 0;
  let dequeued = 0;
  let acked = 0;
  let drainWake: (() => void) | undefined;

  // Each consumer takes an entry, then removes it and takes the next in one call
  // (`completeThenDequeue`, as a worker would); a plain waiting Dequeue when it holds none.
  const take = { waitMs: 500, leaseMs: 60_000 };
  const consumerLoops = Array.from({ length: opts.consumers }, async () => {
    let lease: Lease | undefined;
    for (;;) {
      try {
        if (lease === undefined) {
          if (stopping) break;
          lease = await consumer.dequeue(queue, take);
          if (lease === undefined) continue;
        }
        const t = now();
        const id = (JSON.parse(lease.entry.metadata.toString("utf8")) as { id: number }).id;
        const rec = byId.get(id);
        if (rec && rec.deq === undefined) {
          rec.deq = t;
          rec.name ??= lease.entry.name;
          dequeued++;
          drainWake?.();
        }
        if (stopping) {
          // What a consumer holds when the run stops is counted above and removed here.
          await consumer.remove(lease);
          break;
        }
        lease = (await consumer.completeThenDequeue(lease, { remove: true }, take)).next;
      } catch {
        // A checkout the answer was lost with stays checked out until its lease ends.
        lease = undefined;
        consumeErrors++;
        if (stopping) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  const start = now() + 50;
  const windowStart = start + opts.warmupMs;
  const windowEnd = windowStart + opts.durationMs;
  const interval = 1000 / opts.rate;
  let lateStarts = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const enqueues: Array<Promise<void>> = [];

  const probeLoop = (async () => {
    const p = opts.probe;
    if (!p) return;
    const every = 1000 / p.rate;
    for (let k = 0; ; k++) {
      const due = start + k * every;
      if (due >= windowEnd) return;
      await sleepUntil(due);
      const rec = await p.writer.probe();
      const seen: SeenProbe = { ...rec, measured: rec.t0 >= windowStart };
      probes.push(seen);
      void p.watcher.when(rec.entry).then((t) => {
        seen.seen = t;
      });
    }
  })();

  let windowOpened = false;
  for (let i = 0; ; i++) {
    const due = start + i * interval;
    if (due >= windowEnd) break;
    await sleepUntil(due);
    if (!windowOpened && due >= windowStart) {
      windowOpened = true;
      opts.atWindowStart?.();
    }
    const t0 = now();
    if (t0 - due > 5) lateStarts++;
    const rec: EntryRecord = { id: i, t0, measured: due >= windowStart };
    entries.push(rec);
    byId.set(i, rec);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    enqueues.push(
      producer
        .enqueue(queue, jobDataBytes, { metadata: metadataOf(i) })
        .then(
          (r) => {
            rec.ack = now();
            rec.name = r.entry.name;
            acked++;
          },
          (err: unknown) => {
            rec.error = err instanceof Error ? err.message : String(err);
          },
        )
        .finally(() => {
          inFlight--;
        }),
    );
  }
  opts.atWindowEnd?.();
  await Promise.all(enqueues);
  await probeLoop;
  const drainStart = now();
  const drainUntil = drainStart + opts.drainMs;
  while (dequeued < acked && now() < drainUntil) {
    await new Promise<void>((resolve) => {
      drainWake = resolve;
      setTimeout(resolve, 200);
    });
  }
  drainWake = undefined;
  const drainedMs = now() - drainStart;
  stopping = true;
  await Promise.all(consumerLoops);
  return {
    entries,
    probes,
    windowStart,
    windowEnd,
    lateStarts,
    maxInFlight,
    consumeErrors,
    drainedMs,
  };
}

/** `count` probe rows, one every `everyMs`, each waited for on C before the next. */
export async function runProbes(
  writer: ProbeWriter,
  watcher: JournalWatcher,
  count: number,
  everyMs: number,
): Promise<SeenProbe[]> {
  const out: SeenProbe[] = [];
  for (let k = 0; k < count; k++) {
    const rec = await writer.probe();
    const seen = await Promise.race([
      watcher.when(rec.entry),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000)),
    ]);
    out.push({ ...rec, measured: true, ...(seen === undefined ? {} : { seen }) });
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return out;
}

export interface Enqueued {
  t0: number;
  ack: number;
  name: string;
}

/** Enqueue `count` entries into `queue` with `concurrency` closed loops; returns each one. */
export async function enqueueMany(
  client: GeospoolClient,
  queue: string,
  count: number,
  concurrency: number,
  firstId = 0,
): Promise<{ entries: Enqueued[]; errors: number }> {
  const entries: Enqueued[] = [];
  let next = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const id = firstId + next++;
        const t0 = now();
        try {
          const r = await client.enqueue(queue, jobDataBytes, { metadata: metadataOf(id) });
          entries.push({ t0, ack: now(), name: r.entry.name });
        } catch {
          errors++;
          if (errors > count / 10) throw new Error(`too many enqueue errors (${errors})`);
        }
      }
    }),
  );
  return { entries, errors };
}
