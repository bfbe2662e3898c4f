/**
 * The spool benchmark (`npm run bench:spool`). See docs/benchmarks.md.
 *
 * 1. enqueue → dequeue → remove throughput of the geospool spool against a raw baseline
 *    that makes the same system calls directly on node:fs/promises, at concurrency 1 and
 *    32, runs alternated (baseline, spool, baseline, spool, ...) and the median taken;
 * 2. peak RSS of listing, then dequeuing and removing (QueueReader.dequeue), 100,000
 *    entries, each in a fresh process; and what the QueueReader's doorbell (fs.watch, or
 *    its chokidar polling fallback) costs at that size.
 *
 * Every measurement runs in its own child process (bench/lib/spool-child.ts) started with
 * UV_THREADPOOL_SIZE set in its environment: libuv sizes its pool at the first pool
 * operation, which an ESM program performs while loading its modules, so this process
 * cannot set it for itself.
 *
 * Environment: SPOOL_BENCH_DIR (where spools are made; default the OS temp dir),
 * SPOOL_BENCH_ROUNDS (5), SPOOL_BENCH_SECONDS (per run, 2), SPOOL_BENCH_ENTRIES (100000),
 * SPOOL_BENCH_WATCH_SECONDS (6: the time budget of the polling-doorbell run),
 * SPOOL_BENCH_THREADPOOL (16), SPOOL_BENCH_OUT (the JSON file; default
 * bench/results/spool.json).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { CycleResult } from "./lib/spool-cycle.js";
import { describeMachine } from "./lib/spool-machine.js";
import { DATA_BYTES } from "./lib/spool-payload.js";
import { REPO_ROOT, runChild } from "./lib/spool-run-child.js";
import { median, round } from "./lib/spool-stats.js";

const envNumber = (key: string, dflt: number): number => {
  const v = process.env[key];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${key} must be a positive number, got ${v}`);
  return n;
};

const config = {
  threadpool: envNumber("SPOOL_BENCH_THREADPOOL", 16),
  rounds: envNumber("SPOOL_BENCH_ROUNDS", 5),
  warmupMs: 500,
  runMs: envNumber("SPOOL_BENCH_SECONDS", 2) * 1000,
  entries: envNumber("SPOOL_BENCH_ENTRIES", 100_000),
  watchBudgetMs: envNumber("SPOOL_BENCH_WATCH_SECONDS", 6) * 1000,
  concurrencies: [1, 32] as const,
  metadataBytes: "~110 (JSON) + 21 (header line)",
  dataBytes: DATA_BYTES,
};
const targets = { ratioAtLeast: 0.8, rss100kUnderMB: 150 };
const out = process.env.SPOOL_BENCH_OUT ?? join(REPO_ROOT, "bench/results/spool.json");

type Side = "baseline" | "spool" | "baseline-group";
type CycleRun = CycleResult & { side: Side; concurrency: number; threads?: number };
interface DequeueRun {
  how: string;
  count: number;
  complete: boolean;
  firstDequeueMs?: number;
  totalMs: number;
  perSecond: number;
  rssAtStartMB: number;
  maxRssMB: number;
}
interface ThroughputResult {
  /** Median entries/s. */
  spool: number;
  baseline: number;
  /** Median over the rounds of spool/baseline, each from two runs made one after the other. */
  ratio: number;
  /** Median spool / median baseline (more exposed to load drifting across the bench). */
  ratioOfMedians: number;
  baselineGroupCommit?: number;
  ratioVsGroupCommitBaseline?: number;
  /** Median CPU time (all threads) per entry, µs. */
  cpuUsPerEntry: Record<string, number>;
  /** entries/s of every run, in the order they ran. */
  runs: Record<string, number[]>;
}
interface ListRun {
  count: number;
  listMs: number;
  rssAtStartMB: number;
  maxRssMB: number;
}

const log = (s: string) => process.stdout.write(`${s}\n`);

async function throughput(root: string) {
  const runs: CycleRun[] = [];
  let k = 0;
  for (let i = 0; i < config.rounds; i++) {
    for (const c of config.concurrencies) {
      // The supplementary group-committing baseline only differs from the plain one when
      // operations overlap, so it runs at concurrency > 1 only.
      const sides: Side[] = c > 1 ? ["baseline", "spool", "baseline-group"] : ["baseline", "spool"];
      for (const side of sides) {
        const dir = join(root, `cycles-${k++}`);
        const r = await runChild<CycleRun>(
          ["cycles", side, dir, String(c), String(config.warmupMs), String(config.runMs)],
          config.threadpool,
        );
        await rm(dir, { recursive: true, force: true });
        runs.push(r);
        log(
          `  round ${i + 1} c=${String(c).padStart(2)} ${side.padEnd(14)} ${round1(r.perSecond)} entries/s` +
            `  (${r.entries} in ${round1(r.elapsedMs)} ms, ${round(r.cpuUsPerEntry)} µs CPU/entry,` +
            ` ${r.listings} listings, ${r.lostRaces} lost races)`,
        );
      }
    }
  }
  const pick = (side: Side, c: number) =>
    runs.filter((r) => r.side === side && r.concurrency === c);
  const byKey = (side: Side, c: number) => pick(side, c).map((r) => r.perSecond);
  const cpu = (side: Side, c: number) => round(median(pick(side, c).map((r) => r.cpuUsPerEntry)));
  // spool/baseline of the two runs of each round, which ran one after the other: less
  // affected than the medians by load that drifts over the whole bench.
  const paired = (a: number[], b: number[]) => a.map((x, j) => x / (b[j] ?? Number.NaN));
  const at = (c: number): ThroughputResult => {
    const spool = median(byKey("spool", c));
    const baseline = median(byKey("baseline", c));
    const r: ThroughputResult = {
      spool: round(spool),
      baseline: round(baseline),
      ratio: round(median(paired(byKey("spool", c), byKey("baseline", c))), 3),
      ratioOfMedians: round(spool / baseline, 3),
      cpuUsPerEntry: { spool: cpu("spool", c), baseline: cpu("baseline", c) },
      runs: {
        spool: byKey("spool", c).map((x) => round(x)),
        baseline: byKey("baseline", c).map((x) => round(x)),
      },
    };
    const groupRuns = byKey("baseline-group", c);
    if (groupRuns.length > 0) {
      const group = median(groupRuns);
      r.baselineGroupCommit = round(group);
      r.ratioVsGroupCommitBaseline = round(median(paired(byKey("spool", c), groupRuns)), 3);
      r.runs.baselineGroupCommit = groupRuns.map((x) => round(x));
      r.cpuUsPerEntry.baselineGroupCommit = cpu("baseline-group", c);
    }
    return r;
  };
  const results = { c1: at(1), c32: at(32) };
  return { results, threads: runs[0]?.threads };
}

const describeDequeue = (label: string, d: DequeueRun) =>
  `  ${label}: ${d.count} entries in ${round1(d.totalMs)} ms = ${round1(d.perSecond)}/s,` +
  ` first after ${round1(d.firstDequeueMs ?? Number.NaN)} ms, peak RSS ${d.maxRssMB} MB` +
  (d.complete ? "" : " (time budget reached)");

async function memory(root: string) {
  const dir = join(root, "rss");
  const n = config.entries;
  const fill = async (count: number) => {
    const r = await runChild<{ ms: number }>(["fill", dir, String(count)], config.threadpool);
    log(`  filled ${count} entries in ${round1(r.ms)} ms (fixture: no fsync)`);
  };
  const dequeue = (how: string, count: number, budgetMs: number) =>
    runChild<DequeueRun>(
      ["dequeue", dir, String(count), how, String(budgetMs), count === n ? "drain" : "part"],
      config.threadpool,
    );
  await fill(n);

  const list = await runChild<ListRun>(["list", dir], config.threadpool);
  log(
    `  spool.list of ${list.count}: ${round1(list.listMs)} ms, peak RSS ${list.maxRssMB} MB (at start ${list.rssAtStartMB} MB)`,
  );

  // What the doorbell costs: the same reader without one (dequeueAvailable) for the first
  // tenth of the entries, and with the chokidar polling fallback for a bounded time; the
  // spool is topped back up to n after each.
  const none = await dequeue("none", Math.ceil(n / 10), 10 * 60_000);
  log(describeDequeue("QueueReader.dequeueAvailable (no doorbell)", none));
  if (none.count > 0) await fill(none.count);
  const poll = await dequeue("poll", n, config.watchBudgetMs);
  log(describeDequeue('QueueReader.dequeue, watch: "poll" (chokidar)', poll));
  if (poll.count > 0) await fill(poll.count);

  // The measurement: every entry dequeued and removed with QueueReader.dequeue().
  const inotify = await dequeue("inotify", n, 30 * 60_000);
  log(describeDequeue("QueueReader.dequeue (fs.watch doorbell), all entries", inotify));
  await rm(dir, { recursive: true, force: true });
  return {
    entries: n,
    list: { ...list, listMs: round1(list.listMs) },
    dequeue: roundDequeue(inotify),
    dequeueNoDoorbell: roundDequeue(none),
    dequeuePollingDoorbell: roundDequeue(poll),
    /** Peak RSS of listing and of dequeuing + removing every entry with QueueReader.dequeue(). */
    peakMB: Math.max(list.maxRssMB, inotify.maxRssMB),
    /** Peak RSS with the chokidar polling doorbell, within its time budget. */
    peakPollingDoorbellMB: poll.maxRssMB,
  };
}

const round1 = (x: number) => round(x, 1);
const roundDequeue = (d: DequeueRun) => ({
  ...d,
  firstDequeueMs: d.firstDequeueMs === undefined ? undefined : round1(d.firstDequeueMs),
  totalMs: round1(d.totalMs),
  perSecond: round1(d.perSecond),
});

async function main(): Promise<void> {
  const load = loadavg()[0] ?? 0;
  const base = process.env.SPOOL_BENCH_DIR ?? tmpdir();
  await mkdir(base, { recursive: true });
  const root = await mkdtemp(join(base, "geospool-bench-"));
  const started = performance.now();
  try {
    const machine = await describeMachine(root, load);
    log(
      `geospool spool benchmark — ${machine.cpus} × ${machine.cpuModel}, ${machine.memGB} GB, ` +
        `${machine.node}, ${machine.platform}, fs ${machine.fsType ?? "?"}, load ${load.toFixed(2)}`,
    );
    log(
      `UV_THREADPOOL_SIZE=${config.threadpool} in every measuring process; metadata ~100 B JSON, data ${DATA_BYTES} B; ` +
        `${config.rounds} rounds of ${config.runMs / 1000} s per side (after ${config.warmupMs} ms warm-up), median`,
    );
    log(
      "baseline = the same syscalls on node:fs/promises, one directory fsync per operation (no group commit);",
    );
    log(
      "spool = Spool.enqueue / list / checkoutIfPresent / remove, which group-commits directory fsyncs;",
    );
    log("baseline-group = the baseline with the spool's group commit (supplementary, c=32 only).");
    log("\nthroughput (enqueue → checkout → remove, entries/s):");
    const tp = await throughput(root);
    log("\nmemory:");
    const rss = await memory(root);
    const results = { ...tp.results, rss100k: rss };
    const report = {
      date: new Date().toISOString(),
      machine,
      config: { ...config, threadsSeenInChild: tp.threads },
      results,
      targets,
      met: {
        c1: results.c1.ratio >= targets.ratioAtLeast,
        c32: results.c32.ratio >= targets.ratioAtLeast,
        rss100k: rss.peakMB < targets.rss100kUnderMB,
        rss100kPollingDoorbell: rss.peakPollingDoorbellMB < targets.rss100kUnderMB,
      },
      seconds: round((performance.now() - started) / 1000),
    };
    log("\nsummary:");
    for (const c of config.concurrencies) {
      const r = c === 1 ? results.c1 : results.c32;
      let line =
        `  c=${String(c).padStart(2)}: spool ${r.spool}/s, baseline ${r.baseline}/s, ratio ${r.ratio}` +
        ` (median of per-round ratios; target ≥ ${targets.ratioAtLeast}; ratio of medians ${r.ratioOfMedians})`;
      if (r.baselineGroupCommit !== undefined) {
        line += `; vs group-committing baseline ${r.baselineGroupCommit}/s: ${r.ratioVsGroupCommitBaseline}`;
      }
      log(line);
    }
    log(
      `  ${rss.entries} entries: peak RSS list ${rss.list.maxRssMB} MB, dequeue+remove ${rss.dequeue.maxRssMB} MB (target < ${targets.rss100kUnderMB} MB)`,
    );
    log(
      `  doorbell: dequeue() ${rss.dequeue.perSecond}/s (fs.watch), ${rss.dequeuePollingDoorbell.perSecond}/s` +
        ` (chokidar polling; peak RSS ${rss.peakPollingDoorbellMB} MB); dequeueAvailable() ${rss.dequeueNoDoorbell.perSecond}/s`,
    );
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    log(`\nwrote ${out} (${report.seconds} s)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
