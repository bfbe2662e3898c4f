import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { Expert, Spool } from "../../src/spool/index.js";
import {
  killAll,
  readResult,
  useSpoolWorkerBundle,
  WorkerProcess,
} from "../helpers/spool-processes.js";
import { leftovers, scanSpool } from "../helpers/spool-scan.js";
import type {
  DequeueResult,
  EnqueueResult,
  RaceResult,
  SpoolRef,
} from "../helpers/spool-worker-config.js";
import { useTempDir } from "../helpers/tmp.js";
import { WIDGET_QUEUES, widgetSpoolable } from "../helpers/widget.js";

const WRITERS = 4;
const READERS = 4;
const PER_WRITER = 150;
const RACERS = 4;
const RACED = 200;

const worker = useSpoolWorkerBundle();
const dir = useTempDir();

/** Poll until the spool holds no entry at all (or give up, leaving the assertion to the caller). */
async function waitUntilDrained(spoolDir: string, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    const s = await scanSpool(spoolDir, WIDGET_QUEUES);
    if (s.registry.size === 0 && s.locations.size === 0) return;
    await sleep(50);
  }
}

describe("several processes on one spool", () => {
  it("writers and readers in separate processes: every entry processed exactly once, with its data", async () => {
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
    const ref: SpoolRef = { dir: spool.dir };
    const workers: WorkerProcess[] = [];
    try {
      const readers = Array.from({ length: READERS }, (_, i) => {
        const w = new WorkerProcess(worker.path, {
          role: "dequeue",
          spool: ref,
          queue: "inbox",
          out: join(dir.path, `reader-${i}.json`),
        });
        workers.push(w);
        return w;
      });
      await Promise.all(readers.map((r) => r.waitFor("ready")));
      const writers = Array.from({ length: WRITERS }, (_, i) => {
        const w = new WorkerProcess(worker.path, {
          role: "enqueue",
          spool: ref,
          queue: "inbox",
          count: PER_WRITER,
          tag: `writer-${i}`,
          out: join(dir.path, `writer-${i}.json`),
        });
        workers.push(w);
        return w;
      });
      await Promise.all(writers.map((w) => w.succeeded()));
      await waitUntilDrained(spool.dir, 30_000);
      for (const r of readers) r.send({ kind: "stop" });
      await Promise.all(readers.map((r) => r.succeeded()));

      const enqueued = new Map<string, string>();
      for (let i = 0; i < WRITERS; i++) {
        const res = await readResult<EnqueueResult>(join(dir.path, `writer-${i}.json`));
        expect(res.enqueued).toHaveLength(PER_WRITER);
        for (const e of res.enqueued) {
          expect(enqueued.has(e.name)).toBe(false);
          enqueued.set(e.name, e.sha256);
        }
      }
      const processed = new Map<string, string>();
      for (let i = 0; i < READERS; i++) {
        const res = await readResult<DequeueResult>(join(dir.path, `reader-${i}.json`));
        for (const d of res.dequeued) {
          if (processed.has(d.name)) throw new Error(`entry ${d.name} was processed twice`);
          processed.set(d.name, d.sha256);
        }
      }
      expect(enqueued.size).toBe(WRITERS * PER_WRITER);
      expect([...processed.keys()].sort()).toEqual([...enqueued.keys()].sort());
      for (const [name, sha] of enqueued) expect(processed.get(name), name).toBe(sha);
      expect(leftovers(await scanSpool(spool.dir, WIDGET_QUEUES))).toEqual([]);
    } finally {
      await killAll(workers);
    }
  });

  it("processes racing checkoutIfPresent on the same entries: exactly one wins each", async () => {
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
    const names: string[] = [];
    for (let i = 0; i < RACED; i++)
      names.push((await spool.enqueue("inbox", { id: i }, `d${i}`)).name);
    const workers: WorkerProcess[] = [];
    try {
      for (let i = 0; i < RACERS; i++) {
        workers.push(
          new WorkerProcess(worker.path, {
            role: "race",
            spool: { dir: spool.dir },
            queue: "inbox",
            names,
            // Half go forwards and half backwards, so every entry is contended somewhere.
            reverse: i % 2 === 1,
            out: join(dir.path, `racer-${i}.json`),
          }),
        );
      }
      await Promise.all(workers.map((w) => w.waitFor("ready")));
      for (const w of workers) w.send({ kind: "go" });
      await Promise.all(workers.map((w) => w.succeeded()));

      const winners = new Map<string, number>();
      let lost = 0;
      for (let i = 0; i < RACERS; i++) {
        const res = await readResult<RaceResult>(join(dir.path, `racer-${i}.json`));
        lost += res.lost;
        for (const n of res.won) {
          if (winners.has(n)) throw new Error(`${n} won by racers ${winners.get(n)} and ${i}`);
          winners.set(n, i);
        }
      }
      expect([...winners.keys()].sort()).toEqual([...names].sort());
      expect(lost).toBe((RACERS - 1) * RACED);
      // Every entry is checked out once, none is left in the queue.
      const snap = await scanSpool(spool.dir, WIDGET_QUEUES);
      for (const n of names)
        expect(snap.locations.get(n)).toEqual([{ queue: "inbox", checkedOut: true }]);
      expect(snap.locations.size).toBe(RACED);
      // The winners' checkouts are whole: finish them and nothing is left.
      for (const co of await Expert.listCheckoutsUnsafe(spool, "inbox")) {
        expect((await co.dataFile().read()).toString()).toBe(`d${co.contents.id}`);
        expect(await co.remove()).toEqual({ kind: "done" });
      }
      expect(leftovers(await scanSpool(spool.dir, WIDGET_QUEUES))).toEqual([]);
    } finally {
      await killAll(workers);
    }
  });
});
