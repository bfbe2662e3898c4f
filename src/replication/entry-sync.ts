import type { Logger } from "pino";
import { mapLimit } from "../common/map-limit.js";
import {
  nameProblem,
  type ReplicaData,
  type ReplicaInspection,
  type ReplicaLook,
} from "../spool/index.js";
import { EntryFetches } from "./entry-fetches.js";
import { errorText, type Outcome, placeDeferred } from "./entry-outcome.js";
import { foldEntry } from "./fold.js";
import type { HybridLogicalClock } from "./hlc.js";
import { rowKey } from "./journal-row.js";
import { type NewJournalRow, readEntries, type StoredJournalRow } from "./journal-store.js";
import { LeaseHolderCache } from "./lease-holder-cache.js";
import { leaseHolder, type QuarantinedRow, writeRecord } from "./replica-record.js";
import {
  type LocalState,
  type Placed,
  type Target,
  targetOf,
  transitionRows,
  type UnstampedRow,
} from "./replica-state.js";
import type { PeerEnqueue, ReplicatorOptions } from "./replicator-options.js";
import {
  applyPlan,
  decide,
  inFluxAction,
  type JournalView,
  mergeStreamed,
  needsFold,
  peerEnqueueOf,
  quarantineAll,
  type Rejection,
  stillOverridden,
  toLocal,
} from "./sync-decision.js";
import type { Dirty, SyncSchedule } from "./sync-schedule.js";
import { traceBatch } from "./sync-trace.js";

/**
 * The replicator's work on a batch of dirty entries: read each one's files, read the
 * journal's fold of those that need it, decide (sync-decision.ts), act (journal a local
 * transition, or place or drop a peer's change in the spool), and write the outcomes to
 * the record in one transaction (replica-record.ts). Holds the record as last committed.
 */

export const INLINE_DATA_MAX = 64 * 1024;

/** Folds being read (`EntrySync.readFolds`). */
interface FoldRead {
  entries: ReadonlySet<string>;
  /** Each entry's stream rows as they were before the query. */
  streamed: ReadonlyMap<string, readonly Record<string, unknown>[]>;
  folds: ReturnType<typeof readEntries>;
}
/** In-flux retries (about 2 s with the backoff) after which a placement counts as dead. */
const STALLED_RETRIES = 3;

export class EntrySync {
  private readonly opts: ReplicatorOptions;
  private readonly schedule: SyncSchedule;
  private readonly hlc: HybridLogicalClock;
  private readonly log: Logger;
  private readonly clock: () => number;
  /** The record as last committed (replica_entries). */
  private record = new Map<string, Placed>();
  /** Entries with a row in replica_pending (deleted once they sync). */
  private readonly pendingRows = new Set<string>();
  /**
   * Entries quarantined before this start, tried again now (a queue may have been added):
   * their quarantine rows are replaced by what the sync finds.
   */
  private readonly requarantine = new Set<string>();
  private readonly quarantinedKeys = new Set<string>();
  /** Entries whose fetch may have left a file in the spool's tmp dir (failed, or at start). */
  private readonly fetchLeft = new Set<string>();
  /** Whose client holds each lease, as last read from the journal (forgotten at a sync). */
  readonly leaseHolders: LeaseHolderCache;
  /** Data fetches under way, apart from the batches (entry-fetches.ts). */
  readonly fetches: EntryFetches;
  readonly counters = { applied: 0, localRows: 0, applyErrors: 0, quarantined: 0, diverged: 0 };
  /** Record rows committed since start (the periodic reconcile walks again after any). */
  recordChanges = 0;
  /** The data read with the batch's inspection (entries not recorded yet), for inlining. */
  private readonly prefetched = new Map<string, Buffer>();
  /** Entries whose record changed since the self-check last took them (record-audit.ts). */
  private touched = new Set<string>();

  constructor(deps: {
    opts: ReplicatorOptions;
    schedule: SyncSchedule;
    hlc: HybridLogicalClock;
    log: Logger;
    clock: () => number;
  }) {
    this.opts = deps.opts;
    this.schedule = deps.schedule;
    this.hlc = deps.hlc;
    this.log = deps.log;
    this.clock = deps.clock;
    this.leaseHolders = new LeaseHolderCache((entry) => leaseHolder(this.opts.pool, entry));
    this.fetches = new EntryFetches(
      (req) => this.opts.fetchData(req),
      (entry) => this.schedule.mark(entry, "peer"),
      this.log,
    );
  }

  /** The record as last committed. */
  get recorded(): ReadonlyMap<string, Placed> {
    return this.record;
  }

  /** The entries whose record changed since the last call (for the self-check). */
  takeChanged(): Set<string> {
    const changed = this.touched;
    this.touched = new Set();
    return changed;
  }

  /** Whether the record of `entry` changed since `takeChanged` was last called. */
  changedSince(entry: string): boolean {
    return this.touched.has(entry);
  }

  /** Start from the record as stored (replica_entries). */
  loadRecord(record: Map<string, Placed>): void {
    this.record = record;
  }

  /** The record describes another spool than this one: it is dropped (see checkSpool). */
  dropRecord(): void {
    this.record.clear();
  }

  /** Sync, as peer changes, entries listed in replica_pending; their rows go once synced. */
  resumePending(entries: readonly string[]): void {
    for (const entry of entries) {
      this.pendingRows.add(entry);
      this.schedule.mark(entry, "peer");
    }
  }

  /** Files an earlier fetch left: sync their entries, to resume them or discard the files. */
  resumeFetches(entries: readonly string[]): void {
    for (const entry of entries) {
      this.fetchLeft.add(entry);
      this.schedule.mark(entry, "peer");
    }
  }

  /** Sync again entries quarantined before this start; what they find replaces their rows. */
  retryQuarantined(entries: readonly string[]): void {
    for (const entry of entries) {
      this.requarantine.add(entry);
      this.schedule.mark(entry, "peer");
    }
  }

  /** A sync failed as a whole (the database or the disk). */
  countError(): void {
    this.counters.applyErrors++;
    this.opts.metrics?.applyError?.();
  }

  /**
   * A peer's change of `entry` was not applied yet: it waits for a retry, or has stream rows
   * no query returned yet.
   */
  private peerChangeWaits(entry: string): boolean {
    return (
      this.schedule.peerRetryPending(entry) ||
      this.pendingRows.has(entry) ||
      this.schedule.hasStreamed(entry)
    );
  }

  /** Sync one batch: read the files and the folds that are needed, decide, act, record. */
  async syncBatch(batch: Array<[string, Dirty]>): Promise<void> {
    // Read every entry's files (together: one look off the event loop for all, with the
    // data of the entries not recorded yet, which a local enqueue's row carries when it is
    // small) and the fold of those that need it. The folds needed whatever the files say
    // (a peer's change, an invalid name: see needsFold) are read beside the look; the
    // others once the look tells. A fold read before the look is no staler than one read
    // after it: a peer's row committed after either query marks the entry dirty again.
    const max = this.opts.inlineDataMax ?? INLINE_DATA_MAX;
    const valid = batch.map(([entry]) => entry).filter((e) => nameProblem(e) === undefined);
    const validSet = new Set(valid);
    const early = this.readFolds(
      batch
        .filter(([entry, d]) => d.peer || this.peerChangeWaits(entry) || !validSet.has(entry))
        .map(([entry]) => entry),
    );
    // Awaited in syncInspected; a failed look fails the batch before that.
    early.folds.catch(() => undefined);
    const looks = await this.opts.spool.inspectMany(valid, (e) =>
      max > 0 && !this.recorded.has(e) ? max : undefined,
    );
    const looked = new Map(valid.map((e, k) => [e, looks[k] as ReplicaLook<string>]));
    const inspected = batch.map(([entry, d]) => {
      const look = looked.get(entry);
      if (look === undefined) return { entry, d, invalid: true as const };
      if (look.data !== undefined) this.prefetched.set(entry, look.data);
      return { entry, d, seen: look.seen, invalid: false as const };
    });
    try {
      await this.syncInspected(inspected, early);
    } finally {
      this.prefetched.clear();
    }
  }

  /**
   * Start reading the folds of `entries`, with the stream rows known for them before the
   * query: stream rows stay with the schedule until a query returns them, so a fold not
   * used now (an entry in flux), or read before the row's commit shows, still gets them
   * next time.
   */
  private readFolds(entries: readonly string[]): FoldRead {
    const streamed = new Map<string, readonly Record<string, unknown>[]>();
    for (const entry of entries) {
      const rows = this.schedule.streamedRows(entry);
      if (rows !== undefined) streamed.set(entry, rows);
    }
    return { entries: new Set(entries), streamed, folds: readEntries(this.opts.pool, entries) };
  }

  private async syncInspected(
    inspected: Array<
      | { entry: string; d: Dirty; invalid: true }
      | { entry: string; d: Dirty; seen: ReplicaInspection<string>; invalid: false }
    >,
    early: FoldRead,
  ): Promise<void> {
    const concurrency = this.opts.concurrency ?? 16;
    const needFold = inspected
      .filter(
        (i) =>
          i.invalid ||
          needsFold(
            i.seen,
            // A peer's change still waiting for a retry (a drop that raced a local lease
            // reaper, say) is read too: journaling the service's transition without it
            // would settle the entry and forget the change, a remove included.
            { peer: i.d.peer || this.peerChangeWaits(i.entry), service: i.d.service },
            this.recorded.get(i.entry) ?? null,
            !this.recorded.has(i.entry) && this.schedule.failures(i.entry) >= STALLED_RETRIES,
          ),
      )
      .map((i) => i.entry);
    const late = this.readFolds(needFold.filter((e) => !early.entries.has(e)));
    const [earlyFolds, lateFolds] = await Promise.all([early.folds, late.folds]);
    // The folds (and their stream rows) of the entries that need one, and only those.
    const folds = new Map<string, JournalView>();
    const streamed = new Map<string, readonly Record<string, unknown>[]>();
    for (const entry of needFold) {
      const [read, got] = early.entries.has(entry) ? [early, earlyFolds] : [late, lateFolds];
      const journal = got.get(entry);
      if (journal !== undefined) folds.set(entry, journal);
      const rows = read.streamed.get(entry);
      if (rows !== undefined) streamed.set(entry, rows);
    }
    const queried = this.log.isLevelEnabled("debug")
      ? new Map([...folds].map(([e, j]) => [e, j.rows.length]))
      : undefined;
    const visible = new Map<string, Set<Record<string, unknown>>>();
    for (const [entry, raws] of streamed) {
      const journal = folds.get(entry);
      if (journal !== undefined) visible.set(entry, mergeStreamed(journal, raws));
    }
    // Peers' idempotency keys, recorded before any of their entries can become visible
    // here (so a retry on this node finds the first entry), all in one statement. It runs
    // beside the decisions and the batch placement's writing (`placeNew` waits for it only
    // before its renames into the queues; a placement alone, in `apply`, before it starts).
    // It never rejects (a failure is logged).
    const keys = this.recordPeerKeys(inspected, folds).catch((err) =>
      this.log.warn({ err }, "could not record the peers' idempotency keys"),
    );
    const now = this.clock();
    const decided = await mapLimit(inspected, concurrency, async (i): Promise<Outcome> => {
      const journal = folds.get(i.entry);
      if (i.invalid) {
        const problem = `invalid entry name: ${nameProblem(i.entry) ?? "?"}`;
        return {
          entry: i.entry,
          quarantine: quarantineAll(journal?.rows ?? [], journal?.rejected, problem),
        };
      }
      return this.syncOne(i.entry, i.seen, i.d.peer, journal, now, keys).catch((err): Outcome => {
        this.countError();
        this.log.error({ err, entry: i.entry }, "could not sync an entry; retrying");
        return { entry: i.entry, retry: { reason: errorText(err), persist: i.d.peer } };
      });
    });
    const outcomes = await placeDeferred(
      this.opts.spool,
      decided,
      (entry, err) => {
        this.countError();
        this.log.error({ err, entry }, "could not sync an entry; retrying");
      },
      keys,
    );
    // Settled already unless nothing was placed; the batch is not done before it is.
    await keys;
    if (queried !== undefined) {
      traceBatch(this.log, { inspected, folds, queried, streamed, outcomes }, this.recorded);
    }
    await this.commitOutcomes(outcomes);
    for (const [entry, rows] of visible) this.schedule.forgetStreamed(entry, rows);
  }

  private async syncOne(
    entry: string,
    seen: ReplicaInspection<string>,
    peer: boolean,
    journal: JournalView | undefined,
    now: number,
    keys: Promise<void>,
  ): Promise<Outcome> {
    if (seen.kind === "in_flux") {
      if (inFluxAction(journal, this.opts.nodeId) === "retry") {
        return { entry, retry: { reason: "the entry is being changed", persist: peer } };
      }
      return this.syncOne(entry, { kind: "absent" }, peer, journal, now, keys);
    }
    const disk = toLocal(seen);
    const rec = this.recorded.get(entry) ?? null;
    if (journal === undefined) {
      // As recorded (nothing to do), or the service's own transition: journal it.
      if (decide(disk, rec, undefined) === "nothing") return { entry };
      return this.journalLocal(entry, seen, disk, rec, null, [], now);
    }
    const quarantine: Rejection[] = journal.rejected.map((r) => ({
      origin: r.origin,
      seq: r.seq,
      problem: r.problem,
    }));
    for (const row of journal.rows) if (row.origin !== this.opts.nodeId) this.hlc.observe(row.hlc);
    const target = targetOf(foldEntry(journal.rows, now));
    switch (decide(disk, rec, target)) {
      case "nothing":
        return { entry, quarantine };
      case "record":
        return { entry, record: disk, quarantine };
      case "journal":
        return await this.journalLocal(entry, seen, disk, rec, journal.rows, quarantine, now);
      case "apply":
        return await this.apply(entry, seen, disk, target, journal.rows, quarantine, keys);
    }
  }

  /**
   * Record the idempotency keys of the peers' new entries in the batch (those this node
   * has not recorded yet: `peerEnqueueOf`), in one call. A failure is logged: the entries
   * are placed anyway, as a key is a convenience for retries, not part of the entry.
   */
  private async recordPeerKeys(
    inspected: ReadonlyArray<{ entry: string; invalid: boolean }>,
    folds: ReadonlyMap<string, JournalView>,
  ): Promise<void> {
    const hook = this.opts.onPeerEnqueues;
    if (hook === undefined) return;
    const enqueues = inspected.flatMap((i): PeerEnqueue[] => {
      const journal = i.invalid ? undefined : folds.get(i.entry);
      const rec = this.recorded.get(i.entry) ?? null;
      const found = journal && peerEnqueueOf(journal.rows, rec, this.opts.nodeId);
      return found ? [{ entry: i.entry, ...found }] : [];
    });
    if (enqueues.length === 0) return;
    await hook(enqueues).catch((err) =>
      this.log.warn({ err, entries: enqueues.length }, "peer enqueue hook failed"),
    );
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
    quarantine: Rejection[],
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
    const again = stillOverridden(rows, stamped, this.opts.nodeId, disk, now);
    return { entry, record: disk, rows: stamped, quarantine, again };
  }

  /** Attach the data of a small local entry to its enqueue row (see `inlineDataMax`). */
  private async inlineSmallData(entry: string, rows: UnstampedRow[]): Promise<void> {
    const max = this.opts.inlineDataMax ?? INLINE_DATA_MAX;
    for (const [i, row] of rows.entries()) {
      if (row.op !== "enqueue" || row.dataSize > max) continue;
      const bytes =
        this.prefetched.get(entry) ??
        (await this.opts.spool.readData(entry).catch(() => undefined));
      // Not hashed again: the enqueue verified the digest as the data streamed in, and the
      // receiving node checks it before using the copy.
      if (bytes === undefined || bytes.length !== row.dataSize) continue;
      rows[i] = { ...row, inlineData: bytes };
    }
  }

  /**
   * Bring the entry's files (as recorded, and as `seen` a moment ago: the spool takes them
   * where they were seen rather than looking again) to the fold's target.
   */
  private async apply(
    entry: string,
    seen: ReplicaInspection<string>,
    disk: LocalState,
    target: Target,
    rows: StoredJournalRow[],
    quarantine: Rejection[],
    keys: Promise<void>,
  ): Promise<Outcome> {
    const { spool } = this.opts;
    const plan = applyPlan(disk, target, rows, (q) => spool.hasQueue(q));
    if (plan.kind === "drop") {
      const r = await spool.drop(entry, seen);
      if (r.kind === "raced")
        return { entry, retry: { reason: "raced", persist: true }, quarantine };
      return { entry, record: null, quarantine, applied: "dropped" };
    }
    if (plan.kind === "unknown_queue") {
      return { entry, quarantine: quarantineAll(rows, undefined, plan.problem, quarantine) };
    }
    if (target.kind !== "placed") throw new Error("unreachable: a placement without a target");
    let data: ReplicaData | undefined;
    if (plan.data.kind === "inline" && seen.kind === "absent") {
      // A new entry with its data here: placed with the batch's others (`placeDeferred`).
      const item = {
        name: entry,
        placement: plan.placement,
        payload: target.payload,
        attempts: target.placed.attempts,
        bytes: plan.data.bytes,
      };
      return { entry, quarantine, deferred: { item, record: target.placed } };
    }
    if (plan.data.kind === "inline") {
      // Written by the placement itself, in the fsync round of the metadata: no staged file.
      data = { bytes: plan.data.bytes };
    } else if (plan.data.kind === "fetch") {
      // The fetch runs apart from this batch: the entries behind this one do not wait for it.
      this.fetchLeft.add(entry);
      const got = this.fetches.poll({
        entry,
        sha256: target.dataSha256,
        size: target.dataSize,
        origin: plan.data.origin,
      });
      if (got.kind === "running") {
        const retry = { reason: "waiting for its data", persist: true };
        return { entry, retry, waitData: true, quarantine };
      }
      if (got.kind === "failed") {
        this.log.warn({ err: got.error, entry }, "data not fetched yet; will retry");
        return { entry, retry: { reason: errorText(got.error), persist: true }, quarantine };
      }
      data = { adoptPath: got.path };
    }
    const p = target.placed;
    await keys; // the entry's idempotency key before the entry (see syncInspected)
    const r = await spool.place(entry, plan.placement, target.payload, p.attempts, data, seen);
    // Raced with a local reader or finish: look again shortly (not at once: a finish left
    // half-done by a crash stays until the monitor repairs it).
    if (r.kind === "raced") return { entry, retry: { reason: "raced", persist: true }, quarantine };
    return { entry, record: p, quarantine, applied: "placed" };
  }

  /**
   * Entries that settled (placed, or needing no data any more, a remove having arrived) keep
   * no fetch file: the file has no registry entry, so fsck would report it until its age
   * made it stale.
   */
  private async discardFetches(outcomes: readonly Outcome[]): Promise<void> {
    const discard = this.opts.discardFetch;
    for (const o of outcomes) {
      if (o.retry) continue;
      // A fetch still under way for an entry that needs no data now (its remove arrived).
      this.fetches.cancel(o.entry);
      if (!this.fetchLeft.has(o.entry)) continue;
      this.fetchLeft.delete(o.entry);
      await discard?.(o.entry).catch((err) =>
        this.log.warn({ err, entry: o.entry }, "could not delete a fetch's leftover file"),
      );
    }
  }

  /** Write a batch's outcomes in one transaction, then bring the in-memory view along. */
  private async commitOutcomes(outcomes: Outcome[]): Promise<void> {
    const rows: NewJournalRow[] = [];
    const records: Array<[string, LocalState]> = [];
    const quarantine: QuarantinedRow[] = [];
    const retry: Array<{ entry: string; reason: string }> = [];
    const settled: string[] = [];
    for (const o of outcomes) {
      if (o.rows) rows.push(...o.rows);
      if (o.record !== undefined) records.push([o.entry, o.record]);
      for (const q of o.quarantine ?? []) quarantine.push({ ...q, entry: o.entry });
      if (o.retry?.persist) retry.push({ entry: o.entry, reason: o.retry.reason });
      else if (!o.retry) settled.push(o.entry);
    }
    const requarantined = outcomes.map((o) => o.entry).filter((e) => this.requarantine.has(e));
    const needTx =
      rows.length + records.length + quarantine.length + retry.length + requarantined.length > 0 ||
      settled.some((e) => this.pendingRows.has(e));
    if (needTx) {
      await writeRecord(this.opts.pool, this.opts.nodeId, {
        rows,
        records,
        quarantine,
        retry,
        settled,
        requarantined,
      });
    }
    // Committed: now the in-memory view follows.
    for (const r of retry) this.pendingRows.add(r.entry);
    for (const e of requarantined) this.requarantine.delete(e);
    if (needTx) for (const e of settled) this.pendingRows.delete(e);
    this.recordChanges += records.length;
    for (const [entry, state] of records) {
      this.touched.add(entry);
      if (state === null) this.record.delete(entry);
      else this.record.set(entry, state);
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
        { entry: q.entry, row: key, problem: q.problem },
        "journal row quarantined: it cannot be applied here; replication goes on",
      );
    }
    await this.discardFetches(outcomes);
    for (const o of outcomes) {
      this.leaseHolders.forget(o.entry);
      if (o.applied || o.rows) this.schedule.quietFor(o.entry);
      if (o.applied) {
        this.counters.applied++;
        this.opts.metrics?.applied?.(o.applied);
      }
      if (o.waitData) this.schedule.awaitData(o.entry);
      else if (o.retry) this.schedule.retryLater(o.entry, o.retry.persist);
      else this.schedule.settled(o.entry);
      if (o.again) this.schedule.mark(o.entry, "peer");
    }
  }
}
