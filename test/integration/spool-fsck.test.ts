import { copyFile, readdir, rename, rm, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeEach, describe, expect, it } from "vitest";
import {
  dirLabel,
  Expert,
  Monitor,
  type MonitorEvent,
  type Problem,
  type RepairAction,
  Spool,
} from "../../src/spool/index.js";
import { leftovers, scanSpool } from "../helpers/spool-scan.js";
import { useTempDir } from "../helpers/tmp.js";
import {
  WIDGET_QUEUES,
  type Widget,
  type WidgetQueue,
  widgetSpoolable,
} from "../helpers/widget.js";

type Q = WidgetQueue;
const HOUR = 3_600_000;
const LIMITS = {
  maxTmpFileAgeMs: 60_000,
  maxCheckedOutAgeMs: 60_000,
  maxQueueAgesMs: { outbox: 60_000 },
};

const dir = useTempDir();
let spool: Spool<Widget, Q>;
let monitor: Monitor<Widget, Q>;

beforeEach(async () => {
  spool = await Spool.create(
    join(dir.path, "spool"),
    widgetSpoolable({ leases: { graceMs: 0, maxAttempts: 3, deadLetterQueue: "dead" } }),
  );
  monitor = new Monitor(spool, LIMITS);
});

/** `kind where filename`, sorted: what a problem list says, without mtimes. */
function summary(problems: readonly Problem<Q>[]): string[] {
  return problems
    .map((p) => {
      const where = "dirs" in p ? p.dirs.map(dirLabel).join(",") : dirLabel(p.dir);
      return `${p.kind} ${where} ${p.file.filename}`;
    })
    .sort();
}

function repairedSummary(actions: readonly RepairAction<Q>[]): string[] {
  return actions.map((a) => `${summary([a.problem])[0]}: ${a.action}`).sort();
}

/** Set a file's mtime (and atime) to `ms` since the epoch. */
function age(path: string, ms: number): Promise<void> {
  return utimes(path, ms / 1000, ms / 1000);
}

const p = (...parts: string[]) => join(spool.dir, ...parts);

describe("fsck finds each kind of problem, and repair fixes what is safe", () => {
  it("a healthy spool has no problems", async () => {
    const a = await spool.enqueue("inbox", { id: 1 }, "a");
    await spool.enqueue("outbox", { id: 2 }, "b");
    await spool.checkout(a, { leaseMs: HOUR });
    expect(await monitor.fsck()).toEqual([]);
    expect(await monitor.repair()).toEqual({ repaired: [], remaining: [] });
  });

  it("too_old tmp file: deleted", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await writeFile(p(".tmp", e.name), "half-written metadata");
    expect(await monitor.fsck()).toEqual([]);
    await age(p(".tmp", e.name), Date.now() - HOUR);
    expect(summary(await monitor.fsck())).toEqual([`too_old .tmp ${e.name}`]);
    const r = await monitor.repair();
    expect(repairedSummary(r.repaired)).toEqual([`too_old .tmp ${e.name}: deleted stale tmp file`]);
    expect(r.remaining).toEqual([]);
    expect(await readdir(p(".tmp"))).toEqual([]);
    expect(await monitor.fsck()).toEqual([]);
    expect((await e.dataFile().read()).toString()).toBe("a");
  });

  it("orphaned tmp file: left while fresh (it may be in use), deleted once old", async () => {
    await writeFile(p(".tmp", "ghost~data"), "x");
    expect(summary(await monitor.fsck())).toEqual(["orphaned .tmp ghost~data"]);
    expect(summary((await monitor.repair()).remaining)).toEqual(["orphaned .tmp ghost~data"]);
    expect(await readdir(p(".tmp"))).toEqual(["ghost~data"]);
    await age(p(".tmp", "ghost~data"), Date.now() - HOUR);
    expect(summary(await monitor.fsck())).toEqual([
      "orphaned .tmp ghost~data",
      "too_old .tmp ghost~data",
    ]);
    const r = await monitor.repair();
    expect(r.remaining).toEqual([]);
    expect(r.repaired.map((a) => a.action)).toEqual([
      "deleted stale tmp file",
      "deleted stale tmp file",
    ]);
    expect(await readdir(p(".tmp"))).toEqual([]);
    expect(await monitor.fsck()).toEqual([]);
  });

  it("orphaned data file: left while fresh, deleted once old", async () => {
    await writeFile(p(".data", "ghost"), "lost data");
    expect(summary(await monitor.fsck())).toEqual(["orphaned .data ghost"]);
    expect(summary((await monitor.repair()).remaining)).toEqual(["orphaned .data ghost"]);
    await age(p(".data", "ghost"), Date.now() - HOUR);
    const r = await monitor.repair();
    expect(repairedSummary(r.repaired)).toEqual([
      "orphaned .data ghost: deleted orphaned data file",
    ]);
    expect(await readdir(p(".data"))).toEqual([]);
    expect(await monitor.fsck()).toEqual([]);
  });

  it("orphaned queue file (registry file lost): registry restored, entry usable", async () => {
    const e = await spool.enqueue("inbox", { id: 7 }, "payload");
    await unlink(p(".registry", e.name));
    // Its data file has no registry file either.
    expect(summary(await monitor.fsck())).toEqual([
      `orphaned .data ${e.name}`,
      `orphaned inbox ${e.name}`,
    ]);
    const r = await monitor.repair();
    expect(repairedSummary(r.repaired)).toEqual([
      `orphaned inbox ${e.name}: restored registry file`,
    ]);
    expect(await monitor.fsck()).toEqual([]);
    const co = await spool.checkout(e);
    expect((await co.dataFile().read()).toString()).toBe("payload");
    expect(await co.remove()).toEqual({ kind: "done" });
    expect(leftovers(await scanSpool(spool.dir, WIDGET_QUEUES))).toEqual([]);
  });

  // BUG (src/spool/monitor.ts, Monitor.repair): the entry's data file is reported as an
  // orphaned data file too, and when it is older than maxTmpFileAgeMs (any entry that has
  // waited ten minutes) repair deletes it *before* it looks at the queue file, then finds
  // no data and restores nothing: the entry is left without data. Flip to `it` once fixed.
  it("orphaned queue file whose data is old: registry restored and the data kept", async () => {
    const e = await spool.enqueue("inbox", { id: 7 }, "payload");
    await age(p(".data", e.name), Date.now() - HOUR);
    await unlink(p(".registry", e.name));
    await monitor.repair();
    expect(await readdir(p(".data"))).toEqual([e.name]);
    expect(await monitor.fsck()).toEqual([]);
  });

  // BUG (src/spool/monitor.ts, Monitor.repair / fsck): fsck lists the directories one after
  // another, so an entry that moves from a later directory to an earlier one during the scan
  // (here outbox/.checkout -> inbox, by a save) is seen in no queue and reported as an
  // orphaned registry file; repair then deletes its registry file and data if both are
  // older than maxTmpFileAgeMs (an entry enqueued and checked out over ten minutes ago),
  // using the mtime fsck read, without looking again. The entry is left in inbox without
  // data. Made deterministic here by finishing the save right after the monitor lists inbox.
  // Flip to `it` once repair re-checks before deleting.
  it("repair racing a save never deletes the data of a live entry", async () => {
    let hook: (() => Promise<void>) | undefined;
    const watched = await Spool.load(spool.dir, {
      ...widgetSpoolable(),
      throttle: {
        async run<T>(op: () => Promise<T>): Promise<T> {
          const result = await op();
          // The first listing of a queue directory (inbox, listed first) ends: move now.
          if (hook && Array.isArray(result) && result.includes(".checkout")) {
            const f = hook;
            hook = undefined;
            await f();
          }
          return result;
        },
      },
    });
    const e = await spool.enqueue("outbox", { id: 1 }, "precious");
    await age(p(".data", e.name), Date.now() - HOUR);
    const co = await spool.checkout(e, { leaseMs: 2 * HOUR });
    await age(p(".registry", e.name), Date.now() - HOUR);
    hook = async () => {
      expect(await co.save("inbox")).toEqual({ kind: "done" });
    };
    await new Monitor(watched, LIMITS).repair();
    expect(hook).toBeUndefined();
    expect(await readdir(p("inbox"))).toContain(e.name);
    expect(await readdir(p(".data"))).toEqual([e.name]);
    expect(await readdir(p(".registry"))).toEqual([e.name]);
  });

  it("repair looks again before deleting: an entry back in a queue during the look is kept, the abandoned around it deleted", async () => {
    const e = await spool.enqueue("outbox", { id: 1 }, "precious");
    // In motion: in no queue while repair's fsck lists the spool.
    const aside = join(dir.path, "aside");
    await rename(p("outbox", e.name), aside);
    const abandoned: string[] = [];
    for (let i = 0; i < 40; i++) {
      const name = await spool.reserveName();
      await writeFile(p(".data", name), "left by a crash");
      abandoned.push(name);
    }
    for (const name of [...abandoned, e.name]) {
      await age(p(".data", name), Date.now() - HOUR);
      await age(p(".registry", name), Date.now() - HOUR);
    }
    // fsck lists .registry, .tmp, .data, then each queue and its .checkout; 20 ms after
    // that, the entry lands in inbox (well inside the ~1 s repair looks for a moving entry).
    const fsckListings = 3 + 2 * WIDGET_QUEUES.length;
    let listings = 0;
    let moved: Promise<void> | undefined;
    const watched = await Spool.load(spool.dir, {
      ...widgetSpoolable(),
      throttle: {
        async run<T>(op: () => Promise<T>): Promise<T> {
          const result = await op();
          if (Array.isArray(result) && ++listings === fsckListings) {
            moved = sleep(20).then(() => rename(aside, p("inbox", e.name)));
          }
          return result;
        },
      },
    });
    const r = await new Monitor(watched, LIMITS).repair();
    await moved;
    expect(moved).toBeDefined();
    expect(summary(r.remaining)).toEqual([`orphaned .registry ${e.name}`]);
    expect(repairedSummary(r.repaired)).toEqual(
      abandoned
        .map((n) => `orphaned .registry ${n}: deleted abandoned registry file and its data`)
        .sort(),
    );
    expect(await readdir(p("inbox"))).toContain(e.name);
    expect(await readdir(p(".data"))).toEqual([e.name]);
    expect(await readdir(p(".registry"))).toEqual([e.name]);
    expect(await monitor.fsck()).toEqual([]);
  });

  it("orphaned checkout file: registry restored, the holder can still finish", async () => {
    const e = await spool.enqueue("inbox", { id: 8 }, "payload");
    const co = await spool.checkout(e, { leaseMs: HOUR });
    await unlink(p(".registry", e.name));
    expect(summary(await monitor.fsck())).toEqual([
      `orphaned .data ${e.name}`,
      `orphaned inbox/.checkout ${e.name}`,
    ]);
    const r = await monitor.repair();
    expect(repairedSummary(r.repaired)).toEqual([
      `orphaned inbox/.checkout ${e.name}: restored registry file`,
    ]);
    expect(await monitor.fsck()).toEqual([]);
    expect(await co.save("outbox")).toEqual({ kind: "done" });
    expect(await monitor.fsck()).toEqual([]);
  });

  it("orphaned queue file without data: not repaired (it gets no registry file back)", async () => {
    const e = await spool.enqueue("inbox", { id: 9 }, "payload");
    await unlink(p(".registry", e.name));
    await unlink(p(".data", e.name));
    expect(summary(await monitor.fsck())).toEqual([
      `missing_data inbox ${e.name}`,
      `orphaned inbox ${e.name}`,
    ]);
    const r = await monitor.repair();
    expect(r.repaired).toEqual([]);
    expect(summary(r.remaining)).toEqual([
      `missing_data inbox ${e.name}`,
      `orphaned inbox ${e.name}`,
    ]);
    expect(await readdir(p(".registry"))).toEqual([]);
  });

  it("orphaned registry file (an enqueue or remove that died): left while fresh, deleted with its data once old", async () => {
    const name = await spool.reserveName();
    await writeFile(p(".data", name), "written before the crash");
    expect(summary(await monitor.fsck())).toEqual([`orphaned .registry ${name}`]);
    expect(summary((await monitor.repair()).remaining)).toEqual([`orphaned .registry ${name}`]);
    await age(p(".registry", name), Date.now() - HOUR);
    // Its data is still fresh: an enqueue may still be writing it.
    expect(summary((await monitor.repair()).remaining)).toEqual([`orphaned .registry ${name}`]);
    await age(p(".data", name), Date.now() - HOUR);
    const r = await monitor.repair();
    expect(repairedSummary(r.repaired)).toEqual([
      `orphaned .registry ${name}: deleted abandoned registry file and its data`,
    ]);
    expect(leftovers(await scanSpool(spool.dir, WIDGET_QUEUES))).toEqual([]);
    expect(await monitor.fsck()).toEqual([]);
  });

  it("duplicated entry: reported with every place it is, left for a person", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await copyFile(p("inbox", e.name), p("outbox", e.name));
    expect(summary(await monitor.fsck())).toEqual([`duplicated inbox,outbox ${e.name}`]);
    const r = await monitor.repair();
    expect(r.repaired).toEqual([]);
    expect(summary(r.remaining)).toEqual([`duplicated inbox,outbox ${e.name}`]);
    expect((await readdir(p("inbox"))).sort()).toEqual([".checkout", e.name]);
    expect((await readdir(p("outbox"))).sort()).toEqual([".checkout", e.name]);
    // A copy in a checkout directory counts too.
    await copyFile(p("inbox", e.name), p("dead", ".checkout", e.name));
    expect(summary(await monitor.fsck())).toEqual([
      `duplicated inbox,outbox,dead/.checkout ${e.name}`,
    ]);
  });

  it("expired lease: returned to its queue with one more attempt", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await spool.checkout(e, { leaseMs: 50 });
    expect(await monitor.fsck()).toEqual([]);
    await sleep(120);
    expect(summary(await monitor.fsck())).toEqual([`lease_expired inbox/.checkout ${e.name}`]);
    const r = await monitor.repair();
    expect(repairedSummary(r.repaired)).toEqual([
      `lease_expired inbox/.checkout ${e.name}: returned expired lease to inbox (attempt 1)`,
    ]);
    expect(await e.direct.read()).toEqual({ metadata: { id: 1 }, attempts: 1 });
    expect(await monitor.fsck()).toEqual([]);
  });

  it("checkout held too long: reported from its checkout time, left for a person", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await spool.checkout(e, { leaseMs: 2 * HOUR });
    expect(await monitor.fsck()).toEqual([]);
    // The registry file's mtime is the checkout time.
    await age(p(".registry", e.name), Date.now() - HOUR);
    expect(summary(await monitor.fsck())).toEqual([`too_old inbox/.checkout ${e.name}`]);
    const r = await monitor.repair();
    expect(r.repaired).toEqual([]);
    expect(summary(r.remaining)).toEqual([`too_old inbox/.checkout ${e.name}`]);
    expect(await Expert.listCheckoutsUnsafe(spool, "inbox")).toHaveLength(1);
  });

  it("checkout held too long whose registry file is lost: reported from the checkout file's change time", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await spool.checkout(e, { leaseMs: 2 * HOUR });
    await unlink(p(".registry", e.name));
    const orphaned = [`orphaned .data ${e.name}`, `orphaned inbox/.checkout ${e.name}`];
    expect(summary(await monitor.fsck())).toEqual(orphaned);
    // An hour on, still well before the lease deadline (the checkout file's mtime), the
    // checkout is older than maxCheckedOutAgeMs: its age runs from the checkout itself.
    const later = Date.now() + HOUR;
    const problems = await monitor.fsck(later);
    expect(summary(problems)).toEqual([...orphaned, `too_old inbox/.checkout ${e.name}`].sort());
    const tooOld = problems.find((x) => x.kind === "too_old");
    expect(tooOld?.file.mtimeMs).toBeLessThanOrEqual(Date.now());
  });

  it("entry waiting too long in a queue with a limit: reported, left; other queues have no limit", async () => {
    const out = await spool.enqueue("outbox", { id: 1 }, "a");
    const inb = await spool.enqueue("inbox", { id: 2 }, "b");
    await age(p("outbox", out.name), Date.now() - HOUR);
    await age(p("inbox", inb.name), Date.now() - HOUR);
    expect(summary(await monitor.fsck())).toEqual([`too_old outbox ${out.name}`]);
    const r = await monitor.repair();
    expect(r.repaired).toEqual([]);
    expect(summary(r.remaining)).toEqual([`too_old outbox ${out.name}`]);
    expect((await spool.list("outbox")).map((x) => x.name)).toEqual([out.name]);
  });

  it("missing data, in a queue and in a checkout: reported, left for a person", async () => {
    const a = await spool.enqueue("inbox", { id: 1 }, "a");
    const b = await spool.enqueue("outbox", { id: 2 }, "b");
    await spool.checkout(b, { leaseMs: HOUR });
    await unlink(p(".data", a.name));
    await unlink(p(".data", b.name));
    expect(summary(await monitor.fsck())).toEqual(
      [`missing_data inbox ${a.name}`, `missing_data outbox/.checkout ${b.name}`].sort(),
    );
    const r = await monitor.repair();
    expect(r.repaired).toEqual([]);
    expect(r.remaining).toHaveLength(2);
    expect(await spool.list("inbox")).toHaveLength(1);
  });

  it("every kind at once: each reported, the safe ones repaired, the rest left", async () => {
    const tooOldTmp = await spool.enqueue("inbox", { id: 1 }, "a");
    await writeFile(p(".tmp", tooOldTmp.name), "x");
    await age(p(".tmp", tooOldTmp.name), Date.now() - HOUR);
    await writeFile(p(".data", "orphan-data"), "x");
    await age(p(".data", "orphan-data"), Date.now() - HOUR);
    const noRegistry = await spool.enqueue("inbox", { id: 2 }, "b");
    await unlink(p(".registry", noRegistry.name));
    const dup = await spool.enqueue("inbox", { id: 3 }, "c");
    await copyFile(p("inbox", dup.name), p("dead", dup.name));
    const expiring = await spool.enqueue("inbox", { id: 4 }, "d");
    await spool.checkout(expiring, { leaseMs: 50 });
    const noData = await spool.enqueue("outbox", { id: 5 }, "e");
    await unlink(p(".data", noData.name));
    await sleep(120);
    expect(summary(await monitor.fsck())).toEqual(
      [
        `too_old .tmp ${tooOldTmp.name}`,
        "orphaned .data orphan-data",
        `orphaned .data ${noRegistry.name}`,
        `orphaned inbox ${noRegistry.name}`,
        `duplicated inbox,dead ${dup.name}`,
        `lease_expired inbox/.checkout ${expiring.name}`,
        `missing_data outbox ${noData.name}`,
      ].sort(),
    );
    const r = await monitor.repair();
    expect(summary(r.repaired.map((a) => a.problem))).toEqual(
      [
        `too_old .tmp ${tooOldTmp.name}`,
        "orphaned .data orphan-data",
        `orphaned inbox ${noRegistry.name}`,
        `lease_expired inbox/.checkout ${expiring.name}`,
      ].sort(),
    );
    // The fresh data file of the entry that lost its registry file is "remaining" although
    // restoring the registry file fixed it: fsck afterwards shows only the unsafe ones.
    expect(summary(r.remaining)).toEqual(
      [
        `duplicated inbox,dead ${dup.name}`,
        `missing_data outbox ${noData.name}`,
        `orphaned .data ${noRegistry.name}`,
      ].sort(),
    );
    expect(summary(await monitor.fsck())).toEqual(
      [`duplicated inbox,dead ${dup.name}`, `missing_data outbox ${noData.name}`].sort(),
    );
  });
});

describe("the monitor daemon", () => {
  it("cycle: start only after a problem persisted more than alertAfterCycles cycles, end once it is gone", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await rm(p(".data", e.name));
    const kinds = (events: MonitorEvent<Q>[]) =>
      events.map((ev) => `${ev.kind} ${summary([ev.problem])[0]}`);
    expect(await monitor.cycle(2)).toEqual([]);
    expect(await monitor.cycle(2)).toEqual([]);
    expect(kinds(await monitor.cycle(2))).toEqual([`start missing_data inbox ${e.name}`]);
    expect(await monitor.cycle(2)).toEqual([]);
    await writeFile(p(".data", e.name), "a");
    expect(kinds(await monitor.cycle(2))).toEqual([`end missing_data inbox ${e.name}`]);
    expect(await monitor.cycle(2)).toEqual([]);
  });

  it("cycle: a problem that goes away before the threshold never starts, so never ends", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await rm(p(".data", e.name));
    expect(await monitor.cycle(2)).toEqual([]);
    expect(await monitor.cycle(2)).toEqual([]);
    await writeFile(p(".data", e.name), "a");
    expect(await monitor.cycle(2)).toEqual([]);
    expect(await monitor.cycle(2)).toEqual([]);
  });

  it("daemon: reports start and end, repairs when asked, and stops on its AbortSignal", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await writeFile(p(".tmp", "stale~x"), "x");
    await age(p(".tmp", "stale~x"), Date.now() - HOUR);
    await rm(p(".data", e.name));
    const events: MonitorEvent<Q>[] = [];
    const repairs: RepairAction<Q>[] = [];
    const errors: unknown[] = [];
    const stop = new AbortController();
    const waitFor = async (what: () => boolean) => {
      while (!what()) await sleep(10);
    };
    const running = monitor.daemon({
      checkEveryMs: 10,
      alertAfterCycles: 1,
      repair: true,
      onEvent: (ev) => {
        events.push(ev);
      },
      onRepair: (a) => repairs.push(a),
      onError: (err) => errors.push(err),
      signal: stop.signal,
    });
    try {
      await waitFor(() => events.some((ev) => ev.kind === "start"));
      await writeFile(p(".data", e.name), "a");
      await waitFor(() => events.some((ev) => ev.kind === "end"));
    } finally {
      stop.abort();
      await running;
    }
    expect(events.map((ev) => `${ev.kind} ${summary([ev.problem])[0]}`)).toEqual([
      `start missing_data inbox ${e.name}`,
      `end missing_data inbox ${e.name}`,
    ]);
    expect(repairedSummary(repairs)).toEqual([
      "orphaned .tmp stale~x: deleted stale tmp file",
      "too_old .tmp stale~x: deleted stale tmp file",
    ]);
    expect(errors).toEqual([]);
    // Stopped: no further cycle runs (a new problem is never reported).
    const count = events.length;
    await rm(p(".data", e.name));
    await sleep(60);
    expect(events).toHaveLength(count);
  });

  it("daemon: an already aborted signal returns at once without a cycle", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await rm(p(".data", e.name));
    const events: MonitorEvent<Q>[] = [];
    await monitor.daemon({
      alertAfterCycles: 0,
      onEvent: (ev) => {
        events.push(ev);
      },
      signal: AbortSignal.abort(),
    });
    expect(events).toEqual([]);
  });
});
