import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import type pg from "pg";
import pino, { type Logger } from "pino";
import {
  type DropReplicaResult,
  nameProblem,
  type PlaceReplicaResult,
  type ReplicaData,
  type ReplicaInspection,
  type ReplicaPlacement,
  type SpoolIdentity,
} from "../spool/index.js";
import { ApplyStream, compareLsn, ensureApplySlot } from "./apply-stream.js";
import { compareRows, foldEntry } from "./fold.js";
import { HybridLogicalClock } from "./hlc.js";
import { rowKey, validateRow } from "./journal-row.js";
import {
  appendLocal,
  type NewJournalRow,
  type RejectedJournalRow,
  readEntries,
  type StoredJournalRow,
} from "./journal-store.js";
import { reapRank } from "./lease-reap-order.js";
import { inTransaction } from "./pg-session.js";
import {
  type LocalState,
  type Placed,
  payloadDigest,
  sameState,
  satisfies,
  type Target,
  targetOf,
  transitionRows,
  type UnstampedRow,
} from "./replica-state.js";
import { checkSpoolIdentity } from "./spool-identity-check.js";

/**
 * The replicator of one node: the tailer and the applier, over one loop.
 *
 * Everything funnels into `sync(entry)`, which is idempotent: it reads the entry's files
 * (`inspectReplica`), compares them with the state last recorded (table replica_entries)
 * and with the journal's fold, and then
 * - the files differ from the record: a local transition (by this node's service, another
 *   process using the spool directory, a lease reaper). Unless the files already are what
 *   the fold asks for (a peer change placed just before a crash), the transition is written
 *   to the journal with this node's origin, and recorded, in one transaction;
 * - the files are as recorded but the fold asks for something else: a peer's change, placed
 *   in the spool (fetching the data first for a new entry), then recorded. Placing never
 *   writes a journal row, so applied changes do not echo.
 *
 * Entries become dirty from: the node's own transitions (`noteLocal`), filesystem events on
 * the queue directories, the apply stream (peer rows arriving in the node's database), a
 * retry timer (data not fetched yet, an entry in the middle of a change), the periodic full
 * reconcile (every entry whose files and record disagree), and at start the persisted retry
 * list. A commit of the apply stream is acknowledged once every entry it named has been
 * synced after it arrived.
 */

/** The spool operations the replicator needs (see Spool.inspectReplica and friends). */
export interface ReplicaSpool {
  /** Directories whose file events mean an entry may have moved (queues and their .checkout). */
  readonly watchDirs: readonly string[];
  /** Which spool directory this is: tells a lost spool from an empty one (see `start`). */
  readonly identity: SpoolIdentity;
  hasQueue(queue: string): boolean;
  inspect(name: string): Promise<ReplicaInspection<string>>;
  place(
    name: string,
    placement: ReplicaPlacement<string>,
    payload: Buffer,
    attempts: number,
    data?: ReplicaData,
  ): Promise<PlaceReplicaResult>;
  drop(name: string): Promise<DropReplicaResult>;
  /** An entry's data (for the inline copy of a small entry). */
  readData(name: string): Promise<Buffer>;
  /**
   * Write `bytes` to a file the spool can adopt for `name` (not fsynced: the placement
   * fsyncs it with the metadata); returns its path.
   */
  stageData(name: string, bytes: Buffer): Promise<string>;
  /** Every entry name in the spool with its queue and whether it is checked out. */
  scan(): Promise<Map<string, { queue: string; checkedOut: boolean }>>;
}

export interface FetchDataRequest {
  entry: string;
  sha256: string;
  size: number;
  /** The node that enqueued it: the first place to ask. */
  origin: string;
}

export interface ReplicatorMetrics {
  localRows?(n: number): void;
  applied?(kind: "placed" | "dropped"): void;
  applyError?(): void;
  quarantined?(problem: string): void;
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
   * A peer's enqueue row was seen for an entry this node does not hold (called again when
   * more rows of it arrive before it is placed; it may already be removed). The node records
   * the entry's idempotency key from it, so a retry here finds the first entry.
   */
  onPeerEnqueue?(entry: string, queue: string, payload: Buffer): Promise<void>;
  logger?: Logger;
  metrics?: ReplicatorMetrics;
  clock?: () => number;
  /** Full reconcile of the spool against the record. Default 30 s. */
  fullReconcileEveryMs?: number;
  /**
   * Entries whose data is at most this many bytes carry it in their enqueue row, so peers
   * place them without a fetch. 0 turns it off. Default 64 KiB.
   */
  inlineDataMax?: number;
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
  acknowledgedLsn: string;
  unacknowledgedCommits: number;
}

interface Dirty {
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

interface Outcome {
  entry: string;
  /** New record (undefined: unchanged). */
  record?: LocalState;
  rows?: NewJournalRow[];
  /** Retry later (persisted when `persist`). */
  retry?: { reason: string; persist: boolean };
  /** Sync again right away (raced, or local rows that a tombstone overrides). */
  again?: boolean;
  quarantine?: Array<{ origin: string; seq: bigint; problem: string }>;
  applied?: "placed" | "dropped";
}

const MAX_BATCH = 256;
/** How long file events for an entry the replicator just changed are taken as its own. */
const QUIET_MS = 1_000;
export const INLINE_DATA_MAX = 64 * 1024;
const BACKPRESSURE_DIRTY = 20_000;
const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 30_000;
/** In-flux retries (about 2 s with the backoff) after which a placement counts as dead. */
const STALLED_RETRIES = 3;
export const LEASE_REAP_GRACE_MS = 10_000;
/** How long `stop` goes on syncing what is dirty (local transitions not journaled yet). */
const STOP_DRAIN_MS = 5_000;

export class Replicator {
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly hlc: HybridLogicalClock;
  private readonly recorded = new Map<string, Placed>();
  private readonly dirty = new Map<string, Dirty>();
  private readonly inProgress = new Map<string, number>();
  private readonly retries = new Map<string, { due: number; failures: number; peer: boolean }>();
  private readonly commits: Array<{ lsn: string; mark: number }> = [];
  private marks = 0;
  /** Entries this replicator just changed or journaled: their file events are its own. */
  private readonly quiet = new Map<string, number>();
  /** Decoded peer rows from the apply stream not yet folded, by entry. */
  private readonly streamed = new Map<string, Record<string, unknown>[]>();
  private readonly quarantinedKeys = new Set<string>();
  /** Entries with a row in replica_pending (deleted once they sync). */
  private readonly pendingRows = new Set<string>();
  /**
   * Entries quarantined before this start, tried again now (a queue may have been added):
   * their quarantine rows are replaced by what the sync finds.
   */
  private readonly requarantine = new Set<string>();
  private stream: ApplyStream | undefined;
  private watchers: FSWatcher[] = [];
  private timers: NodeJS.Timeout[] = [];
  private wake: (() => void) | undefined;
  private drained: Array<() => void> = [];
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private readonly counters = {
    applied: 0,
    localRows: 0,
    applyErrors: 0,
    quarantined: 0,
  };

  constructor(private readonly opts: ReplicatorOptions) {
    this.log = (opts.logger ?? pino({ level: "silent" })).child({ component: "replicator" });
    this.clock = opts.clock ?? Date.now;
    this.hlc = new HybridLogicalClock(this.clock);
  }

  /**
   * Load the record, make the apply slot, mark for a sync every entry the record and the
   * files disagree on and every entry left to retry, then start the loop, the watches,
   * the apply stream and the periodic reconcile.
   */
  async start(): Promise<void> {
    const { pool, nodeId } = this.opts;
    const names = await ensureApplySlot(pool, nodeId);
    const last = await pool.query<{ hlc: string | null }>("select max(hlc) as hlc from journal");
    this.hlc.observe(BigInt(last.rows[0]?.hlc ?? 0));
    const rec = await pool.query<{
      entry: string;
      queue: string;
      checked_out: boolean;
      lease_until: string | null;
      attempts: number;
      payload_sha256: string;
    }>(
      "select entry, queue, checked_out, lease_until, attempts, payload_sha256 from replica_entries",
    );
    for (const r of rec.rows) {
      this.recorded.set(r.entry, {
        queue: r.queue,
        checkedOut: r.checked_out,
        leaseUntil: r.lease_until === null ? null : Number(r.lease_until),
        attempts: r.attempts,
        payloadSha256: r.payload_sha256,
      });
    }
    const pending = await pool.query<{ entry: string }>("select entry from replica_pending");
    for (const r of pending.rows) {
      this.pendingRows.add(r.entry);
      this.mark(r.entry, true);
    }
    // Rows quarantined for a queue this node lacked are tried again: the queue may exist now.
    const quarantined = await pool.query<{ entry: string }>(
      "select distinct entry from replica_quarantine",
    );
    for (const r of quarantined.rows) {
      this.requarantine.add(r.entry);
      this.mark(r.entry, true);
    }
    await this.checkSpool();
    if (names.recreated) await this.markWholeJournal();
    this.startWatches();
    await this.reconcile();
    this.loop = this.run();
    this.stream = new ApplyStream({
      connectionString: this.opts.connectionString,
      names,
      // A slot invalidated while the node runs is remade before the stream reconnects.
      prepare: async () => {
        const again = await ensureApplySlot(pool, nodeId);
        if (again.recreated) {
          this.log.warn("the apply slot was invalidated and made again; rereading the journal");
          await this.markWholeJournal();
        }
      },
      logger: this.log,
      handlers: {
        row: (entry, _origin, raw) => this.streamRow(entry, raw),
        commit: (lsn) => this.commitSeen(lsn),
        error: () => this.opts.metrics?.applyError?.(),
        idle: () => this.streamIdle(),
      },
    });
    this.stream.start();
    const every = this.opts.fullReconcileEveryMs ?? 30_000;
    const t = setInterval(() => {
      this.reconcile().catch((err) => this.log.error({ err }, "full reconcile failed"));
    }, every);
    t.unref();
    this.timers.push(t);
    const r = setInterval(() => this.releaseDueRetries(), RETRY_BASE_MS);
    r.unref();
    this.timers.push(r);
  }

  /**
   * Is the spool the one the record describes (by its identity, never by emptiness: see
   * spool-identity-check.ts)? If not, the disk was lost or replaced: journaling the
   * difference as removes would delete every entry cluster-wide, so in one transaction the
   * record goes, every entry the journal names is left to sync (in replica_pending, so a
   * crash part-way resumes the restore) and the spool's id is recorded; the applier then
   * restores the spool from the journal and the peers' data.
   */
  private async checkSpool(): Promise<void> {
    const { pool, nodeId, spool } = this.opts;
    const recorded = await pool.query<{ spool_id: string }>("select spool_id from replica_spool");
    const check = checkSpoolIdentity({
      recordedId: recorded.rows[0]?.spool_id,
      spool: spool.identity,
      recordedEntries: this.recorded.size,
    });
    const recordId = (client: pg.ClientBase) =>
      client.query(
        `insert into replica_spool (spool_id) values ($1)
         on conflict (singleton) do update set spool_id = excluded.spool_id, recorded_at = now()`,
        [spool.identity.id],
      );
    if (check.kind === "same") {
      if (check.recordId) await inTransaction(pool, recordId);
      return;
    }
    this.log.warn(
      { recorded: this.recorded.size, why: check.why },
      "the spool is not the one the record describes: restoring it from the journal, not removing",
    );
    const restore = await inTransaction(pool, async (client) => {
      await client.query("delete from replica_entries");
      const r = await client.query<{ entry: string }>(
        `insert into replica_pending (entry, reason)
         select distinct entry, 'restoring a lost spool' from journal
         where origin <> $1 or op = 'enqueue'
         on conflict (entry) do nothing
         returning entry`,
        [nodeId],
      );
      await recordId(client);
      return r.rows;
    });
    this.recorded.clear();
    for (const r of restore) {
      this.pendingRows.add(r.entry);
      this.mark(r.entry, true);
    }
  }

  /** Every commit the stream delivered is acknowledged and no peer change is being synced. */
  private streamIdle(): boolean {
    if (this.commits.length > 0 || this.inProgress.size > 0) return false;
    for (const d of this.dirty.values()) if (d.peer) return false;
    return true;
  }

  /**
   * Mark every entry the journal names, or the record holds, for a sync against its fold
   * (after an invalidated slot).
   */
  private async markWholeJournal(): Promise<void> {
    const r = await this.opts.pool.query<{ entry: string }>(
      "select distinct entry from journal where origin <> $1 or op = 'enqueue'",
      [this.opts.nodeId],
    );
    for (const row of r.rows) this.mark(row.entry, true);
    for (const entry of this.recorded.keys()) this.mark(entry, true);
  }

  /**
   * How much longer than its own spool's grace this node leaves an expired checkout of
   * `entry` before taking it back (the spool's `holdBack`). Every node's reaper would
   * otherwise journal a release, and a slow node's release landing after another node's
   * new checkout would hand the entry to a second worker. So the node whose client took
   * the lease (the origin of the entry's last checkout row, in fold order) reaps first (0);
   * every other node waits `leaseReapGraceMs` times its place among the non-holders (node
   * ids in sorted order, 1-based), time for an earlier node's release to arrive and be
   * placed, which moves the file and ends the question. While a peer's change of the entry
   * is on its way (streamed, marked or being synced), not now (Infinity).
   */
  async leaseHoldBack(entry: string): Promise<number> {
    if (this.peerChangePending(entry)) return Number.POSITIVE_INFINITY;
    const { nodeId } = this.opts;
    let holder: string | undefined;
    try {
      const r = await this.opts.pool.query<{ origin: string }>({
        name: "replica_lease_holder",
        text: `select origin from journal where entry = $1 and op = 'checkout'
               order by hlc desc, origin desc, seq desc limit 1`,
        values: [entry],
      });
      holder = r.rows[0]?.origin;
    } catch (err) {
      // Without its database the node cannot tell whose lease it is: leases still end.
      this.log.warn({ err, entry }, "lease holder unknown; reaping as if it were ours");
      return 0;
    }
    if (holder === undefined || holder === nodeId) return 0;
    if (this.peerChangePending(entry)) return Number.POSITIVE_INFINITY;
    return (
      reapRank(nodeId, holder, this.opts.peerIds ?? []) *
      (this.opts.leaseReapGraceMs ?? LEASE_REAP_GRACE_MS)
    );
  }

  private peerChangePending(entry: string): boolean {
    return (
      this.dirty.get(entry)?.peer === true ||
      this.inProgress.has(entry) ||
      this.streamed.has(entry) ||
      this.retries.get(entry)?.peer === true
    );
  }

  /** The node's service (or a reaper) changed `entry` in the spool. */
  noteLocal(entry: string): void {
    this.mark(entry, false, true);
  }

  /**
   * Mark for a sync every entry whose files and record disagree on its queue or checkout
   * (anti-entropy for lost events and for a crash between a rename and the journal insert).
   */
  async reconcile(): Promise<number> {
    const onDisk = await this.opts.spool.scan();
    let n = 0;
    for (const [name, where] of onDisk) {
      const rec = this.recorded.get(name);
      if (rec === undefined || rec.queue !== where.queue || rec.checkedOut !== where.checkedOut) {
        this.mark(name, false);
        n++;
      }
    }
    for (const name of this.recorded.keys()) {
      if (!onDisk.has(name)) {
        this.mark(name, false);
        n++;
      }
    }
    return n;
  }

  /** Resolves once nothing is dirty or in progress (retries aside). For tests and shutdown. */
  idle(): Promise<void> {
    if (this.dirty.size === 0 && this.inProgress.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  status(): ReplicatorStatus {
    return {
      recordedEntries: this.recorded.size,
      dirty: this.dirty.size + this.inProgress.size,
      retrying: this.retries.size,
      applied: this.counters.applied,
      localRows: this.counters.localRows,
      applyErrors: this.counters.applyErrors,
      quarantined: this.counters.quarantined,
      acknowledgedLsn: this.stream?.acknowledged ?? "0/0",
      unacknowledgedCommits: this.commits.length,
    };
  }

  /**
   * Stop: first go on syncing what is dirty (for up to STOP_DRAIN_MS), so the node's last
   * transitions are journaled now rather than found at the next start; then end the loop
   * at a batch boundary and the apply stream.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const w of this.watchers) w.close();
      for (const t of this.timers) clearInterval(t);
      const until = Date.now() + STOP_DRAIN_MS;
      while (this.loop !== undefined && this.dirty.size + this.inProgress.size > 0) {
        const left = until - Date.now();
        if (left <= 0) break;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.idle(),
          new Promise((resolve) => {
            timer = setTimeout(resolve, left);
          }),
        ]);
        clearTimeout(timer);
      }
      this.stopped = true;
      this.wake?.();
      await this.loop?.catch(() => undefined);
      await this.stream?.stop();
      for (const d of this.drained.splice(0)) d();
    })();
    return this.stopping;
  }

  // ---- marking -------------------------------------------------------------------------

  private mark(entry: string, peer: boolean, service = false): void {
    if (this.stopped) return;
    const mark = ++this.marks;
    const prev = this.dirty.get(entry);
    this.dirty.set(entry, {
      mark,
      peer: peer || (prev?.peer ?? false),
      service: service && (prev === undefined || prev.service),
    });
    this.wake?.();
  }

  /**
   * A peer row from the apply stream. The walsender may send a commit before the committing
   * transaction is visible to other sessions (with synchronous_commit on, the flush comes
   * before the commit shows), so a query right now could miss the row: the decoded row is
   * kept and folded in with what the next sync reads.
   */
  private streamRow(entry: string, raw: Record<string, unknown>): void {
    const rows = this.streamed.get(entry);
    if (rows === undefined) this.streamed.set(entry, [raw]);
    else rows.push(raw);
    this.mark(entry, true);
  }

  private commitSeen(lsn: string): void | Promise<void> {
    this.commits.push({ lsn, mark: this.marks });
    this.wake?.();
    if (this.dirty.size < BACKPRESSURE_DIRTY) return;
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private releaseDueRetries(): void {
    const now = this.clock();
    for (const [entry, until] of this.quiet) if (until <= now) this.quiet.delete(entry);
    for (const [entry, r] of this.retries) {
      if (r.due <= now && !this.dirty.has(entry)) this.mark(entry, r.peer);
    }
  }

  private startWatches(): void {
    for (const dir of this.opts.spool.watchDirs) {
      try {
        const w = watch(dir, (_event, file) => {
          if (typeof file !== "string" || file.startsWith(".") || file.includes("~")) return;
          // Events from this node's own changes (a sync under way, one that just placed or
          // journaled the entry, or one already queued) would only sync it again; a foreign
          // change that lands in that window is found by the periodic reconcile.
          if (this.dirty.has(file) || this.inProgress.has(file)) return;
          if ((this.quiet.get(file) ?? 0) > this.clock()) return;
          this.mark(file, false);
        });
        w.on("error", (err) => this.log.warn({ err, dir }, "spool watch failed"));
        this.watchers.push(w);
      } catch (err) {
        // The periodic reconcile still finds what events would have shown.
        this.log.warn({ err, dir }, "cannot watch a spool directory");
      }
    }
  }

  // ---- the loop ----------------------------------------------------------------------------

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.dirty.size === 0) {
        this.acknowledgeDone().catch(() => undefined);
        for (const d of this.drained.splice(0)) d();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const batch: Array<[string, Dirty]> = [];
      for (const [entry, d] of this.dirty) {
        batch.push([entry, d]);
        if (batch.length >= MAX_BATCH) break;
      }
      for (const [entry, d] of batch) {
        this.dirty.delete(entry);
        this.inProgress.set(entry, d.mark);
      }
      try {
        await this.syncBatch(batch);
      } catch (err) {
        // The database or the disk failed: put the batch back and try again shortly.
        this.counters.applyErrors++;
        this.opts.metrics?.applyError?.();
        this.log.error({ err, entries: batch.length }, "replication batch failed; retrying");
        for (const [entry, d] of batch) {
          if (!this.dirty.has(entry)) this.dirty.set(entry, d);
        }
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        for (const [entry] of batch) this.inProgress.delete(entry);
      }
      await this.acknowledgeDone();
      if (this.dirty.size < BACKPRESSURE_DIRTY / 2 && this.dirty.size > 0) {
        // Let a stream held by backpressure go on while work remains.
        for (const d of this.drained.splice(0)) d();
      }
    }
  }

  /** Attach the data of a small local entry to its enqueue row (see `inlineDataMax`). */
  private async inlineSmallData(entry: string, rows: UnstampedRow[]): Promise<void> {
    const max = this.opts.inlineDataMax ?? INLINE_DATA_MAX;
    for (const [i, row] of rows.entries()) {
      if (row.op !== "enqueue" || row.dataSize > max) continue;
      const bytes = await this.opts.spool.readData(entry).catch(() => undefined);
      // Not hashed again: the enqueue verified the digest as the data streamed in, and the
      // receiving node checks it before using the copy.
      if (bytes === undefined || bytes.length !== row.dataSize) continue;
      rows[i] = { ...row, inlineData: bytes };
    }
  }

  /** An entry in flux that may be a dead placement of this node's (see `syncOne`). */
  private stalledPlacement(entry: string): boolean {
    return !this.recorded.has(entry) && (this.retries.get(entry)?.failures ?? 0) >= STALLED_RETRIES;
  }

  /** Acknowledge the last commit whose entries have all been synced since it arrived. */
  private async acknowledgeDone(): Promise<void> {
    let lowest = Number.POSITIVE_INFINITY;
    for (const d of this.dirty.values()) lowest = Math.min(lowest, d.mark);
    for (const m of this.inProgress.values()) lowest = Math.min(lowest, m);
    let done: string | undefined;
    while (this.commits.length > 0 && (this.commits[0] as { mark: number }).mark < lowest) {
      const c = this.commits.shift() as { lsn: string };
      if (done === undefined || compareLsn(c.lsn, done) > 0) done = c.lsn;
    }
    if (done !== undefined) await this.stream?.acknowledge(done);
  }

  private async syncBatch(batch: Array<[string, Dirty]>): Promise<void> {
    const { pool } = this.opts;
    // Read every entry's files first (in parallel), then the fold of those that need it.
    const inspected = await mapLimit(batch, this.opts.concurrency ?? 16, async ([entry, d]) => {
      if (nameProblem(entry) !== undefined) return { entry, d, invalid: true as const };
      const seen = await this.opts.spool.inspect(entry);
      return { entry, d, seen, invalid: false as const };
    });
    const needFold = inspected
      .filter((i) => {
        if (i.invalid) return true;
        if (i.seen.kind === "in_flux") return this.stalledPlacement(i.entry);
        if (i.d.peer) return true;
        return !i.d.service && !sameState(toLocal(i.seen), this.recorded.get(i.entry) ?? null);
      })
      .map((i) => i.entry);
    const streamed = new Map<string, Record<string, unknown>[]>();
    for (const [entry] of batch) {
      const rows = this.streamed.get(entry);
      if (rows === undefined) continue;
      streamed.set(entry, rows);
      this.streamed.delete(entry);
    }
    const folds = await readEntries(pool, needFold);
    for (const [entry, raws] of streamed) mergeStreamed(folds.get(entry), raws);
    const now = this.clock();
    const outcomes = await mapLimit(inspected, this.opts.concurrency ?? 16, async (i) => {
      const journal = folds.get(i.entry);
      if (i.invalid) return this.quarantineAll(i.entry, journal?.rows ?? [], journal?.rejected);
      return this.syncOne(i.entry, i.seen, i.d.peer, journal, now).catch((err): Outcome => {
        this.counters.applyErrors++;
        this.opts.metrics?.applyError?.();
        this.log.error({ err, entry: i.entry }, "could not sync an entry; retrying");
        return { entry: i.entry, retry: { reason: errorText(err), persist: i.d.peer } };
      });
    });
    await this.commitOutcomes(outcomes);
  }

  private async syncOne(
    entry: string,
    seen: ReplicaInspection<string>,
    peer: boolean,
    journal: { rows: StoredJournalRow[]; rejected: RejectedJournalRow[] } | undefined,
    now: number,
  ): Promise<Outcome> {
    if (seen.kind === "in_flux") {
      const mine = journal?.rows.find((r) => r.op === "enqueue")?.origin === this.opts.nodeId;
      if (journal === undefined || mine) {
        return { entry, retry: { reason: "the entry is being changed", persist: peer } };
      }
      // A peer's entry this node never recorded, in flux through several retries: not a
      // local enqueue (a peer created it) nor a local finish (it was never placed here),
      // but a placement that died half-way. Placing it again resumes it.
      return this.syncOne(entry, { kind: "absent" }, peer, journal, now);
    }
    const disk = toLocal(seen);
    const rec = this.recorded.get(entry) ?? null;
    if (journal === undefined) {
      // As recorded (nothing to do), or the service's own transition: journal it.
      if (sameState(disk, rec)) return { entry };
      return this.journalLocal(entry, seen, disk, rec, null, [], now);
    }
    const quarantine = journal.rejected.map((r) => ({
      origin: r.origin,
      seq: r.seq,
      problem: r.problem,
    }));
    for (const row of journal.rows) if (row.origin !== this.opts.nodeId) this.hlc.observe(row.hlc);
    const target = targetOf(foldEntry(journal.rows, now));
    const created = rec === null ? journal.rows.find((r) => r.op === "enqueue") : undefined;
    const peerEnqueue =
      created !== undefined && created.origin !== this.opts.nodeId && created.metadata !== null
        ? { queue: created.queue, payload: created.metadata }
        : undefined;

    // Recorded before the entry can become visible here (apply waits for it before the
    // placement), so a retry on this node finds its key; meanwhile the data is staged.
    const keyRecorded =
      peerEnqueue === undefined
        ? undefined
        : this.opts
            .onPeerEnqueue?.(entry, peerEnqueue.queue, peerEnqueue.payload)
            .catch((err) => this.log.warn({ err, entry }, "peer enqueue hook failed"));
    try {
      return await this.decide(
        entry,
        seen,
        disk,
        rec,
        journal.rows,
        target,
        quarantine,
        now,
        keyRecorded,
      );
    } finally {
      await keyRecorded;
    }
  }

  private async decide(
    entry: string,
    seen: ReplicaInspection<string>,
    disk: LocalState,
    rec: LocalState,
    rows: StoredJournalRow[],
    target: Target,
    quarantine: Array<{ origin: string; seq: bigint; problem: string }>,
    now: number,
    keyRecorded?: Promise<unknown>,
  ): Promise<Outcome> {
    if (!sameState(disk, rec)) {
      if (satisfies(disk, target, false)) return { entry, record: disk, quarantine };
      return this.journalLocal(entry, seen, disk, rec, rows, quarantine, now);
    }
    if (satisfies(disk, target)) return { entry, quarantine };
    return this.apply(entry, disk, target, rows, quarantine, keyRecorded);
  }

  /**
   * Journal the local transition from `rec` to `disk`. With the fold's rows (`rows` not
   * null), also check whether a peer's row still overrides it, to sync again at once.
   */
  private async journalLocal(
    entry: string,
    seen: ReplicaInspection<string>,
    disk: LocalState,
    rec: LocalState,
    rows: StoredJournalRow[] | null,
    quarantine: Array<{ origin: string; seq: bigint; problem: string }>,
    now: number,
  ): Promise<Outcome> {
    const payload = seen.kind === "present" ? seen.payload : null;
    const made = transitionRows(entry, rec, disk, payload, this.opts.dataOf);
    if ("problem" in made) {
      this.log.error({ entry, problem: made.problem }, "cannot journal a local transition");
      return { entry, record: disk, quarantine };
    }
    await this.inlineSmallData(entry, made);
    const stamped = made.map((r) => ({ ...r, hlc: this.hlc.now() }) as NewJournalRow);
    if (rows === null) return { entry, record: disk, rows: stamped, quarantine };
    // A peer's remove (a tombstone) or a later peer row may still override this one.
    const after = targetOf(
      foldEntry(
        [
          ...rows,
          ...stamped.map((r, k) => ({ ...r, origin: this.opts.nodeId, seq: BigInt(k) })),
        ] as StoredJournalRow[],
        now,
      ),
    );
    return {
      entry,
      record: disk,
      rows: stamped,
      quarantine,
      again: !satisfies(disk, after, false),
    };
  }

  /** Bring the entry's files (as recorded) to the fold's target. */
  private async apply(
    entry: string,
    disk: LocalState,
    target: Target,
    rows: StoredJournalRow[],
    quarantine: Array<{ origin: string; seq: bigint; problem: string }>,
    keyRecorded?: Promise<unknown>,
  ): Promise<Outcome> {
    const { spool } = this.opts;
    if (target.kind === "absent") {
      const r = await spool.drop(entry);
      if (r.kind === "raced")
        return { entry, retry: { reason: "raced", persist: true }, quarantine };
      return { entry, record: null, quarantine, applied: "dropped" };
    }
    const p = target.placed;
    if (!spool.hasQueue(p.queue)) {
      const problem = `queue ${JSON.stringify(p.queue)} is not a queue of this node`;
      return this.quarantineAll(entry, rows, undefined, problem, quarantine);
    }
    const placement: ReplicaPlacement<string> = p.checkedOut
      ? { queue: p.queue, checkedOut: true, leaseUntil: p.leaseUntil ?? 0 }
      : { queue: p.queue, checkedOut: false };
    let data: ReplicaData | undefined;
    const inline = target.inlineData;
    if (
      disk === null &&
      inline !== undefined &&
      inline.length === target.dataSize &&
      createHash("sha256").update(inline).digest("hex") === target.dataSha256
    ) {
      data = { adoptPath: await spool.stageData(entry, inline), synced: false };
    } else if (disk === null) {
      const creator = rows.find((r) => r.op === "enqueue");
      try {
        const got = await this.opts.fetchData({
          entry,
          sha256: target.dataSha256,
          size: target.dataSize,
          origin: creator?.origin ?? "",
        });
        data = { adoptPath: got.path };
      } catch (err) {
        this.log.warn({ err, entry }, "data not fetched yet; will retry");
        return { entry, retry: { reason: errorText(err), persist: true }, quarantine };
      }
    }
    await keyRecorded;
    const r = await spool.place(entry, placement, target.payload, p.attempts, data);
    // Raced with a local reader or finish: look again shortly (not at once: a finish left
    // half-done by a crash stays until the monitor repairs it).
    if (r.kind === "raced") return { entry, retry: { reason: "raced", persist: true }, quarantine };
    return { entry, record: p, quarantine, applied: "placed" };
  }

  private quarantineAll(
    entry: string,
    rows: readonly StoredJournalRow[],
    rejected: readonly RejectedJournalRow[] | undefined,
    problem = `invalid entry name: ${nameProblem(entry) ?? "?"}`,
    more: Array<{ origin: string; seq: bigint; problem: string }> = [],
  ): Outcome {
    const q = [
      ...more,
      ...rows.map((r) => ({ origin: r.origin, seq: r.seq, problem })),
      ...(rejected ?? []).map((r) => ({ origin: r.origin, seq: r.seq, problem: r.problem })),
    ];
    return { entry, quarantine: q };
  }

  private async commitOutcomes(outcomes: Outcome[]): Promise<void> {
    const rows: NewJournalRow[] = [];
    const records: Array<[string, LocalState]> = [];
    const quarantine: Array<{ origin: string; seq: bigint; entry: string; problem: string }> = [];
    const retry: Array<{ entry: string; reason: string }> = [];
    const settled: string[] = [];
    for (const o of outcomes) {
      if (o.rows) rows.push(...o.rows);
      if (o.record !== undefined) records.push([o.entry, o.record]);
      for (const q of o.quarantine ?? []) quarantine.push({ ...q, entry: o.entry });
      if (o.retry?.persist) retry.push({ entry: o.entry, reason: o.retry.reason });
      else if (!o.retry) settled.push(o.entry);
    }
    const retried = outcomes.map((o) => o.entry).filter((e) => this.requarantine.has(e));
    const needTx =
      rows.length + records.length + quarantine.length + retry.length + retried.length > 0 ||
      settled.some((e) => this.pendingRows.has(e));
    if (needTx) {
      await inTransaction(this.opts.pool, async (client) => {
        if (rows.length > 0) await appendLocal(client, this.opts.nodeId, rows);
        const up = records.filter((r): r is [string, Placed] => r[1] !== null);
        const gone = records.filter((r) => r[1] === null).map((r) => r[0]);
        if (up.length > 0) {
          await client.query({
            name: "replica_upsert",
            text: `insert into replica_entries
                   (entry, queue, checked_out, lease_until, attempts, payload_sha256)
                 select * from unnest($1::text[], $2::text[], $3::bool[], $4::bigint[],
                                      $5::int[], $6::text[])
                 on conflict (entry) do update set
                   queue = excluded.queue, checked_out = excluded.checked_out,
                   lease_until = excluded.lease_until, attempts = excluded.attempts,
                   payload_sha256 = excluded.payload_sha256, updated_at = now()`,
            values: [
              up.map((r) => r[0]),
              up.map((r) => r[1].queue),
              up.map((r) => r[1].checkedOut),
              up.map((r) =>
                r[1].leaseUntil === null ? null : String(Math.round(r[1].leaseUntil)),
              ),
              up.map((r) => r[1].attempts),
              up.map((r) => r[1].payloadSha256),
            ],
          });
        }
        if (gone.length > 0) {
          await client.query("delete from replica_entries where entry = any($1::text[])", [gone]);
        }
        if (retried.length > 0) {
          await client.query("delete from replica_quarantine where entry = any($1::text[])", [
            retried,
          ]);
        }
        if (quarantine.length > 0) {
          await client.query(
            `insert into replica_quarantine (origin, seq, entry, problem)
           select * from unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
           on conflict do nothing`,
            [
              quarantine.map((q) => q.origin),
              quarantine.map((q) => q.seq.toString()),
              quarantine.map((q) => q.entry),
              quarantine.map((q) => q.problem),
            ],
          );
        }
        if (retry.length > 0) {
          await client.query(
            `insert into replica_pending (entry, reason)
           select * from unnest($1::text[], $2::text[])
           on conflict (entry) do update set reason = excluded.reason,
             failures = replica_pending.failures + 1, last_attempt = now()`,
            [retry.map((r) => r.entry), retry.map((r) => r.reason.slice(0, 500))],
          );
        }
        if (settled.length > 0) {
          await client.query("delete from replica_pending where entry = any($1::text[])", [
            settled,
          ]);
        }
      });
    }
    // Committed: now the in-memory view follows.
    for (const r of retry) this.pendingRows.add(r.entry);
    for (const e of retried) this.requarantine.delete(e);
    if (needTx) for (const e of settled) this.pendingRows.delete(e);
    for (const [entry, state] of records) {
      if (state === null) this.recorded.delete(entry);
      else this.recorded.set(entry, state);
    }
    if (rows.length > 0) {
      this.counters.localRows += rows.length;
      this.opts.metrics?.localRows?.(rows.length);
    }
    for (const q of quarantine) {
      const key = rowKey(q);
      if (this.quarantinedKeys.has(key)) continue;
      this.quarantinedKeys.add(key);
      this.counters.quarantined++;
      this.opts.metrics?.quarantined?.(q.problem);
      this.log.error(
        { entry: q.entry, row: rowKey(q), problem: q.problem },
        "journal row quarantined: it cannot be applied here; replication goes on",
      );
    }
    const now = this.clock();
    for (const o of outcomes) {
      if (o.applied || o.rows) this.quiet.set(o.entry, now + QUIET_MS);
      if (o.applied) {
        this.counters.applied++;
        this.opts.metrics?.applied?.(o.applied);
      }
      if (o.retry) {
        const prev = this.retries.get(o.entry);
        const failures = (prev?.failures ?? 0) + 1;
        const wait = Math.min(RETRY_BASE_MS * 2 ** Math.min(failures - 1, 10), RETRY_MAX_MS);
        this.retries.set(o.entry, {
          due: now + wait,
          failures,
          peer: o.retry.persist || (prev?.peer ?? false),
        });
      } else {
        this.retries.delete(o.entry);
      }
      if (o.again) this.mark(o.entry, true);
    }
  }
}

/** Add decoded stream rows the query did not return yet (by origin and seq). */
function mergeStreamed(
  journal: { rows: StoredJournalRow[]; rejected: RejectedJournalRow[] } | undefined,
  raws: readonly Record<string, unknown>[],
): void {
  if (journal === undefined) return;
  const have = new Set([...journal.rows, ...journal.rejected].map((r) => rowKey(r)));
  for (const raw of raws) {
    const result = validateRow(raw);
    if (!result.ok) {
      const origin = typeof raw.origin === "string" ? raw.origin : "?";
      const seq = typeof raw.seq === "string" && /^[0-9]+$/.test(raw.seq) ? BigInt(raw.seq) : 0n;
      if (!have.has(`${origin}/${seq}`))
        journal.rejected.push({ origin, seq, problem: result.problem });
      continue;
    }
    if (have.has(rowKey(result.row))) continue;
    have.add(rowKey(result.row));
    const recordedAt = raw.recorded_at instanceof Date ? raw.recorded_at : new Date();
    journal.rows.push({ ...result.row, recordedAt });
  }
  journal.rows.sort(compareRows);
}

function toLocal(seen: ReplicaInspection<string>): LocalState {
  if (seen.kind !== "present") return null;
  return {
    queue: seen.queue,
    checkedOut: seen.checkedOut,
    leaseUntil: seen.checkedOut ? (seen.leaseUntil ?? 0) : null,
    attempts: seen.attempts,
    payloadSha256: payloadDigest(seen.payload),
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  f: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i] as T);
    }
  });
  await Promise.all(workers);
  return out;
}
