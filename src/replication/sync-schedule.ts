import { compareLsn } from "./apply-stream.js";

/**
 * When the replicator syncs what: the entries marked dirty (and why), those in the batch
 * under way, the retries with their backoff, the apply stream's commits waiting to be
 * acknowledged, the decoded peer rows not folded yet, the quiet window in which file events
 * are the replicator's own, and the backpressure that holds the stream while too much is
 * dirty. No I/O: the replicator's loop drives it.
 */

/** Why an entry is dirty. */
export interface Dirty {
  /** Order of marking; a commit is done once no entry marked before it is left. */
  mark: number;
  /** A peer row may have changed the fold: read it even if the files are as recorded. */
  peer: boolean;
  /**
   * Only this node's service changed the entry since it was marked: a difference between
   * the files and the record is its transition, journaled without reading the fold (the
   * fold is read to tell an unrecorded placement of the applier's from a transition).
   */
  service: boolean;
}

/** Why an entry is marked for a sync (see `SyncSchedule.mark`). */
export type MarkReason = "peer" | "service" | "spool";

interface Retry {
  due: number;
  failures: number;
  /** Persisted (a peer's change): marked as a peer change when due. */
  peer: boolean;
}

/**
 * Entries synced at once. A burst of new entries is placed two durability rounds at a time
 * (placeNew's rounds of 512) and journaled in one statement; the price is memory: up to
 * 1,024 entries' small data (at most 64 KiB each, carried in their rows) held per batch.
 */
export const MAX_BATCH = 1024;
/** How long file events for an entry the replicator just changed are taken as its own. */
const QUIET_MS = 1_000;
/** Dirty entries past which the apply stream is held. */
const BACKPRESSURE_DIRTY = 20_000;
export const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 30_000;
/** The default of `ReplicatorOptions.batchIntervalMs`. */
export const BATCH_INTERVAL_MS = 10;

/**
 * How long the loop waits before it takes the next batch: until `intervalMs` after the last
 * batch began (so marks arriving meanwhile join it), never when the last batch began long
 * ago (a quiet node syncs at once) or when a whole batch is already dirty. Nor when
 * `peerWhileIdle`: a peer's change was marked while the loop had nothing to do (a row from
 * the apply stream, most often; also the data of one fetched, or a due retry of one).
 * Someone may be waiting for that entry here (a consumer), and there is nothing to group it
 * with; the window is for a busy loop, and for this node's own transitions (a job's
 * checkout and remove come close together).
 */
export function batchDelay(
  lastStart: number,
  now: number,
  intervalMs: number,
  dirty: number,
  peerWhileIdle = false,
): number {
  if (intervalMs <= 0 || dirty >= MAX_BATCH || peerWhileIdle) return 0;
  return Math.max(0, Math.min(intervalMs, lastStart + intervalMs - now));
}

export class SyncSchedule {
  private readonly dirty = new Map<string, Dirty>();
  private readonly inProgress = new Map<string, number>();
  private readonly retries = new Map<string, Retry>();
  /** Entries waiting for their data (in `retries` too, due never: the fetch's end marks them). */
  private readonly waiting = new Set<string>();
  private readonly commits: Array<{ lsn: string; mark: number }> = [];
  private marks = 0;
  private readonly quiet = new Map<string, number>();
  private readonly streamed = new Map<string, Record<string, unknown>[]>();
  /** Per peer, the highest seq the stream delivered (or the journal held at start). */
  private readonly streamedSeq = new Map<string, bigint>();
  /** Entries folded while some of their stream rows were not visible to queries yet. */
  private readonly hidden = new Set<string>();
  private wake: (() => void) | undefined;
  /** A peer's change was marked while the loop waited for work, and no batch was taken since. */
  private peerSinceIdle = false;
  private drained: Array<() => void> = [];
  private closed = false;

  constructor(private readonly clock: () => number) {}

  /** Entries marked or being synced. */
  get size(): number {
    return this.dirty.size + this.inProgress.size;
  }
  get dirtyCount(): number {
    return this.dirty.size;
  }
  get retrying(): number {
    return this.retries.size - this.waiting.size;
  }
  get waitingForData(): number {
    return this.waiting.size;
  }
  get unacknowledgedCommits(): number {
    return this.commits.length;
  }

  /**
   * Mark `entry` for a sync: `peer` when a peer's row may have changed its fold, `service`
   * when this node's service changed it, `spool` when its files may have changed by any
   * other hand (file events, the reconcile).
   */
  mark(entry: string, why: MarkReason): void {
    if (this.closed) return;
    const mark = ++this.marks;
    const prev = this.dirty.get(entry);
    this.dirty.set(entry, {
      mark,
      peer: why === "peer" || (prev?.peer ?? false),
      service: why === "service" && (prev === undefined || prev.service),
    });
    if (why === "peer" && this.wake !== undefined) this.peerSinceIdle = true;
    this.wake?.();
  }

  /** No more marks; the loop's wait ends. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  /**
   * A peer row from the apply stream. The walsender may send a commit before the committing
   * transaction is visible to other sessions (with synchronous_commit on, the flush comes
   * before the commit shows, and under load the gap can outlast a whole sync), so a query
   * right now could miss the row: the decoded row is kept and folded in with what every sync
   * of the entry reads, until a query returns it (`forgetStreamed`).
   */
  streamRow(entry: string, raw: Record<string, unknown>): void {
    if (typeof raw.origin === "string" && typeof raw.seq === "string" && /^[0-9]+$/.test(raw.seq)) {
      const seq = BigInt(raw.seq);
      if (seq > (this.streamedSeq.get(raw.origin) ?? 0n)) this.streamedSeq.set(raw.origin, seq);
    }
    const rows = this.streamed.get(entry);
    if (rows === undefined) this.streamed.set(entry, [raw]);
    else rows.push(raw);
    this.mark(entry, "peer");
  }

  /** Whether `entry` has decoded peer rows that no query has returned yet. */
  hasStreamed(entry: string): boolean {
    return this.streamed.has(entry);
  }

  /** The decoded peer rows of `entry` that no query has returned yet. */
  streamedRows(entry: string): readonly Record<string, unknown>[] | undefined {
    const rows = this.streamed.get(entry);
    return rows === undefined ? undefined : [...rows];
  }

  /**
   * A sync folded `entry` with its stream rows; `visible` are those its query returned, no
   * longer needed. Rows it did not return stay, and the entry is synced again shortly
   * (`releaseDueRetries`) until a query returns them: a decision taken on rows the database
   * does not show yet is then checked against the database.
   */
  forgetStreamed(entry: string, visible: ReadonlySet<Record<string, unknown>>): void {
    const rows = this.streamed.get(entry);
    if (rows === undefined) return;
    const left = rows.filter((r) => !visible.has(r));
    if (left.length === 0) {
      this.streamed.delete(entry);
      this.hidden.delete(entry);
    } else {
      this.streamed.set(entry, left);
      this.hidden.add(entry);
    }
  }

  /** The journal held these seqs (per peer) at start: rows up to them need no stream. */
  streamedAtStart(maxSeqs: ReadonlyMap<string, bigint>): void {
    for (const [origin, seq] of maxSeqs) {
      if (seq > (this.streamedSeq.get(origin) ?? 0n)) this.streamedSeq.set(origin, seq);
    }
  }

  /** Whether the stream has delivered row `seq` of peer `origin` (or the journal had it at start). */
  streamedThrough(origin: string, seq: bigint): boolean {
    return seq <= (this.streamedSeq.get(origin) ?? 0n);
  }

  /** Whether `entry` is marked, being synced, retried, waiting for its data or streamed. */
  knows(entry: string): boolean {
    return (
      this.dirty.has(entry) ||
      this.inProgress.has(entry) ||
      this.retries.has(entry) ||
      this.streamed.has(entry)
    );
  }

  /** The stream ended a transaction at `lsn`; a promise holds it while too much is dirty. */
  commitSeen(lsn: string): void | Promise<void> {
    this.commits.push({ lsn, mark: this.marks });
    this.wake?.();
    if (this.dirty.size < BACKPRESSURE_DIRTY) return;
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Every commit the stream delivered is acknowledged and no peer change is being synced. */
  streamIdle(): boolean {
    if (this.commits.length > 0 || this.inProgress.size > 0) return false;
    for (const d of this.dirty.values()) if (d.peer) return false;
    return true;
  }

  /** A peer's change of `entry` is on its way (streamed, marked, being synced or retried). */
  peerChangePending(entry: string): boolean {
    return (
      this.dirty.get(entry)?.peer === true ||
      this.inProgress.has(entry) ||
      this.streamed.has(entry) ||
      this.retries.get(entry)?.peer === true
    );
  }

  /** A peer's change of `entry` failed to apply and waits for a retry (or for its data). */
  peerRetryPending(entry: string): boolean {
    return this.retries.get(entry)?.peer === true;
  }

  /** Whether a file event for `entry` is worth a sync (not the replicator's own change). */
  wantsFileEvent(entry: string): boolean {
    if (this.dirty.has(entry) || this.inProgress.has(entry)) return false;
    return (this.quiet.get(entry) ?? 0) <= this.clock();
  }

  /** Resolves when something is marked (or the schedule is closed). */
  async waitForWork(): Promise<void> {
    this.peerSinceIdle = false;
    if (this.dirty.size > 0 || this.closed) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    this.wake = undefined;
  }

  /**
   * Whether the last `waitForWork` was ended by a mark of a peer's change (or one came
   * before the loop looked again): the loop then syncs at once (`batchDelay`'s
   * `peerWhileIdle`).
   */
  get peerWokeIdle(): boolean {
    return this.peerSinceIdle;
  }

  /** Up to MAX_BATCH dirty entries, now in progress. */
  takeBatch(): Array<[string, Dirty]> {
    this.peerSinceIdle = false;
    const batch: Array<[string, Dirty]> = [];
    for (const [entry, d] of this.dirty) {
      batch.push([entry, d]);
      if (batch.length >= MAX_BATCH) break;
    }
    for (const [entry, d] of batch) {
      this.dirty.delete(entry);
      this.inProgress.set(entry, d.mark);
    }
    return batch;
  }

  /** The batch failed as a whole: mark its entries again (unless marked since). */
  putBack(batch: Array<[string, Dirty]>): void {
    for (const [entry, d] of batch) if (!this.dirty.has(entry)) this.dirty.set(entry, d);
  }

  finishBatch(batch: Array<[string, Dirty]>): void {
    for (const [entry] of batch) this.inProgress.delete(entry);
  }

  /** The replicator changed or journaled `entry`: its file events for a while are its own. */
  quietFor(entry: string): void {
    this.quiet.set(entry, this.clock() + QUIET_MS);
  }

  /** Sync `entry` again after a backoff; `peer` marks it as a peer change when due. */
  retryLater(entry: string, peer: boolean): void {
    const prev = this.retries.get(entry);
    this.waiting.delete(entry);
    const failures = (prev?.failures ?? 0) + 1;
    const wait = Math.min(RETRY_BASE_MS * 2 ** Math.min(failures - 1, 10), RETRY_MAX_MS);
    this.retries.set(entry, {
      due: this.clock() + wait,
      failures,
      peer: peer || (prev?.peer ?? false),
    });
  }

  /**
   * `entry` waits for its data: synced again when its fetch ends (marked by the fetch), not
   * on a timer. Its failures so far still count for the backoff after a failed fetch.
   */
  awaitData(entry: string): void {
    const prev = this.retries.get(entry);
    this.waiting.add(entry);
    this.retries.set(entry, {
      due: Number.POSITIVE_INFINITY,
      failures: prev?.failures ?? 0,
      peer: true,
    });
  }

  settled(entry: string): void {
    this.retries.delete(entry);
    this.waiting.delete(entry);
  }

  failures(entry: string): number {
    return this.retries.get(entry)?.failures ?? 0;
  }

  /** Mark the retries that are due (and end quiet windows that are over). */
  releaseDueRetries(): void {
    const now = this.clock();
    for (const [entry, until] of this.quiet) if (until <= now) this.quiet.delete(entry);
    for (const [entry, r] of this.retries) {
      if (r.due <= now && !this.dirty.has(entry)) this.mark(entry, r.peer ? "peer" : "spool");
    }
    for (const entry of this.hidden) {
      if (!this.dirty.has(entry) && !this.inProgress.has(entry)) this.mark(entry, "peer");
    }
  }

  /** The last commit whose entries have all been synced since it arrived (taken), if any. */
  takeDoneCommit(): string | undefined {
    let lowest = Number.POSITIVE_INFINITY;
    for (const d of this.dirty.values()) lowest = Math.min(lowest, d.mark);
    for (const m of this.inProgress.values()) lowest = Math.min(lowest, m);
    let done: string | undefined;
    while (this.commits.length > 0 && (this.commits[0] as { mark: number }).mark < lowest) {
      const c = this.commits.shift() as { lsn: string };
      if (done === undefined || compareLsn(c.lsn, done) > 0) done = c.lsn;
    }
    return done;
  }

  /** Resolves once nothing is dirty or in progress (or at the next wake of waiters). */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Wake what waits on `idle` and a stream held by backpressure. */
  wakeWaiters(): void {
    for (const d of this.drained.splice(0)) d();
  }

  /** After a batch: let a stream held by backpressure go on while work remains. */
  easeBackpressure(): void {
    if (this.dirty.size < BACKPRESSURE_DIRTY / 2 && this.dirty.size > 0) this.wakeWaiters();
  }
}
