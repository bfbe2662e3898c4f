import { mapLimit } from "../common/map-limit.js";
import { walkDir } from "./dir-walk.js";
import { statIfExists } from "./fs-ops.js";
import { CHECKOUT, entryNameOfTmpFile, TMP_TAG_SEPARATOR } from "./layout.js";
import type { FileWithMtime, Limits, Problem, SpoolDir } from "./monitor.js";
import { coreOf, type Spool } from "./spool.js";

/** Files stat'ed at once (the thread pool does a few at a time). */
const STATS_AT_ONCE = 32;
/** `found`'s bit for "the name has a data file"; the bits above hold its first holder + 1. */
const HAS_DATA = 1;

/**
 * `Monitor.fsck`: one pass over the spool, each directory walked a slice at a time
 * (dir-walk.ts). What it holds at once, however large the spool: one map from each registry
 * name to a small integer (its data file seen, and the first queue or checkout holding it),
 * the names held more than once, and the problems. Listings say which names exist; files
 * are stat'ed only where a time matters (tmp files, checkouts, queues with an age limit)
 * or to describe a problem. A name the walk found missing from the registry or the data
 * directory is looked for again before it is reported: the walk is not a snapshot, and an
 * entry enqueued after the registry was walked has its registry file and data, only later.
 * An entry that moves during the walk can still show as orphaned or duplicated for one
 * check, as with any listing of several directories; the daemon alerts only on problems
 * that persist.
 * @internal
 */
export async function fsckSpool<M, Q extends string>(
  spool: Spool<M, Q>,
  limits: Limits<Q>,
  now: number,
  still?: readonly Problem<Q>[],
): Promise<Problem<Q>[]> {
  return fsckPass(spool, limits, now, still);
}

/**
 * Whether `p` follows from the directories' listings alone (which names are where), not
 * from the time or from file times: with the same listings, the same problem.
 * @internal
 */
export function isStructural<Q extends string>(p: Problem<Q>): boolean {
  if (p.kind === "too_old" || p.kind === "lease_expired") return false;
  return !("dir" in p) || (p.dir.kind !== "tmp" && p.dir.kind !== "checkout");
}

/** Every directory whose listing fsck reads: while none changes, a still pass will do. @internal */
export function fsckDirs<M, Q extends string>(spool: Spool<M, Q>): string[] {
  const core = coreOf(spool);
  const l = core.layout;
  return [
    l.registry,
    l.data,
    l.tmp,
    ...core.queues.flatMap((q) => [l.queue(core.dirname(q)), l.checkout(core.dirname(q))]),
  ];
}

/**
 * One pass. With `still` (the problems a whole pass found, on a spool none of whose
 * directories changed since: `fsckDirs`, their stamps trusted as DirChangeGate trusts them),
 * the structural ones (`isStructural`) stand, as the listings they follow from do, and only
 * what time can change is looked at again: the tmp files, the checkouts (a lease extension
 * moves a checkout file's times and not its directory's) and the queues with an age limit.
 * The registry, the data directory and the other queues, the largest by far, are not
 * listed; with `found` empty, the checks below read the registry and data files they need.
 */
async function fsckPass<M, Q extends string>(
  spool: Spool<M, Q>,
  limits: Limits<Q>,
  now: number,
  still: readonly Problem<Q>[] | undefined,
): Promise<Problem<Q>[]> {
  const core = coreOf(spool);
  const l = core.layout;
  const stat = (path: string) => core.throttle.run(() => statIfExists(path));
  const exists = async (path: string) => (await stat(path)) !== undefined;
  /** Per registry name: HAS_DATA, and (first holder's index + 1) << 1. */
  const found = new Map<string, number>();
  const dirs: SpoolDir<Q>[] = core.queues.flatMap((queue): SpoolDir<Q>[] => [
    { kind: "queue", queue },
    { kind: "checkout", queue },
  ]);
  /** Names in more than one queue or checkout, with every place (in walk order). */
  const duplicated = new Map<string, SpoolDir<Q>[]>();
  const hold = (name: string, holder: number) => {
    const v = found.get(name);
    if (v === undefined) return;
    const first = v >> 1;
    if (first === 0) {
      found.set(name, v | ((holder + 1) << 1));
      return;
    }
    const places = duplicated.get(name) ?? [dirs[first - 1] as SpoolDir<Q>];
    places.push(dirs[holder] as SpoolDir<Q>);
    duplicated.set(name, places);
  };
  const registered = (name: string) => found.has(name) || exists(l.registryFile(name));
  const withData = (name: string) =>
    ((found.get(name) ?? 0) & HAS_DATA) !== 0 || exists(l.dataFile(name));
  const file = (filename: string, mtimeMs: number): FileWithMtime => ({ filename, mtimeMs });

  if (still === undefined) {
    await walkDir(core.throttle, l.registry, (names) => {
      for (const n of names) found.set(n, 0);
    });
  }

  // Problems that follow from the registry, data and queue listings: found now, or kept.
  const fromListings: Problem<Q>[] = still?.filter(isStructural) ?? [];
  if (still === undefined) {
    await walkDir(core.throttle, l.data, async (names) => {
      const unknown: string[] = [];
      for (const n of names) {
        const v = found.get(n);
        if (v === undefined) unknown.push(n);
        else found.set(n, v | HAS_DATA);
      }
      await mapLimit(unknown, STATS_AT_ONCE, async (n) => {
        if (await exists(l.registryFile(n))) return;
        const st = await stat(l.dataFile(n));
        if (st)
          fromListings.push({ kind: "orphaned", file: file(n, st.mtimeMs), dir: { kind: "data" } });
      });
    });
  }

  const problems: Problem<Q>[] = [];
  await walkDir(core.throttle, l.tmp, (names) =>
    mapLimit(names, STATS_AT_ONCE, async (n) => {
      const st = await stat(`${l.tmp}/${n}`);
      if (!st) return;
      if (now - st.mtimeMs > limits.maxTmpFileAgeMs) {
        problems.push({ kind: "too_old", file: file(n, st.mtimeMs), dir: { kind: "tmp" } });
      }
      if (!(await registered(entryNameOfTmpFile(n)))) {
        problems.push({ kind: "orphaned", file: file(n, st.mtimeMs), dir: { kind: "tmp" } });
      }
    }),
  );
  problems.push(...fromListings);

  /** Orphaned and missing_data for a queue or checkout file (`mtimeMs` read if needed). */
  const checkEntry = async (
    name: string,
    dir: SpoolDir<Q>,
    mtimeMs: () => Promise<number | undefined>,
  ) => {
    const orphaned = !(await registered(name));
    const noData = !(await withData(name));
    if (!orphaned && !noData) return;
    const m = await mtimeMs();
    if (m === undefined) return;
    if (orphaned) problems.push({ kind: "orphaned", file: file(name, m), dir });
    if (noData) problems.push({ kind: "missing_data", file: file(name, m), dir });
  };

  for (const [qi, queue] of core.queues.entries()) {
    const dirname = core.dirname(queue);
    const qpath = l.queue(dirname);
    const qdir = dirs[2 * qi] as SpoolDir<Q>;
    const cdir = dirs[2 * qi + 1] as SpoolDir<Q>;
    const maxAge = limits.maxQueueAgesMs[queue];
    // A still pass lists a queue only for its age limit.
    if (still === undefined || maxAge !== undefined)
      await walkDir(core.throttle, qpath, (names) => {
        // Most names need no more than the listing: a file is read only for an age limit or
        // a name the registry or data walk did not show.
        const toLook: string[] = [];
        for (const n of names) {
          if (n === CHECKOUT) continue;
          hold(n, 2 * qi);
          if (maxAge !== undefined || ((found.get(n) ?? 0) & HAS_DATA) === 0) toLook.push(n);
        }
        return mapLimit(toLook, STATS_AT_ONCE, async (n) => {
          let mtime: Promise<number | undefined> | undefined;
          const mtimeMs = () => {
            mtime ??= stat(`${qpath}/${n}`).then((st) => st?.mtimeMs);
            return mtime;
          };
          if (maxAge !== undefined) {
            const m = await mtimeMs();
            if (m !== undefined && now - m > maxAge) {
              problems.push({ kind: "too_old", file: file(n, m), dir: qdir });
            }
          }
          // A queue file's orphan and missing data follow from the listings (kept when still).
          if (still === undefined) await checkEntry(n, qdir, mtimeMs);
        });
      });
    const cpath = l.checkout(dirname);
    await walkDir(core.throttle, cpath, (names) =>
      mapLimit(names, STATS_AT_ONCE, async (n) => {
        const st = await stat(`${cpath}/${n}`);
        if (!st) return;
        const f = file(n, st.mtimeMs);
        if (n.includes(TMP_TAG_SEPARATOR)) {
          // `<name>~<tag>`: a finish (save, remove, release, expiry) under way; it still
          // holds the entry. Left behind by a process that died, repair puts it back.
          const base = entryNameOfTmpFile(n);
          hold(base, 2 * qi + 1);
          if (
            now - st.mtimeMs > limits.maxTmpFileAgeMs &&
            now - st.ctimeMs > limits.maxTmpFileAgeMs
          ) {
            problems.push({ kind: "too_old", file: f, dir: cdir });
          }
          await checkEntry(base, cdir, async () => st.mtimeMs);
          return;
        }
        hold(n, 2 * qi + 1);
        // The registry file's mtime is the checkout time; the checkout file's mtime is the
        // deadline (in the future), but its ctime is when the checkout (or a lease
        // extension) set it: without a registry file, the age runs from that.
        const reg = await stat(l.registryFile(n));
        const since = reg?.mtimeMs ?? Math.min(st.ctimeMs, st.mtimeMs);
        if (now - since > limits.maxCheckedOutAgeMs) {
          problems.push({ kind: "too_old", file: file(n, since), dir: cdir });
        }
        if (core.isExpired(st.mtimeMs, st.ctimeMs, now)) {
          problems.push({ kind: "lease_expired", file: f, dir: cdir });
        }
        await checkEntry(n, cdir, async () => st.mtimeMs);
      }),
    );
  }

  // Registry files in no queue or in several: their times are read now, for the few.
  const unheld: string[] = [];
  for (const [name, v] of found) if (v >> 1 === 0 || duplicated.has(name)) unheld.push(name);
  found.clear();
  const registryProblems = new Map<string, Problem<Q>>();
  await mapLimit(unheld, STATS_AT_ONCE, async (name) => {
    const st = await stat(l.registryFile(name));
    if (!st) return;
    const f = file(name, st.mtimeMs);
    const places = duplicated.get(name);
    registryProblems.set(
      name,
      places === undefined
        ? { kind: "orphaned", file: f, dir: { kind: "registry" } }
        : { kind: "duplicated", file: f, dirs: places },
    );
  });
  // In the registry's listing order, as the names were found.
  for (const name of unheld) {
    const p = registryProblems.get(name);
    if (p) problems.push(p);
  }
  return problems;
}
