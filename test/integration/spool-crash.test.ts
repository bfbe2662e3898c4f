import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { Monitor, type Problem, Spool } from "../../src/spool/index.js";
import { coreOf } from "../../src/spool/spool.js";
import { CHAOS_QUEUES } from "../helpers/spool-chaos.js";
import { JournalReader } from "../helpers/spool-journal.js";
import { makePayload, sha256 } from "../helpers/spool-payload.js";
import { killAll, useSpoolWorkerBundle, WorkerProcess } from "../helpers/spool-processes.js";
import { DataDigests, scanSpool } from "../helpers/spool-scan.js";
import type { SpoolRef } from "../helpers/spool-worker-config.js";
import { useTempDir } from "../helpers/tmp.js";
import { type WidgetQueue, widgetSpoolable } from "../helpers/widget.js";

/** SIGKILLs in all; each lands 0–30 ms after the child has opened the spool. */
const KILLS = 210;
const MAX_KILL_DELAY_MS = 30;
const SEEDED_ENTRIES = 40;

const worker = useSpoolWorkerBundle();
const dir = useTempDir();

/**
 * What the parent knows from the journal: every entry whose enqueue returned (name → data
 * digest), minus those whose remove completed.
 */
class Expectations {
  readonly live = new Map<string, string>();
  readonly removed = new Set<string>();
  /** A remove that started and did not report back: the entry may be whole or gone. */
  uncertainRemove: string | undefined;
  /** The operation the child was in when it was killed (its last `op` marker). */
  lastOp = "startup";

  apply(journal: JournalReader): void {
    this.lastOp = "startup";
    for (const line of journal.readNew()) {
      switch (line.op) {
        case "op":
          this.lastOp = line.what;
          break;
        case "enq":
          this.live.set(line.name, line.sha256);
          break;
        case "rm-begin":
          this.uncertainRemove = line.name;
          break;
        case "rm":
          this.live.delete(line.name);
          this.removed.add(line.name);
          this.uncertainRemove = undefined;
          break;
        case "rm-lost":
          this.uncertainRemove = undefined;
          break;
      }
    }
  }
}

/**
 * Check the spool against the journal, straight from the disk: every entry whose enqueue
 * returned and that was not removed is in exactly one queue or checkout with its exact
 * data; nothing removed is visible; nothing is visible without its data and registry
 * file. At most one entry may be unknown to the journal (an enqueue killed after its
 * rename, before it was journaled); it must be whole, and is adopted.
 */
async function checkAgainstJournal(
  spoolDir: string,
  digests: DataDigests,
  exp: Expectations,
  context: string,
): Promise<{ checkedOut: number }> {
  const snap = await scanSpool(spoolDir, CHAOS_QUEUES);
  const unknown: [string, string][] = [];
  let checkedOut = 0;
  const data = new Map(
    await Promise.all(
      [...snap.locations.keys()]
        .filter((name) => snap.data.has(name))
        .map(async (name) => [name, await digests.of(name)] as const),
    ),
  );
  for (const [name, locs] of snap.locations) {
    const where = locs.map((l) => (l.checkedOut ? `${l.queue}/.checkout` : l.queue)).join(", ");
    if (locs.length !== 1)
      throw new Error(`${context}: ${name} is in ${locs.length} places: ${where}`);
    if (locs[0]!.checkedOut) checkedOut++;
    if (exp.removed.has(name))
      throw new Error(`${context}: removed entry ${name} is visible in ${where}`);
    if (!snap.data.has(name))
      throw new Error(`${context}: ${name} is visible in ${where} without data`);
    if (!snap.registry.has(name)) {
      throw new Error(`${context}: ${name} is visible in ${where} without a registry file`);
    }
    const digest = data.get(name)!;
    const want = exp.live.get(name);
    if (want === undefined) {
      if (!digest.whole) throw new Error(`${context}: unjournaled ${name} has torn data`);
      unknown.push([name, digest.sha256]);
    } else if (digest.sha256 !== want) {
      throw new Error(
        `${context}: ${name} in ${where} does not have the data it was enqueued with`,
      );
    }
  }
  if (unknown.length > 1) {
    throw new Error(
      `${context}: ${unknown.length} entries nobody journaled: ${unknown.map((u) => u[0])}`,
    );
  }
  for (const name of exp.live.keys()) {
    if (!snap.locations.has(name) && name !== exp.uncertainRemove) {
      throw new Error(`${context}: entry ${name} (enqueue returned, never removed) is gone`);
    }
  }
  const pending = exp.uncertainRemove;
  if (pending !== undefined && !snap.locations.has(pending)) {
    exp.live.delete(pending);
    exp.removed.add(pending);
  }
  exp.uncertainRemove = undefined;
  for (const [name, sha] of unknown) exp.live.set(name, sha);
  return { checkedOut };
}

describe("crash safety", () => {
  it(`survives ${KILLS} SIGKILLs at random points of enqueue, checkout, save, remove and release`, async () => {
    const spoolable = widgetSpoolable({
      leases: { graceMs: 0, maxAttempts: 3, deadLetterQueue: "dead" },
    });
    const spool = await Spool.create(join(dir.path, "spool"), spoolable);
    // The parent's own view runs an hour ahead, so every lease a child took has ended.
    coreOf(spool).clock = () => Date.now() + 3_600_000;
    const monitor = new Monitor(spool, { maxTmpFileAgeMs: 0, maxCheckedOutAgeMs: 0 });
    const ref: SpoolRef = {
      dir: spool.dir,
      leases: { graceMs: 0, maxAttempts: 3, deadLetterQueue: "dead" },
    };
    const journalPath = join(dir.path, "journal.jsonl");
    const journal = new JournalReader(journalPath);
    const exp = new Expectations();
    const digests = new DataDigests(spool.dir);
    for (let i = 0; i < SEEDED_ENTRIES; i++) {
      const data = makePayload(i * 97);
      const queue: WidgetQueue = i % 2 === 0 ? "inbox" : "outbox";
      const e = await spool.enqueue(queue, { id: -i }, data);
      exp.live.set(e.name, sha256(data));
    }
    const killedIn = new Map<string, number>();
    let repairedActions = 0;
    let checkoutsSeen = 0;
    let removed = 0;
    let standby = new WorkerProcess(worker.path, "standby");
    /** Every child started; the finally kills any still running. */
    const workers: WorkerProcess[] = [standby];
    try {
      for (let life = 1; life <= KILLS; life++) {
        // This child booted (on standby) while the last one's aftermath was checked.
        const child = standby;
        standby = new WorkerProcess(worker.path, "standby");
        workers.push(standby);
        await child.start({
          role: "chaos",
          spool: ref,
          journal: journalPath,
          seed: life,
          enqueueShare: exp.live.size > 120 ? 0.1 : exp.live.size < 30 ? 0.45 : 0.3,
        });
        await child.waitFor("ready");
        // Mostly 0-30 ms, so kills land inside every step. Every tenth child lives until
        // it has completed a remove (then 0-30 ms more), so that however loaded the machine
        // is, children get as far as saves and removes.
        if (life % 10 === 0) await child.waitFor("removed");
        await sleep(Math.random() * MAX_KILL_DELAY_MS);
        child.kill("SIGKILL");
        const exit = await child.exited;
        if (exit.signal !== "SIGKILL") {
          throw new Error(`child ${life} ended on its own (code ${exit.code}): ${child.stderr}`);
        }
        journal.truncateTornTail();
        exp.apply(journal);
        killedIn.set(exp.lastOp, (killedIn.get(exp.lastOp) ?? 0) + 1);
        const before = exp.removed.size;
        const { checkedOut } = await checkAgainstJournal(
          spool.dir,
          digests,
          exp,
          `after kill ${life} (in ${exp.lastOp})`,
        );
        checkoutsSeen += checkedOut;
        removed += exp.removed.size - before;

        const report = await monitor.repair();
        repairedActions += report.repaired.length;
        const leftForAPerson = report.remaining.filter(
          (p: Problem<WidgetQueue>) => !(p.kind === "too_old" && p.dir.kind === "checkout"),
        );
        expect(leftForAPerson, `repair after kill ${life}`).toEqual([]);
        expect(await monitor.fsck(), `fsck after repair, kill ${life}`).toEqual([]);
        const after = await checkAgainstJournal(spool.dir, digests, exp, `after repair ${life}`);
        expect(after.checkedOut).toBe(0);
        const snap = await scanSpool(spool.dir, CHAOS_QUEUES);
        expect(snap.tmp).toEqual([]);
        expect([...snap.registry].sort()).toEqual([...exp.live.keys()].sort());
        expect([...snap.data].sort()).toEqual([...exp.live.keys()].sort());
      }
    } finally {
      await killAll(workers);
    }
    console.log(
      `spool-crash: ${KILLS} kills; killed during ${JSON.stringify(Object.fromEntries(killedIn))}; ` +
        `${exp.live.size} entries live, ${exp.removed.size} removed; ` +
        `${checkoutsSeen} checkouts left by killed children; ${repairedActions} repair actions`,
    );
    expect(removed).toBeGreaterThan(0);
  }, 240_000);
});
