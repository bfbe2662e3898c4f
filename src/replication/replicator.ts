import { type FSWatcher, watch } from "node:fs";
import type { Logger } from "pino";
import { DirChangeGate } from "../common/dir-change-gate.js";
import { componentLogger } from "../common/logger.js";
import { ApplyStream, ensureApplySlot } from "./apply-stream.js";
import { EntrySync } from "./entry-sync.js";
import { HybridLogicalClock } from "./hlc.js";
import { countByOrigin } from "./journal-store.js";
import { reapRank } from "./lease-reap-order.js";
import { type Divergence, RecordAudit } from "./record-audit.js";
import {
  journalEntries,
  lastHlc,
  loadRecord,
  pendingEntries,
  quarantinedEntries,
  recordedSpoolId,
  recordSpoolId,
  restoreLostSpool,
} from "./replica-record.js";
import type { ReplicatorOptions, ReplicatorStatus } from "./replicator-options.js";
import { checkSpoolIdentity } from "./spool-identity-check.js";
import { reconcileSpool } from "./spool-reconcile.js";
import { BATCH_INTERVAL_MS, batchDelay, RETRY_BASE_MS, SyncSchedule } from "./sync-schedule.js";

export { INLINE_DATA_MAX } from "./entry-sync.js";
export type {
  FetchDataRequest,
  PeerEnqueue,
  ReplicaSpool,
  ReplicatorMetrics,
  ReplicatorOptions,
  ReplicatorStatus,
} from "./replicator-options.js";

/**
 * The replicator of one node: the tailer and the applier, over one loop.
 *
 * Everything funnels into `sync(entry)`, which is idempotent: it reads the entry's files
 * (`inspectReplica`), compares them with the state last recorded (replica-record.ts) and
 * with the journal's fold, and then (entry-sync.ts, deciding by sync-decision.ts)
 * - the files differ from the record: a local transition (by this node's service, another
 *   process using the spool directory, a lease reaper). Unless the files already are what
 *   the fold asks for (a peer change placed just before a crash), the transition is written
 *   to the journal with this node's origin, and recorded, in one transaction;
 * - the files are as recorded but the fold asks for something else: a peer's change, placed
 *   in the spool (fetching the data first for a new entry), then recorded. Placing never
 *   writes a journal row, so applied changes do not echo.
 *
 * Entries become dirty (sync-schedule.ts) from: the node's own transitions (`noteLocal`),
 * filesystem events on the queue directories, the apply stream (peer rows arriving in the
 * node's database), a retry timer (data not fetched yet, an entry in the middle of a
 * change), the periodic full reconcile (every entry whose files and record disagree), and
 * at start the persisted retry list and the quarantine. A commit of the apply stream is
 * acknowledged once every entry it named has been synced after it arrived.
 *
 * Batches start at most every `batchIntervalMs` (`batchDelay`): on a busy node the marks of
 * that window are synced together, one transaction for all their rows, and an entry that
 * changed several times in it is journaled once, as its last state (the journal is of
 * states, not of calls: a job enqueued and completed inside the window is never journaled,
 * and peers never had to hold it). A quiet node syncs at once, and so does a loop woken from
 * idle by a peer's change (a row from the apply stream, a fetch that ended), however
 * recently its last batch began.
 */

export const LEASE_REAP_GRACE_MS = 10_000;
/** How long `stop` goes on syncing what is dirty (local transitions not journaled yet). */
const STOP_DRAIN_MS = 5_000;
/** Divergences the self-check logs one by one at each audit (the rest are counted). */
const AUDIT_LOG_MAX = 20;
/**
 * The periodic full reconcile walks the spool at least once in this many passes, even with
 * every queue and checkout directory still (5 min at the default 30 s period).
 */
const WALK_AT_LEAST_EVERY = 10;

export class Replicator {
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly hlc: HybridLogicalClock;
  private readonly schedule: SyncSchedule;
  private readonly sync: EntrySync;
  private stream: ApplyStream | undefined;
  private watchers: FSWatcher[] = [];
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private auditor: RecordAudit | undefined;
  private auditing = false;
  /** Skips the periodic walk while no queue or checkout directory changed. */
  private spoolStill: DirChangeGate | undefined;
  private reconcilePasses = 0;
  /** Walks of the spool by the full reconcile, the start's included (`status`). */
  private reconcileWalks = 0;
  /** `sync.recordChanges` when the last walk that completed began. */
  private walkedAtRecordChanges = -1;

  constructor(private readonly opts: ReplicatorOptions) {
    this.log = componentLogger(opts.logger, "replicator");
    this.clock = opts.clock ?? Date.now;
    this.hlc = opts.hlc ?? new HybridLogicalClock(this.clock);
    this.schedule = new SyncSchedule(this.clock);
    this.sync = new EntrySync({
      opts,
      schedule: this.schedule,
      hlc: this.hlc,
      log: this.log,
      clock: this.clock,
    });
  }

  /**
   * Load the record, make the apply slot, mark for a sync every entry left to retry, every
   * quarantined one, and every one the record and the files disagree on, then start the
   * loop, the watches, the apply stream and the periodic reconcile.
   */
  async start(): Promise<void> {
    const { pool, nodeId } = this.opts;
    const names = await ensureApplySlot(pool, nodeId);
    this.hlc.observe(await lastHlc(pool));
    this.sync.loadRecord(await loadRecord(pool));
    // Peer rows already in the journal: handled by an earlier process (or sent again by the
    // stream); the self-check need not wait for the stream to deliver them.
    const held = await countByOrigin(pool);
    this.schedule.streamedAtStart(new Map(held.map((c) => [c.origin, c.maxSeq])));
    this.auditor = new RecordAudit(pool, [
      nodeId,
      ...(this.opts.peerIds ?? []),
      ...held.map((c) => c.origin),
    ]);
    this.sync.resumePending(await pendingEntries(pool));
    // Rows quarantined for a queue this node lacked are tried again: the queue may exist now.
    this.sync.retryQuarantined(await quarantinedEntries(pool));
    // Files of fetches an earlier process did not finish: resumed, or discarded once synced.
    this.sync.resumeFetches((await this.opts.fetchLeftovers?.()) ?? []);
    await this.checkSpool();
    if (names.recreated) await this.markWholeJournal();
    this.startWatches();
    this.spoolStill = new DirChangeGate(this.opts.spool.watchDirs);
    await this.spoolStill.runIfChanged(() => this.walk());
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
        row: (entry, _origin, raw) => this.schedule.streamRow(entry, raw),
        commit: (lsn) => this.schedule.commitSeen(lsn),
        error: () => this.opts.metrics?.applyError?.(),
        idle: () => this.schedule.streamIdle(),
      },
    });
    this.stream.start();
    const every = this.opts.fullReconcileEveryMs ?? 30_000;
    const t = setInterval(() => {
      this.periodicReconcile()
        .then(() => this.audit())
        .catch((err) => {
          if (!this.stopped) this.log.error({ err }, "full reconcile or self-check failed");
        });
    }, every);
    t.unref();
    this.timers.push(t);
    const r = setInterval(() => this.schedule.releaseDueRetries(), RETRY_BASE_MS);
    r.unref();
    this.timers.push(r);
  }

  /**
   * Is the spool the one the record describes (by its identity, never by emptiness: see
   * spool-identity-check.ts)? If not, the disk was lost or replaced: journaling the
   * difference as removes would delete every entry cluster-wide, so the record goes and
   * every entry the journal names is left to sync (`restoreLostSpool`, one transaction);
   * the applier then restores the spool from the journal and the peers' data.
   */
  private async checkSpool(): Promise<void> {
    const { pool, nodeId, spool } = this.opts;
    const check = checkSpoolIdentity({
      recordedId: await recordedSpoolId(pool),
      spool: spool.identity,
      recordedEntries: this.sync.recorded.size,
    });
    if (check.kind === "same") {
      if (check.recordId) await recordSpoolId(pool, spool.identity.id);
      return;
    }
    this.log.warn(
      { recorded: this.sync.recorded.size, why: check.why },
      "the spool is not the one the record describes: restoring it from the journal, not removing",
    );
    const restore = await restoreLostSpool(pool, nodeId, spool.identity.id);
    this.sync.dropRecord();
    this.sync.resumePending(restore);
  }

  /**
   * Mark every entry the journal names, or the record holds, for a sync against its fold
   * (after an invalidated slot).
   */
  private async markWholeJournal(): Promise<void> {
    for (const entry of await journalEntries(this.opts.pool, this.opts.nodeId)) {
      this.schedule.mark(entry, "peer");
    }
    for (const entry of this.sync.recorded.keys()) this.schedule.mark(entry, "peer");
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
   * is on its way (streamed, marked or being synced), not now (Infinity). The holder is
   * read from the journal once per entry until it syncs again (lease-holder-cache.ts): a reaper
   * asks on every pass about every expired checkout.
   */
  async leaseHoldBack(entry: string): Promise<number> {
    if (this.schedule.peerChangePending(entry)) return Number.POSITIVE_INFINITY;
    const { nodeId } = this.opts;
    let holder: string | undefined;
    try {
      holder = await this.sync.leaseHolders.holderOf(entry);
    } catch (err) {
      // Without its database the node cannot tell whose lease it is: leases still end.
      this.log.warn({ err, entry }, "lease holder unknown; reaping as if it were ours");
      return 0;
    }
    if (holder === undefined || holder === nodeId) return 0;
    if (this.schedule.peerChangePending(entry)) return Number.POSITIVE_INFINITY;
    return (
      reapRank(nodeId, holder, this.opts.peerIds ?? []) *
      (this.opts.leaseReapGraceMs ?? LEASE_REAP_GRACE_MS)
    );
  }

  /** The node's service (or a reaper) changed `entry` in the spool. */
  noteLocal(entry: string): void {
    this.schedule.mark(entry, "service");
  }

  /**
   * Mark for a sync every entry whose files and record disagree on its queue or checkout
   * (anti-entropy for lost events and for a crash between a rename and the journal insert),
   * walking the spool a slice at a time (spool-reconcile.ts).
   */
  reconcile(): Promise<number> {
    return reconcileSpool(
      this.opts.spool,
      () => this.sync.recorded,
      (entry) => this.schedule.mark(entry, "spool"),
    );
  }

  /**
   * The periodic pass of `reconcile`, skipped while every queue and checkout directory is as
   * it was at a walk that began after its last change (DirChangeGate) and no record row was
   * committed since that walk began. The walk compares the names on disk with the record: a
   * directory whose entries did not come, go or move has the names that walk compared, and a
   * record untouched since holds what it compared them with (what it marked was synced and
   * recorded, which walks again). A sync commits the state it read before committing, so a
   * foreign change whose file event was dropped while the entry synced leaves disk and
   * record apart: any record change makes the next pass walk. Every `WALK_AT_LEAST_EVERY`th
   * pass walks all the same. A read-mostly node (a binary cache serving 100,000 narinfos)
   * walked 100,000 names every 30 s for nothing: about 150 ms of CPU (the main thread and
   * the thread pool) each time, 1.5 s at a million entries.
   */
  private async periodicReconcile(): Promise<void> {
    this.reconcilePasses++;
    const gate = this.spoolStill;
    if (
      gate === undefined ||
      this.reconcilePasses % WALK_AT_LEAST_EVERY === 0 ||
      this.sync.recordChanges !== this.walkedAtRecordChanges
    ) {
      await this.walk();
      return;
    }
    await gate.runIfChanged(() => this.walk());
  }

  /** One walk of `reconcile`, noting the record changes it began after. */
  private async walk(): Promise<void> {
    this.reconcileWalks++;
    const changes = this.sync.recordChanges;
    await this.reconcile();
    this.walkedAtRecordChanges = changes;
  }

  /**
   * The self-check, after each full reconcile (record-audit.ts): the entries whose record
   * differs from the journal's fold, leaving out those the replicator is working on, those
   * with peer rows the apply stream has not delivered yet, and those synced while the audit
   * read. State is a function of the journal, so an entry found at two audits in a row is a
   * divergence (a peer's change lost): logged, counted (`diverged`) and synced again against
   * its fold, which repairs it. Returns the divergences this audit confirmed.
   */
  async audit(): Promise<Divergence[]> {
    const auditor = this.auditor;
    if (auditor === undefined || this.auditing || this.stopped) return [];
    this.auditing = true;
    try {
      const { nodeId } = this.opts;
      const confirmed = await auditor.run({
        recorded: this.sync.recorded,
        changed: this.sync.takeChanged(),
        now: this.clock,
        busy: (entry) => this.schedule.knows(entry),
        skip: (entry, rows) =>
          this.sync.changedSince(entry) ||
          this.schedule.knows(entry) ||
          rows.some((r) => r.origin !== nodeId && !this.schedule.streamedThrough(r.origin, r.seq)),
      });
      if (confirmed.length === 0) return [];
      this.sync.counters.diverged += confirmed.length;
      this.opts.metrics?.diverged?.(confirmed.length);
      for (const d of confirmed.slice(0, AUDIT_LOG_MAX)) {
        this.log.warn(
          { entry: d.entry, expected: d.expected, recorded: d.recorded },
          "the spool differs from the journal's fold: syncing the entry again",
        );
      }
      if (confirmed.length > AUDIT_LOG_MAX) {
        this.log.warn(
          { diverged: confirmed.length },
          "more entries differ from the journal's fold: syncing them again",
        );
      }
      for (const d of confirmed) this.schedule.mark(d.entry, "peer");
      return confirmed;
    } finally {
      this.auditing = false;
    }
  }

  /** Resolves once nothing is dirty or in progress (retries aside). For tests and shutdown. */
  idle(): Promise<void> {
    return this.schedule.idle();
  }

  status(): ReplicatorStatus {
    return {
      recordedEntries: this.sync.recorded.size,
      dirty: this.schedule.size,
      retrying: this.schedule.retrying,
      ...this.sync.counters,
      acknowledgedLsn: this.stream?.acknowledged ?? "0/0",
      unacknowledgedCommits: this.schedule.unacknowledgedCommits,
      waitingForData: this.schedule.waitingForData,
      reconcilePasses: this.reconcilePasses,
      reconcileWalks: this.reconcileWalks,
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
      while (this.loop !== undefined && this.schedule.size > 0) {
        const left = until - Date.now();
        if (left <= 0) break;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.schedule.idle(),
          new Promise((resolve) => {
            timer = setTimeout(resolve, left);
          }),
        ]);
        clearTimeout(timer);
      }
      this.stopped = true;
      this.schedule.close();
      this.sync.fetches.close();
      await this.loop?.catch(() => undefined);
      await this.stream?.stop();
      this.schedule.wakeWaiters();
    })();
    return this.stopping;
  }

  private startWatches(): void {
    for (const dir of this.opts.spool.watchDirs) {
      try {
        const w = watch(dir, (_event, file) => {
          if (typeof file !== "string" || file.startsWith(".") || file.includes("~")) return;
          // Events from this node's own changes (a sync under way, one that just placed or
          // journaled the entry, or one already queued) would only sync it again; a foreign
          // change that lands in that window is found by the periodic reconcile.
          if (this.schedule.wantsFileEvent(file)) this.schedule.mark(file, "spool");
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
    let lastStart = Number.NEGATIVE_INFINITY;
    while (!this.stopped) {
      if (this.schedule.dirtyCount === 0) {
        this.acknowledgeDone().catch(() => undefined);
        this.schedule.wakeWaiters();
        await this.schedule.waitForWork();
        continue;
      }
      const wait = batchDelay(
        lastStart,
        performance.now(),
        this.opts.batchIntervalMs ?? BATCH_INTERVAL_MS,
        this.schedule.dirtyCount,
        this.schedule.peerWokeIdle,
      );
      if (wait > 0) {
        await new Promise((r) => setTimeout(r, wait));
        // Stopped meanwhile (the drain ran out): end at this batch boundary, as below.
        if (this.stopped) break;
      }
      lastStart = performance.now();
      const batch = this.schedule.takeBatch();
      try {
        await this.sync.syncBatch(batch);
      } catch (err) {
        // The database or the disk failed: put the batch back and try again shortly.
        this.sync.countError();
        this.log.error({ err, entries: batch.length }, "replication batch failed; retrying");
        this.schedule.putBack(batch);
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        this.schedule.finishBatch(batch);
      }
      await this.acknowledgeDone();
      this.schedule.easeBackpressure();
    }
  }

  /** Acknowledge the last commit whose entries have all been synced since it arrived. */
  private async acknowledgeDone(): Promise<void> {
    const done = this.schedule.takeDoneCommit();
    if (done !== undefined) await this.stream?.acknowledge(done);
  }
}
