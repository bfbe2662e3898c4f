import type { LeasePolicy } from "../../src/spool/index.js";
import type { WidgetQueue } from "./widget.js";

/** How a worker process opens the test spool (the widget spoolable plus these choices). */
export interface SpoolRef {
  dir: string;
  leases?: Partial<LeasePolicy<WidgetQueue>>;
  /** "lexicographic": `lexicographicTimeNames(tag)`; default: the spool's default names. */
  names?: { kind: "lexicographic"; tag: string };
}

/** What one worker process does; it is given as JSON in argv[2]. */
export type WorkerConfig =
  /** Enqueue `count` entries in order; write `EnqueueResult` to `out`. */
  | {
      role: "enqueue";
      spool: SpoolRef;
      queue: WidgetQueue;
      count: number;
      tag: string;
      out: string;
      /** Record failures in the result instead of dying on the first one. */
      tolerateErrors?: boolean;
    }
  /**
   * Dequeue with a QueueReader, hash the data, remove the entry; stop after `limit`
   * entries or on a `stop` message; write `DequeueResult` to `out`.
   */
  | {
      role: "dequeue";
      spool: SpoolRef;
      queue: WidgetQueue;
      out: string;
      limit?: number;
      leaseMs?: number;
    }
  /** On `go`, try `checkoutIfPresent` on every name (in order or reversed); write `RaceResult`. */
  | {
      role: "race";
      spool: SpoolRef;
      queue: WidgetQueue;
      names: string[];
      reverse: boolean;
      out: string;
    }
  /** Run `expireLeases` in a tight loop until `stop`; write `ReapResult` to `out`. */
  | { role: "reap"; spool: SpoolRef; out: string }
  /** Random operations until killed, journaling to `journal` (see spool-chaos.ts). */
  | {
      role: "chaos";
      spool: SpoolRef;
      journal: string;
      seed: number;
      /** Probability that an operation is an enqueue (the parent lowers it as the spool grows). */
      enqueueShare: number;
    }
  /**
   * `enqueueBatch` of `batchEntries` small self-verifying entries, over and over until
   * killed; each entry reported ok is journaled (`enq`, one fsync per batch). Sends `ready`
   * as its second batch starts.
   */
  | {
      role: "batch";
      spool: SpoolRef;
      journal: string;
      seed: number;
      batchEntries: number;
    }
  /**
   * As "batch", through the replica view's `placeNew` (spool-replica-batch-chaos.ts): a
   * replicator placing a burst of new peer entries.
   */
  | {
      role: "replica-batch";
      spool: SpoolRef;
      journal: string;
      seed: number;
      batchEntries: number;
    };

export interface EnqueuedRecord {
  name: string;
  sha256: string;
}

export interface EnqueueResult {
  enqueued: EnqueuedRecord[];
  failed: { code: string | undefined; errno: string | undefined; message: string }[];
}

export interface DequeuedRecord {
  name: string;
  sha256: string;
  id: number;
}

export interface DequeueResult {
  dequeued: DequeuedRecord[];
}

export interface RaceResult {
  won: string[];
  lost: number;
}

export interface ReapResult {
  expired: { name: string; queue: string; to: string; attempts: number }[];
  rounds: number;
}

/** Messages from parent to worker (`start`: to a standby worker, what to be). */
export type ToWorker = { kind: "go" } | { kind: "stop" } | { kind: "start"; config: WorkerConfig };

/** Messages from worker to parent (`standby`: started without a config, waiting for `start`). */
export type FromWorker =
  | { kind: "standby" }
  | { kind: "ready" }
  | { kind: "done" }
  /** A chaos child's first remove that completed (journaled `rm`). */
  | { kind: "removed" };
