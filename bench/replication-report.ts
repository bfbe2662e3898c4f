/**
 * Figures of bench/replication.ts: latency distributions (a missing value counts as
 * infinitely late, so it can only worsen a percentile), the per-step breakdown of an
 * entry's way from A to C out of the node traces, batch statistics, targets.
 */
import { percentile } from "./lib/grpc-stats.js";
import type { EntryRecord, SeenProbe } from "./replication-load.js";
import type { BatchRecord, NodeTrace, Point } from "./replication-trace.js";

export interface Dist {
  count: number;
  /** Samples that never arrived (counted as +Infinity in the percentiles). */
  missing: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
}

/** Rounded: 3 significant digits below 100, integers above; null for none/infinite. */
export function sig(x: number): number | null {
  if (!Number.isFinite(x)) return null;
  if (Math.abs(x) >= 100) return Math.round(x);
  return Number(x.toPrecision(3));
}

export function dist(samples: ReadonlyArray<number | undefined>): Dist {
  const present = samples.filter((x): x is number => x !== undefined && Number.isFinite(x));
  const missing = samples.length - present.length;
  const all = [...present, ...Array<number>(missing).fill(Number.POSITIVE_INFINITY)];
  const sorted = Float64Array.from(all).sort();
  const arr = Array.from(sorted);
  const sum = present.reduce((a, b) => a + b, 0);
  return {
    count: samples.length,
    missing,
    p50: percentile(arr, 50),
    p90: percentile(arr, 90),
    p99: percentile(arr, 99),
    mean: present.length === 0 ? Number.NaN : sum / present.length,
    max: arr.length === 0 ? Number.NaN : (arr[arr.length - 1] as number),
  };
}

export function rounded(d: Dist): Record<string, number | null> {
  return {
    count: d.count,
    missing: d.missing,
    p50: sig(d.p50),
    p90: sig(d.p90),
    p99: sig(d.p99),
    mean: sig(d.mean),
    max: sig(d.max),
  };
}

export function fmt(x: number | null | undefined, width = 7): string {
  const s = x === null || x === undefined || Number.isNaN(x) ? "-" : String(sig(x) ?? "inf");
  return s.padStart(width);
}

/** One entry's timestamps on its way from A to C, joined from every source by name. */
interface Way {
  t0: number;
  ack: number | undefined;
  deq: number | undefined;
  a: Partial<Record<Point, number>>;
  rowOnC: number | undefined;
  c: Partial<Record<Point, number>>;
}

/** When the entry's data started and finished arriving on C: inline staging or a fetch. */
/** Inline data is staged (older builds) or handed to the placement (`inline`: no step). */
const dataStart = (w: Way) => w.c.stageStart ?? w.c.fetchStart ?? w.c.inline;
const dataEnd = (w: Way) => w.c.stageEnd ?? w.c.fetchEnd ?? w.c.inline;
/** The first thing the sync did after inspecting and reading the fold. */
const afterFold = (w: Way) => w.c.keyStart ?? dataStart(w) ?? w.c.placeStart;

/** Points along the way, in order: [label, picker]. */
const POINTS: Array<[string, (w: Way) => number | undefined]> = [
  ["A: spool enqueue done (service transition)", (w) => w.a.transition],
  ["A: enqueue acknowledged at the client", (w) => w.ack],
  ["A: replicator marked the entry (tailer)", (w) => w.a.markLocal],
  ["A: tailer batch started", (w) => w.a.batchStart],
  ["A: journal row committed on A", (w) => w.a.journaled],
  ["C: row visible in C's journal (poll)", (w) => w.rowOnC],
  ["C: apply stream delivered the row", (w) => w.c.markPeer],
  ["C: sync batch started", (w) => w.c.batchStart],
  ["C: idempotency key recording started", (w) => w.c.keyStart],
  ["C: idempotency key recorded", (w) => w.c.keyEnd],
  ["C: data staging (inline) / fetch started", dataStart],
  ["C: data staged / fetched", dataEnd],
  ["C: placement started", (w) => w.c.placeStart],
  ["C: placement done (fsynced)", (w) => w.c.placeEnd],
  ["C: SpoolService.dequeue returned it", (w) => w.c.dequeued],
  ["C: Dequeue reply at the client", (w) => w.deq],
  ["C: replica recorded (commit; off the path)", (w) => w.c.recorded],
];

/** Consecutive steps: [label, from, to]. */
const STEPS: Array<[string, (w: Way) => number | undefined, (w: Way) => number | undefined]> = [
  ["enqueue on A (gRPC, spool fsyncs, idempotency)", (w) => w.t0, (w) => w.a.transition],
  // The service hook marks the entry as it publishes the transition: no step in between.
  ["A tailer: wait for the loop", (w) => w.a.transition, (w) => w.a.batchStart],
  ["A tailer: batch (inspect, fold, insert, commit)", (w) => w.a.batchStart, (w) => w.a.journaled],
  ["subscription A→C (walsender, apply worker)", (w) => w.a.journaled, (w) => w.rowOnC],
  ["C: WAL flush + apply stream decode", (w) => w.rowOnC, (w) => w.c.markPeer],
  ["C applier: wait for the loop", (w) => w.c.markPeer, (w) => w.c.batchStart],
  ["C applier: inspect + read fold (+ batch-mates)", (w) => w.c.batchStart, afterFold],
  ["C applier: record the idempotency key (commit)", (w) => w.c.keyStart, (w) => w.c.keyEnd],
  ["C applier: data: stage inline bytes / fetch", dataStart, dataEnd],
  ["  of which a gRPC ReadData fetch", (w) => w.c.fetchStart, (w) => w.c.fetchEnd],
  ["C applier: data ready → placement", dataEnd, (w) => w.c.placeStart],
  [
    "C: placement → dequeued (files, doorbell, checkout)",
    (w) => w.c.placeStart,
    (w) => w.c.dequeued,
  ],
  ["C: Dequeue reply (gRPC)", (w) => w.c.dequeued, (w) => w.deq],
];

export interface Breakdown {
  entries: number;
  sinceEnqueueStartMs: Array<{ point: string; n: number; p50: number | null; p99: number | null }>;
  stepsMs: Array<{
    step: string;
    n: number;
    p50: number | null;
    p99: number | null;
    mean: number | null;
  }>;
}

export function breakdown(
  entries: readonly EntryRecord[],
  a: NodeTrace,
  c: NodeTrace,
  rowOnC: ReadonlyMap<string, number>,
): Breakdown {
  const ways: Way[] = [];
  for (const e of entries) {
    if (!e.measured || e.name === undefined) continue;
    ways.push({
      t0: e.t0,
      ack: e.ack,
      deq: e.deq,
      a: a.entries[e.name] ?? {},
      rowOnC: rowOnC.get(e.name),
      c: c.entries[e.name] ?? {},
    });
  }
  const since = POINTS.map(([point, pick]) => {
    const xs = ways.map((w) => pick(w)).filter((x): x is number => x !== undefined);
    const d = dist(
      ways.flatMap((w) => (pick(w) === undefined ? [] : [(pick(w) as number) - w.t0])),
    );
    return { point, n: xs.length, p50: sig(d.p50), p99: sig(d.p99) };
  });
  const steps = STEPS.map(([step, from, to]) => {
    const xs = ways.flatMap((w) => {
      const x = from(w);
      const y = to(w);
      return x === undefined || y === undefined ? [] : [y - x];
    });
    const d = dist(xs);
    return { step, n: xs.length, p50: sig(d.p50), p99: sig(d.p99), mean: sig(d.mean) };
  });
  return { entries: ways.length, sinceEnqueueStartMs: since, stepsMs: steps };
}

export interface BatchStats {
  batches: number;
  /** Entries synced (summed over batches) per distinct entry synced. */
  syncsPerEntry: number | null;
  entriesPerBatch: { p50: number | null; max: number | null; mean: number | null };
  /** syncBatch start → commit done. */
  durationMs: Record<string, number | null>;
  /** Inspect, fold, sync (fetch and place included) before the commit. */
  syncMs: Record<string, number | null>;
  /** Of which the first phase: inspecting every entry's files. */
  inspectMs: Record<string, number | null>;
  /** The commit of outcomes (one PostgreSQL transaction). */
  commitMs: Record<string, number | null>;
  /** Fraction of the window the loop spent in batches (1 = never idle). */
  busy: number | null;
}

export function batchStats(batches: readonly BatchRecord[], from: number, to: number): BatchStats {
  const bs = batches.filter((b) => b.start >= from && b.start < to);
  const sizes = dist(bs.map((b) => b.size));
  const pick = (d: Dist) => ({ p50: sig(d.p50), p99: sig(d.p99), mean: sig(d.mean) });
  const busyMs = bs.reduce((s, b) => s + (b.end - b.start), 0);
  const synced = bs.reduce((s, b) => s + b.size, 0);
  const distinct = new Set(bs.flatMap((b) => b.names)).size;
  return {
    batches: bs.length,
    syncsPerEntry: distinct > 0 ? sig(synced / distinct) : null,
    entriesPerBatch: { p50: sig(sizes.p50), max: sig(sizes.max), mean: sig(sizes.mean) },
    durationMs: pick(dist(bs.map((b) => b.end - b.start))),
    syncMs: pick(dist(bs.map((b) => b.syncedAt - b.start))),
    inspectMs: pick(dist(bs.map((b) => b.inspectedAt - b.start))),
    commitMs: pick(dist(bs.map((b) => b.end - b.syncedAt))),
    busy: to > from ? sig(busyMs / (to - from)) : null,
  };
}

export function probeDists(
  probes: readonly SeenProbe[],
  c: NodeTrace | undefined,
): { floor: Dist; afterCommit: Dist; commitOnA: Dist; appliedStreamOnC: Dist } {
  const ps = probes.filter((p) => p.measured);
  return {
    floor: dist(ps.map((p) => (p.seen === undefined ? undefined : p.seen - p.t0))),
    afterCommit: dist(ps.map((p) => (p.seen === undefined ? undefined : p.seen - p.committed))),
    commitOnA: dist(ps.map((p) => p.committed - p.t0)),
    appliedStreamOnC: dist(
      ps.map((p) => {
        const t = c?.entries[p.entry]?.markPeer;
        return t === undefined ? undefined : t - p.t0;
      }),
    ),
  };
}

export interface PoolStats {
  /** Fraction of samples in which some query waited for a connection. */
  waitingFraction: number | null;
  meanWaiting: number | null;
  maxWaiting: number | null;
  meanInUse: number | null;
}

/** The node's PostgreSQL pool over [from, to) (samples every 50 ms). */
export function poolStats(
  samples: ReadonlyArray<[number, number, number]>,
  from: number,
  to: number,
): PoolStats {
  const xs = samples.filter(([t]) => t >= from && t < to);
  if (xs.length === 0) {
    return { waitingFraction: null, meanWaiting: null, maxWaiting: null, meanInUse: null };
  }
  const mean = (f: (x: [number, number, number]) => number) =>
    sig(xs.reduce((s, x) => s + f(x), 0) / xs.length);
  return {
    waitingFraction: mean(([, w]) => (w > 0 ? 1 : 0)),
    meanWaiting: mean(([, w]) => w),
    maxWaiting: Math.max(...xs.map(([, w]) => w)),
    meanInUse: mean(([, , u]) => u),
  };
}
