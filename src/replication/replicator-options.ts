import type pg from "pg";
import type { Logger } from "pino";
import type { ReplicaSpool } from "../spool/index.js";
import type { HybridLogicalClock } from "./hlc.js";

/** The replicator's options, the spool operations it needs, and what it reports. */

/** The spool operations the replicator needs: `Expert.replicaSpool` of the node's spool. */
export type { ReplicaSpool };

export interface FetchDataRequest {
  entry: string;
  sha256: string;
  size: number;
  /** The node that enqueued it: the first place to ask. */
  origin: string;
  /** The entry needs the data no more: stop, and delete what was received. */
  signal?: AbortSignal;
}

/** A peer's enqueue of an entry this node does not hold: its queue and metadata payload. */
export interface PeerEnqueue {
  entry: string;
  queue: string;
  payload: Buffer;
}

export interface ReplicatorMetrics {
  localRows?(n: number): void;
  applied?(kind: "placed" | "dropped"): void;
  applyError?(): void;
  quarantined?(problem: string): void;
  /** The self-check found `n` entries whose record differed from their fold (synced again). */
  diverged?(n: number): void;
}

export interface ReplicatorOptions {
  nodeId: string;
  pool: pg.Pool;
  /** For the replication connection (the apply stream). */
  connectionString: string;
  spool: ReplicaSpool;
  /** The data digest and size recorded in a metadata payload. */
  dataOf(payload: Buffer): { sha256: string; size: number } | undefined;
  /** Fetch an entry's data from a peer into a file the spool can adopt. */
  fetchData(req: FetchDataRequest): Promise<{ path: string }>;
  /**
   * Entries whose fetch left a file behind (an earlier process): synced at start, so each is
   * either resumed or, once the entry needs no data, discarded.
   */
  fetchLeftovers?(): Promise<string[]>;
  /** Delete what a fetch of `entry` left (the entry needs no data any more). */
  discardFetch?(entry: string): Promise<void>;
  /**
   * Peers' enqueue rows were seen for entries this node does not hold (each is given again
   * when more rows of it arrive before it is placed; it may already be removed), one call
   * per batch, before any of them is placed. The node records each entry's idempotency key
   * from it, so a retry here finds the first entry.
   */
  onPeerEnqueues?(enqueues: readonly PeerEnqueue[]): Promise<void>;
  logger?: Logger;
  metrics?: ReplicatorMetrics;
  clock?: () => number;
  /**
   * The node's hybrid logical clock, when the node shares it with others who stamp things
   * (the binary cache stamps uploads with it); default: one of the replicator's own.
   */
  hlc?: HybridLogicalClock;
  /**
   * Full reconcile of the spool against the record, and of the record against the journal's
   * fold (the self-check: record-audit.ts). Default 30 s.
   */
  fullReconcileEveryMs?: number;
  /**
   * Entries whose data is at most this many bytes carry it in their enqueue row, so peers
   * place them without a fetch. 0 turns it off. Default 64 KiB.
   */
  inlineDataMax?: number;
  /**
   * Batches of syncs start at most this often: an entry marked within this long of the last
   * batch's start waits for the next one, so the transitions of a busy node are journaled
   * in fewer, larger transactions (and an entry enqueued and finished inside the window is
   * journaled once). A quiet node syncs at once. 0 turns it off. Default 10 ms.
   */
  batchIntervalMs?: number;
  /** Entries synced at once. Default 16. */
  concurrency?: number;
  /** The ids of the other nodes of the cluster (for the order in which they reap leases). */
  peerIds?: readonly string[];
  /**
   * How long after the lease reaper of the node holding a replicated lease the others wait
   * before they take it back themselves, per place in the order (see `leaseHoldBack`).
   * Default 10 s.
   */
  leaseReapGraceMs?: number;
}

export interface ReplicatorStatus {
  recordedEntries: number;
  dirty: number;
  retrying: number;
  applied: number;
  localRows: number;
  applyErrors: number;
  quarantined: number;
  /** Entries the self-check found differing from their fold (and synced again). */
  diverged: number;
  acknowledgedLsn: string;
  unacknowledgedCommits: number;
  /** Peers' new entries waiting for their data (a fetch under way or not taken yet). */
  waitingForData: number;
  /** Periodic full reconciles since start; walks of the spool (the start's one included). */
  reconcilePasses: number;
  reconcileWalks: number;
}
