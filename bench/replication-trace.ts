/**
 * Where an entry's time goes inside one node process of bench/replication.ts: timestamps
 * (ms since the epoch, sub-millisecond, comparable between the processes of one machine)
 * of the steps the replicator takes for each entry, and the size and duration of each sync
 * batch.
 *
 * The replicator's internals are private in TypeScript; this profiling wrapper reaches them
 * at run time (instance properties shadow the prototype's methods) and changes nothing in
 * what they do. It relies on the shape of src/replication/replicator.ts and its parts as of
 * this commit: the replicator's `schedule` (sync-schedule.ts: `mark(entry, reason)`,
 * `commitSeen(lsn)`), its `sync` (entry-sync.ts: `syncBatch(batch)`,
 * `commitOutcomes(outcomes)`) and its `opts` (`pool`, `fetchData(req)`,
 * `spool.inspectMany/place/placeNew(...)`, and where they exist `onPeerEnqueues` and
 * `spool.stageData`, inline data staged by builds before the placement took the bytes itself). If the required ones are missing, `instrument` throws rather than measuring
 * nothing.
 */
import type { RunningNode } from "../src/node/node.js";

export const now = (): number => performance.timeOrigin + performance.now();

/** The steps of one entry, in the order they happen on the node that applies it. */
export const POINTS = [
  /** The service published the entry's `enqueued` transition (the spool enqueue is done). */
  "transition",
  /** The replicator learned of a local change (service hook or file event). */
  "markLocal",
  /** The apply stream delivered a peer's row for the entry. */
  "markPeer",
  /** A sync batch holding the entry started (files inspected, fold read). */
  "batchStart",
  /** The peer's idempotency key is being recorded (onPeerEnqueue, awaited in the sync). */
  "keyStart",
  "keyEnd",
  /** The data carried inline in the enqueue row is being written to a staging file. */
  "stageStart",
  "stageEnd",
  /** The data is being fetched from a peer over gRPC ReadData (not inline). */
  "fetchStart",
  "fetchEnd",
  /** The placement was given the data inline (its bytes, written in its own fsync round). */
  "inline",
  "placeStart",
  "placeEnd",
  /** The transaction holding the entry's local journal rows committed (tailer). */
  "journaled",
  /** The transaction recording a peer change applied to the spool committed (applier). */
  "recorded",
  /** SpoolService.dequeue returned the entry (before the gRPC reply). */
  "dequeued",
] as const;
export type Point = (typeof POINTS)[number];

export interface BatchRecord {
  start: number;
  /** The last `inspect` of the batch's entries returned (the batch's first phase). */
  inspectedAt: number;
  /** Inspect + read fold + sync each entry (fetch and place included). */
  syncedAt: number;
  /** commitOutcomes done. */
  end: number;
  size: number;
  names: string[];
}

export interface NodeTrace {
  node: string;
  /** First time each point was reached, per entry. */
  entries: Record<string, Partial<Record<Point, number>>>;
  batches: BatchRecord[];
  /** Commits the apply stream delivered (time of arrival). */
  streamCommits: number[];
  /**
   * The replicator's own PostgreSQL pool (max 4), sampled every
   * 50 ms: [time, clients waiting for a connection, clients in use].
   */
  pool: Array<[number, number, number]>;
}

export class Tracer {
  private entries = new Map<string, Partial<Record<Point, number>>>();
  private batches: BatchRecord[] = [];
  private streamCommits: number[] = [];
  private pool: Array<[number, number, number]> = [];

  constructor(private readonly node: string) {}

  poolSample(waiting: number, inUse: number, t = now()): void {
    this.pool.push([t, waiting, inUse]);
  }

  point(entry: string, p: Point, t = now()): void {
    let e = this.entries.get(entry);
    if (e === undefined) {
      e = {};
      this.entries.set(entry, e);
    }
    if (e[p] === undefined) e[p] = t;
  }

  batch(b: BatchRecord): void {
    this.batches.push(b);
  }

  streamCommit(t = now()): void {
    this.streamCommits.push(t);
  }

  /** Everything recorded so far; forgets it. */
  take(): NodeTrace {
    const out: NodeTrace = {
      node: this.node,
      entries: Object.fromEntries(this.entries),
      batches: this.batches,
      streamCommits: this.streamCommits,
      pool: this.pool,
    };
    this.entries = new Map();
    this.batches = [];
    this.streamCommits = [];
    this.pool = [];
    return out;
  }
}

interface OutcomeShape {
  entry: string;
  rows?: unknown[];
  applied?: string;
}

interface PoolShape {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

interface ScheduleInternals {
  mark(entry: string, why: string): void;
  commitSeen(lsn: string): void | Promise<void>;
}

interface SyncInternals {
  syncBatch(batch: Array<[string, unknown]>): Promise<void>;
  commitOutcomes(outcomes: OutcomeShape[]): Promise<void>;
}

interface ReplicatorInternals {
  schedule: ScheduleInternals;
  sync: SyncInternals;
  opts: {
    pool: PoolShape;
    fetchData(req: { entry: string }): Promise<{ path: string }>;
    onPeerEnqueues?: (enqueues: ReadonlyArray<{ entry: string }>) => Promise<void>;
    spool: {
      place(name: string, ...rest: unknown[]): Promise<unknown>;
      placeNew(items: ReadonlyArray<{ name: string }>, ...rest: unknown[]): Promise<unknown[]>;
      inspectMany(names: readonly string[], ...rest: unknown[]): Promise<unknown[]>;
      stageData?: (name: string, ...rest: unknown[]) => Promise<unknown>;
    };
  };
}

function method<T extends object>(o: T | undefined, name: string): void {
  if (typeof (o as Record<string, unknown> | undefined)?.[name] !== "function") {
    throw new Error(`replication-trace: the replicator has no ${name}(); update the wrapper`);
  }
}

/** Wrap the node's replicator and service so that `tracer` sees each entry's steps. */
export function instrument(node: RunningNode, tracer: Tracer): void {
  const r = node.replication.replicator as unknown as ReplicatorInternals;
  for (const m of ["mark", "commitSeen"]) method(r.schedule, m);
  for (const m of ["syncBatch", "commitOutcomes"]) method(r.sync, m);
  method(r.opts, "fetchData");
  method(r.opts.spool, "place");
  method(r.opts.spool, "placeNew");
  method(r.opts.spool, "inspectMany");
  const { schedule, sync } = r;

  // Every mark goes through `schedule.mark` (the stream's rows too: `streamRow` calls it).
  const mark = schedule.mark.bind(schedule);
  schedule.mark = (entry, why) => {
    tracer.point(entry, why === "peer" ? "markPeer" : "markLocal");
    mark(entry, why);
  };

  const syncBatch = sync.syncBatch.bind(sync);
  const commitOutcomes = sync.commitOutcomes.bind(sync);
  let current: BatchRecord | undefined;
  sync.syncBatch = async (batch) => {
    const start = now();
    for (const [entry] of batch) tracer.point(entry, "batchStart", start);
    const rec: BatchRecord = {
      start,
      inspectedAt: Number.NaN,
      syncedAt: Number.NaN,
      end: Number.NaN,
      size: batch.length,
      names: batch.map(([entry]) => entry),
    };
    current = rec;
    try {
      await syncBatch(batch);
    } finally {
      rec.end = now();
      tracer.batch(rec);
    }
  };
  sync.commitOutcomes = async (outcomes) => {
    if (current) current.syncedAt = now();
    await commitOutcomes(outcomes);
    const t = now();
    for (const o of outcomes) {
      if (o.rows !== undefined && o.rows.length > 0) tracer.point(o.entry, "journaled", t);
      if (o.applied !== undefined) tracer.point(o.entry, "recorded", t);
    }
  };

  const commitSeen = schedule.commitSeen.bind(schedule);
  schedule.commitSeen = (lsn) => {
    tracer.streamCommit();
    return commitSeen(lsn);
  };

  const opts = r.opts;
  const pool = opts.pool;
  const sampler = setInterval(() => {
    tracer.poolSample(pool.waitingCount, pool.totalCount - pool.idleCount);
  }, 50);
  sampler.unref();
  const fetchData = opts.fetchData;
  opts.fetchData = async (req) => {
    tracer.point(req.entry, "fetchStart");
    try {
      return await fetchData.call(opts, req);
    } finally {
      tracer.point(req.entry, "fetchEnd");
    }
  };
  const onPeerEnqueues = opts.onPeerEnqueues;
  if (typeof onPeerEnqueues === "function") {
    opts.onPeerEnqueues = async (enqueues) => {
      const t = now();
      for (const e of enqueues) tracer.point(e.entry, "keyStart", t);
      try {
        return await onPeerEnqueues.call(opts, enqueues);
      } finally {
        const end = now();
        for (const e of enqueues) tracer.point(e.entry, "keyEnd", end);
      }
    };
  }
  const spool = opts.spool;
  const stageData = spool.stageData;
  if (typeof stageData === "function") {
    spool.stageData = async (name, ...rest) => {
      tracer.point(name, "stageStart");
      try {
        return await stageData.call(spool, name, ...rest);
      } finally {
        tracer.point(name, "stageEnd");
      }
    };
  }
  const inspectMany = spool.inspectMany;
  spool.inspectMany = async (names, ...rest) => {
    const batch = current;
    try {
      return await inspectMany.call(spool, names, ...rest);
    } finally {
      if (batch && batch === current) batch.inspectedAt = now();
    }
  };
  const placeNew = spool.placeNew;
  // Every argument passed on: the replicator's `beforeVisible` gate is one.
  spool.placeNew = async (items, ...rest) => {
    const t = now();
    for (const it of items) {
      tracer.point(it.name, "placeStart", t);
      tracer.point(it.name, "inline", t);
    }
    try {
      return await placeNew.call(spool, items, ...rest);
    } finally {
      const end = now();
      for (const it of items) tracer.point(it.name, "placeEnd", end);
    }
  };
  const place = spool.place;
  spool.place = async (name, ...rest) => {
    const t = now();
    tracer.point(name, "placeStart", t);
    const data = rest[3] as { bytes?: unknown } | undefined;
    if (data?.bytes !== undefined) tracer.point(name, "inline", t);
    try {
      return await place.call(spool, name, ...rest);
    } finally {
      tracer.point(name, "placeEnd");
    }
  };

  node.service.onTransition((t) => {
    if (t.kind === "enqueued") tracer.point(t.name, "transition");
  });
  const service = node.service;
  const dequeue = service.dequeue.bind(service);
  service.dequeue = async (req) => {
    const got = await dequeue(req);
    if (got) tracer.point(got.entry.name, "dequeued");
    return got;
  };
}
