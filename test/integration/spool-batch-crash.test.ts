import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { Monitor, type Problem, Spool } from "../../src/spool/index.js";
import { CHAOS_QUEUES } from "../helpers/spool-chaos.js";
import { JournalReader } from "../helpers/spool-journal.js";
import { payloadIsWhole, sha256 } from "../helpers/spool-payload.js";
import { killAll, useSpoolWorkerBundle, WorkerProcess } from "../helpers/spool-processes.js";
import { readDataFile, scanSpool } from "../helpers/spool-scan.js";
import { useTempDir } from "../helpers/tmp.js";
import { type WidgetQueue, widgetSpoolable } from "../helpers/widget.js";

/** Children killed, each during one of its batches. */
const KILLS = 5;
/** Two rounds of the batch writer (512 entries each) per batch. */
const BATCH_ENTRIES = 600;
/** The kill lands this long (at random) after the child's second batch started. */
const MAX_KILL_DELAY_MS = 3000;

const worker = useSpoolWorkerBundle();
const dir = useTempDir();

describe("crash safety of enqueueBatch", () => {
  it(`keeps every acknowledged entry and leaves the rest whole or absent across ${KILLS} SIGKILLs in batches of ${BATCH_ENTRIES}`, async () => {
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
    const monitor = new Monitor(spool, { maxTmpFileAgeMs: 0 });
    const journalPath = join(dir.path, "journal.jsonl");
    const journal = new JournalReader(journalPath);
    /** Entries acknowledged to the child (journaled), and visible ones adopted: name → digest. */
    const live = new Map<string, string>();
    /** Entries whose data was read and matched already (data files never change). */
    const verified = new Set<string>();
    let killedWithRemnants = 0;
    let adopted = 0;
    let remnantFiles = 0;
    const workers: WorkerProcess[] = [];
    try {
      for (let life = 1; life <= KILLS; life++) {
        const child = new WorkerProcess(worker.path, {
          role: "batch",
          spool: { dir: spool.dir },
          journal: journalPath,
          seed: life,
          batchEntries: BATCH_ENTRIES,
        });
        workers.push(child);
        await child.waitFor("ready");
        await sleep(Math.random() * MAX_KILL_DELAY_MS);
        child.kill("SIGKILL");
        const exit = await child.exited;
        workers.pop();
        if (exit.signal !== "SIGKILL") {
          throw new Error(`child ${life} ended on its own (code ${exit.code}): ${child.stderr}`);
        }
        journal.truncateTornTail();
        for (const line of journal.readNew()) {
          if (line.op === "enq") live.set(line.name, line.sha256);
        }
        const context = `after kill ${life}`;
        const snap = await scanSpool(spool.dir, CHAOS_QUEUES);
        // Every visible entry is whole: in one place, with its registry file and its data.
        for (const [name, locs] of snap.locations) {
          expect(locs, `${context}: ${name}`).toHaveLength(1);
          expect(snap.registry.has(name), `${context}: ${name} registry`).toBe(true);
          expect(snap.data.has(name), `${context}: ${name} data`).toBe(true);
          if (verified.has(name)) continue;
          verified.add(name);
          const bytes = await readDataFile(spool.dir, name);
          const want = live.get(name);
          if (want === undefined) {
            // Renamed into its queue before the kill, never acknowledged: whole, so adopted.
            expect(payloadIsWhole(bytes), `${context}: unacknowledged ${name} is torn`).toBe(true);
            live.set(name, sha256(bytes));
            adopted++;
          } else {
            expect(sha256(bytes), `${context}: ${name} data`).toBe(want);
          }
        }
        // Every acknowledged entry is there.
        const missing = [...live.keys()].filter((n) => !snap.locations.has(n));
        expect(missing, `${context}: acknowledged entries gone`).toEqual([]);
        // What fsck finds before repair is only the remnants of entries never made visible.
        const found = await monitor.fsck();
        const unexpected = found.filter(
          (p: Problem<WidgetQueue>) =>
            !(p.kind === "orphaned" || p.kind === "too_old") ||
            !["tmp", "data", "registry"].includes(p.dir.kind),
        );
        expect(unexpected, `${context}: fsck`).toEqual([]);
        if (found.length > 0) killedWithRemnants++;
        remnantFiles += found.length;
        const report = await monitor.repair();
        expect(report.remaining, `${context}: repair`).toEqual([]);
        expect(await monitor.fsck(), `${context}: fsck after repair`).toEqual([]);
        const after = await scanSpool(spool.dir, CHAOS_QUEUES);
        expect(after.tmp).toEqual([]);
        expect([...after.registry].sort()).toEqual([...live.keys()].sort());
        expect([...after.data].sort()).toEqual([...live.keys()].sort());
        expect(after.locations.size).toBe(live.size);
      }
    } finally {
      await killAll(workers);
    }
    console.log(
      `spool-batch-crash: ${KILLS} kills, ${live.size} entries live (${adopted} visible but ` +
        `unacknowledged, adopted); ${killedWithRemnants} kills left remnants (${remnantFiles} fsck findings, all repaired)`,
    );
    // The kills landed inside batches: some left an unacknowledged batch's files behind.
    expect(killedWithRemnants).toBeGreaterThan(0);
  }, 300_000);
});
