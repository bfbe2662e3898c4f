import { DirChangeGate } from "../common/dir-change-gate.js";
import { isErrno } from "../common/errno.js";
import { sleep } from "../common/sleep.js";
import { createExclusive, renameIfExists, statIfExists, unlinkIfExists } from "./fs-ops.js";
import { CHECKOUT, DATA, entryNameOfTmpFile, REGISTRY, TMP, TMP_TAG_SEPARATOR } from "./layout.js";
import { abandonedRegistryFiles } from "./monitor-abandoned.js";
import { fsckDirs, fsckSpool, isStructural } from "./monitor-fsck.js";
import { coreOf, type Spool } from "./spool.js";

export const DEFAULT_MAX_CHECKED_OUT_AGE_MS = 10 * 60_000;
export const DEFAULT_MAX_TMP_FILE_AGE_MS = 10 * 60_000;
export const DEFAULT_CHECK_EVERY_MS = 15_000;
export const DEFAULT_ALERT_AFTER_CYCLES = 2;

/** A directory of the spool, as fsck names it. */
export type SpoolDir<Q extends string> =
  | { kind: "registry" }
  | { kind: "tmp" }
  | { kind: "data" }
  | { kind: "queue"; queue: Q }
  | { kind: "checkout"; queue: Q };

export interface FileWithMtime {
  filename: string;
  mtimeMs: number;
}

/**
 * What fsck finds. The first three are Multispool's; `lease_expired` (a checkout past its
 * deadline and grace) and `missing_data` (metadata whose data file is gone) come with
 * leases and data files.
 */
export type Problem<Q extends string> =
  | { kind: "too_old"; file: FileWithMtime; dir: SpoolDir<Q> }
  | { kind: "orphaned"; file: FileWithMtime; dir: SpoolDir<Q> }
  | { kind: "duplicated"; file: FileWithMtime; dirs: SpoolDir<Q>[] }
  | { kind: "lease_expired"; file: FileWithMtime; dir: SpoolDir<Q> }
  | { kind: "missing_data"; file: FileWithMtime; dir: SpoolDir<Q> };

export type MonitorEvent<Q extends string> =
  | { kind: "start"; at: number; problem: Problem<Q> }
  | { kind: "end"; at: number; problem: Problem<Q> };

export interface Limits<Q extends string> {
  /** A checkout held longer than this (from its checkout time) is too old. Default 10 min. */
  maxCheckedOutAgeMs: number;
  /** A tmp file older than this is too old (and, for repair, abandoned). Default 10 min. */
  maxTmpFileAgeMs: number;
  /** Per queue: an entry waiting longer than this is too old. Default: no limit. */
  maxQueueAgesMs: Partial<Record<Q, number>>;
}

export interface RepairAction<Q extends string> {
  problem: Problem<Q>;
  action: string;
}

export interface RepairReport<Q extends string> {
  repaired: RepairAction<Q>[];
  /** What repair would not touch (not safe to fix without a person). */
  remaining: Problem<Q>[];
}

export function dirLabel<Q extends string>(d: SpoolDir<Q>): string {
  switch (d.kind) {
    case "registry":
      return REGISTRY;
    case "tmp":
      return TMP;
    case "data":
      return DATA;
    case "queue":
      return d.queue;
    case "checkout":
      return `${d.queue}/${CHECKOUT}`;
  }
}

/** A stable identity for a problem: the same file in the same phase is the same problem. */
export function problemKey<Q extends string>(p: Problem<Q>): string {
  const where = "dirs" in p ? p.dirs.map(dirLabel).join(",") : dirLabel(p.dir);
  return `${p.kind}|${where}|${p.file.filename}|${Math.round(p.file.mtimeMs)}`;
}

/** One line for people and logs. */
export function describeProblem<Q extends string>(p: Problem<Q>): string {
  const where = "dirs" in p ? p.dirs.map(dirLabel).join(", ") : dirLabel(p.dir);
  const when = new Date(p.file.mtimeMs).toISOString();
  return `${p.kind} ${p.file.filename} in ${where} (mtime ${when})`;
}

/**
 * Consistency checks over a spool: `fsck` reports, `repair` fixes what is safe, and
 * `daemon` runs fsck periodically and reports problems that persist.
 */
export class Monitor<M, Q extends string> {
  readonly limits: Limits<Q>;
  private counts = new Map<string, { problem: Problem<Q>; cycles: number }>();
  private published = new Map<string, Problem<Q>>();
  /** What the latest `cycle` found. */
  lastProblems: Problem<Q>[] = [];
  /** Whether any directory fsck lists changed since its last whole pass. */
  private readonly fsckGate: DirChangeGate;
  /** The structural problems the last whole pass found (see `fsck`). */
  private structural: Problem<Q>[] = [];

  constructor(
    readonly spool: Spool<M, Q>,
    limits: Partial<Limits<Q>> = {},
  ) {
    this.limits = {
      maxCheckedOutAgeMs: limits.maxCheckedOutAgeMs ?? DEFAULT_MAX_CHECKED_OUT_AGE_MS,
      maxTmpFileAgeMs: limits.maxTmpFileAgeMs ?? DEFAULT_MAX_TMP_FILE_AGE_MS,
      maxQueueAgesMs: limits.maxQueueAgesMs ?? {},
    };
    this.fsckGate = new DirChangeGate(fsckDirs(spool));
  }

  /**
   * Check the whole spool once, walking each directory a slice at a time: what it holds at
   * once is a small integer per registry name, not a record per file (monitor-fsck.ts).
   * While no directory has changed since this monitor's last whole pass, the registry, the
   * data and the queues without an age limit are not listed again: the problems that follow
   * from their listings are the last pass's, and the tmp files, the checkouts and the
   * age-limited queues are looked at anew.
   */
  async fsck(now = coreOf(this.spool).clock()): Promise<Problem<Q>[]> {
    let whole: Problem<Q>[] | undefined;
    const listed = await this.fsckGate.runIfChanged(async () => {
      whole = await fsckSpool(this.spool, this.limits, now);
      this.structural = whole.filter((p) => isStructural(p));
    });
    if (listed) return whole as Problem<Q>[];
    // No directory changed since a whole pass began (its stamps older than a second): the
    // names are where they were, and only what time changes is looked at (monitor-fsck.ts).
    // A serving node of 100,000 entries listed 300,000 names every 15 s for nothing.
    return fsckSpool(this.spool, this.limits, now, this.structural);
  }

  /**
   * Fix what is safe to fix, and report the rest:
   * - tmp files older than `maxTmpFileAgeMs` are deleted (no tmp file is ever the only copy
   *   of an entry);
   * - data files with no registry file, older than `maxTmpFileAgeMs`, are deleted;
   * - a registry file in no queue (an enqueue or remove that died), older than
   *   `maxTmpFileAgeMs` along with its data file, is deleted with its data;
   * - a queue or checkout file with no registry file but with its data gets its registry
   *   file back;
   * - expired leases are returned to their queue (or dead-lettered).
   * Entries too old in a queue or a checkout, duplicates and entries without data are
   * left for a person.
   */
  async repair(now = coreOf(this.spool).clock()): Promise<RepairReport<Q>> {
    return (await this.repairFound(now)).report;
  }

  /** `repair`, with what its fsck found. */
  private async repairFound(
    now: number,
  ): Promise<{ report: RepairReport<Q>; found: Problem<Q>[] }> {
    const core = coreOf(this.spool);
    const l = core.layout;
    const repaired: RepairAction<Q>[] = [];
    const remaining: Problem<Q>[] = [];
    const old = (mtimeMs: number) => now - mtimeMs > this.limits.maxTmpFileAgeMs;
    const done = new Set<string>();
    const registryOrphans: Problem<Q>[] = [];
    const found = await this.fsck(now);
    for (const p of found) {
      const name = p.file.filename;
      let action: string | undefined;
      if (p.kind === "too_old" && p.dir.kind === "checkout" && name.includes(TMP_TAG_SEPARATOR)) {
        // An interrupted finish: back to its checkout path, where its lease runs out as usual.
        const base = entryNameOfTmpFile(name);
        const dirname = core.dirname(p.dir.queue);
        const co = l.checkoutFile(dirname, base);
        if (!(await statIfExists(co))) {
          await renameIfExists(`${l.checkout(dirname)}/${name}`, co);
          const r = await core.expireOne(p.dir.queue, base, now).catch(() => undefined);
          action = r
            ? `restored an interrupted finish and returned it to ${r.to} (attempt ${r.attempts})`
            : "restored an interrupted finish to its checkout";
        }
      } else if (p.kind === "too_old" || p.kind === "orphaned") {
        const d = p.dir;
        if (d.kind === "tmp" && old(p.file.mtimeMs)) {
          if (!done.has(`tmp|${name}`)) await unlinkIfExists(`${l.tmp}/${name}`);
          done.add(`tmp|${name}`);
          action = "deleted stale tmp file";
        } else if (p.kind === "orphaned" && d.kind === "data" && old(p.file.mtimeMs)) {
          if (await this.spool.locate(name)) {
            // The data of an entry that lost its registry file: the entry's own repair
            // (below) restores the registry; the data must stay.
            action = "kept the data of an entry still in a queue";
          } else if (!(await statIfExists(l.registryFile(name)))) {
            await unlinkIfExists(l.dataFile(name));
            action = "deleted orphaned data file";
          }
        } else if (p.kind === "orphaned" && d.kind === "registry") {
          // Checked below, all together (see `abandonedRegistryFiles`).
          registryOrphans.push(p);
          continue;
        } else if (p.kind === "orphaned" && (d.kind === "queue" || d.kind === "checkout")) {
          if (await statIfExists(l.dataFile(name))) {
            await createExclusive(l.registryFile(name));
            action = "restored registry file";
          }
        }
      } else if (p.kind === "lease_expired" && p.dir.kind === "checkout") {
        const r = await core.expireOne(p.dir.queue, name, now).catch((err) => {
          if (isErrno(err, "ENOENT")) return undefined;
          throw err;
        });
        if (r) action = `returned expired lease to ${r.to} (attempt ${r.attempts})`;
      }
      if (action) repaired.push({ problem: p, action });
      else remaining.push(p);
    }
    const abandoned = await abandonedRegistryFiles(
      this.spool,
      registryOrphans.map((p) => p.file),
      old,
    );
    await Promise.all(
      registryOrphans.map(async (p) => {
        const name = p.file.filename;
        if (!abandoned.has(name)) {
          remaining.push(p);
          return;
        }
        await core.throttle.run(async () => {
          await unlinkIfExists(l.dataFile(name));
          await unlinkIfExists(l.registryFile(name));
        });
        repaired.push({ problem: p, action: "deleted abandoned registry file and its data" });
      }),
    );
    return { report: { repaired, remaining }, found };
  }

  /**
   * One daemon cycle: fsck, count how many cycles each problem has persisted, and return
   * `end` events for problems that went away and `start` events for problems seen more
   * than `alertAfterCycles` times in a row.
   */
  async cycle(
    alertAfterCycles: number,
    now = coreOf(this.spool).clock(),
  ): Promise<MonitorEvent<Q>[]> {
    return this.count(await this.fsck(now), alertAfterCycles, now);
  }

  /** `cycle`'s bookkeeping over what one fsck found at `now`. */
  private count(problems: Problem<Q>[], alertAfterCycles: number, now: number): MonitorEvent<Q>[] {
    this.lastProblems = problems;
    const counts = new Map<string, { problem: Problem<Q>; cycles: number }>();
    for (const p of problems) {
      const key = problemKey(p);
      counts.set(key, { problem: p, cycles: (this.counts.get(key)?.cycles ?? 0) + 1 });
    }
    this.counts = counts;
    const nowPublished = new Map<string, Problem<Q>>();
    for (const [key, { problem, cycles }] of counts) {
      if (cycles > alertAfterCycles) nowPublished.set(key, problem);
    }
    const events: MonitorEvent<Q>[] = [];
    for (const [key, problem] of this.published) {
      if (!nowPublished.has(key)) events.push({ kind: "end", at: now, problem });
    }
    for (const [key, problem] of nowPublished) {
      if (!this.published.has(key)) events.push({ kind: "start", at: now, problem });
    }
    this.published = nowPublished;
    return events;
  }

  /**
   * Run `cycle` every `checkEveryMs` until the signal aborts; with `repair`, repair before
   * each check (when the repair changed nothing, its fsck is the cycle's: one walk of the
   * spool per cycle, not two). Errors of a cycle go to `onError` and the daemon goes on.
   */
  async daemon(options: {
    onEvent: (e: MonitorEvent<Q>) => void | Promise<void>;
    checkEveryMs?: number;
    alertAfterCycles?: number;
    repair?: boolean;
    onRepair?: (a: RepairAction<Q>) => void;
    /** Every cycle's findings (for metrics), alerted or not. */
    onProblems?: (problems: readonly Problem<Q>[]) => void;
    onError?: (err: unknown) => void;
    signal?: AbortSignal;
  }): Promise<void> {
    const every = options.checkEveryMs ?? DEFAULT_CHECK_EVERY_MS;
    const after = options.alertAfterCycles ?? DEFAULT_ALERT_AFTER_CYCLES;
    const signal = options.signal;
    while (!signal?.aborted) {
      try {
        let events: MonitorEvent<Q>[] | undefined;
        if (options.repair) {
          const now = coreOf(this.spool).clock();
          const { report, found } = await this.repairFound(now);
          for (const a of report.repaired) options.onRepair?.(a);
          if (report.repaired.length === 0) events = this.count(found, after, now);
        }
        events ??= await this.cycle(after);
        for (const e of events) await options.onEvent(e);
        options.onProblems?.(this.lastProblems);
      } catch (err) {
        options.onError?.(err);
      }
      await sleep(every, signal);
    }
  }
}
