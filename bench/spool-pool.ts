/**
 * `npm run bench:spool-pool`: the batch writer's file pool (src/spool/index.ts, "The file
 * pool") against the same spool without it (`filePool: false`), in this process, in the
 * same run. One job at a time, as one client does: `enqueueBatch` of one entry (a fresh
 * name reserved by the writer, 1 KiB of data), a checkout of it, its removal, then
 * `--gap-ms` of idle time (a client's round trips; the pool is made then). Each side gets a
 * fresh spool whose directories' block group first gets `--pollute` recently freed inodes
 * (files made and deleted in its `.data`, then 1.5 s for their deletion time to be in the
 * past), as on a machine that deletes files all day; `--pollute 0` measures a clean one.
 * Sides alternate (pool, none, none, pool, ...) for `--rounds` pairs. Prints each run,
 * the medians, and the ratio none/pool of the enqueue's p50; writes
 * bench/results/spool-pool.json (or `--out FILE`, `-` for none).
 *
 * Flags: --jobs N (1500), --pollute N (8000), --gap-ms N (2), --rounds N (2),
 * --dir DIR (a temporary directory), --out FILE.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bytesCodec, Spool } from "../src/spool/index.js";
import { distribution, sig3 } from "./lib/grpc-stats.js";
import { sourceVersion } from "./lib/source-version.js";
import {
  describeMachine,
  fileCreateLine,
  fileCreateUsIn,
  measureFileCreate,
} from "./lib/spool-machine.js";
import { median } from "./lib/spool-stats.js";

const { values: args } = parseArgs({
  options: {
    jobs: { type: "string", default: "1500" },
    pollute: { type: "string", default: "8000" },
    "gap-ms": { type: "string", default: "2" },
    rounds: { type: "string", default: "2" },
    dir: { type: "string" },
    out: { type: "string", default: "bench/results/spool-pool.json" },
  },
});
const JOBS = Number(args.jobs);
const POLLUTE = Number(args.pollute);
const GAP_MS = Number(args["gap-ms"]);
const ROUNDS = Number(args.rounds);
const data = Buffer.alloc(1024, 0x61);
const metadata = Buffer.from('{"bench":"spool-pool"}');

type Side = "pool" | "none";

interface Run {
  side: Side;
  round: number;
  /** Microseconds of kernel CPU per file made in the spool's `.data` before the jobs. */
  dataFileCreateUs: number;
  enqueueMs: { p50: number; p99: number; mean: number };
  jobMs: { p50: number; mean: number };
  cpuMsPerJob: number;
}

/** Make and delete `n` files in `dir`: their inodes are then recently freed. */
async function pollute(dir: string, n: number): Promise<void> {
  const fs = await import("node:fs");
  for (let i = 0; i < n; i++) fs.closeSync(fs.openSync(join(dir, `p${i}`), "wx"));
  for (let i = 0; i < n; i++) fs.unlinkSync(join(dir, `p${i}`));
  // ext4 skips an inode freed in an earlier second than now (its deletion time in the past).
  await new Promise((r) => setTimeout(r, 1500));
}

async function runSide(root: string, side: Side, round: number): Promise<Run> {
  const spool = await Spool.create(join(root, `${side}-${round}`), {
    metadata: bytesCodec,
    queues: ["q"],
    filePool: side === "pool",
  });
  try {
    await pollute(join(spool.dir, ".data"), POLLUTE);
    const createUs = fileCreateUsIn(join(spool.dir, ".data"), 200);
    const enqueues: number[] = [];
    const jobs: number[] = [];
    const c0 = process.cpuUsage();
    for (let i = 0; i < JOBS; i++) {
      const t0 = performance.now();
      const [name] = spool.newNames(1);
      const [r] = await spool.enqueueBatch([{ queue: "q", metadata, data, name, reserve: true }]);
      const t1 = performance.now();
      if (!r?.ok) throw r?.error ?? new Error("no result");
      const held = await spool.checkout(r.entry);
      if ((await held.remove()).kind !== "done") throw new Error(`lost the lease of ${name}`);
      jobs.push(performance.now() - t0);
      enqueues.push(t1 - t0);
      if (GAP_MS > 0) await new Promise((res) => setTimeout(res, GAP_MS));
    }
    const cpu = process.cpuUsage(c0);
    const e = distribution(enqueues);
    const j = distribution(jobs);
    return {
      side,
      round,
      dataFileCreateUs: sig3(createUs),
      enqueueMs: { p50: sig3(e.p50), p99: sig3(e.p99), mean: sig3(e.mean) },
      jobMs: { p50: sig3(j.p50), mean: sig3(j.mean) },
      cpuMsPerJob: sig3((cpu.user + cpu.system) / 1000 / JOBS),
    };
  } finally {
    await spool.close();
  }
}

async function main() {
  const root = args.dir ?? (await mkdtemp(join(tmpdir(), "geospool-bench-spool-pool-")));
  const load = loadavg()[0] ?? 0;
  console.log(
    `load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(
        " ",
      )}; ${JOBS} jobs per run, ${POLLUTE} inodes freed first, ${GAP_MS} ms between jobs, in ${root}`,
  );
  console.log(fileCreateLine(root, measureFileCreate(root)));
  const runs: Run[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const order: Side[] = round % 2 === 1 ? ["pool", "none"] : ["none", "pool"];
      for (const side of order) {
        const r = await runSide(root, side, round);
        runs.push(r);
        console.log(
          `round ${round} ${side.padEnd(4)}  file made in .data ${r.dataFileCreateUs} µs;` +
            ` enqueue p50 ${r.enqueueMs.p50} ms p99 ${r.enqueueMs.p99} ms;` +
            ` job p50 ${r.jobMs.p50} ms; CPU ${r.cpuMsPerJob} ms/job`,
        );
      }
    }
    const med = (side: Side, f: (r: Run) => number) =>
      sig3(median(runs.filter((r) => r.side === side).map(f)));
    const sideSummary = (side: Side) => ({
      enqueueP50Ms: med(side, (r) => r.enqueueMs.p50),
      enqueueP99Ms: med(side, (r) => r.enqueueMs.p99),
      jobP50Ms: med(side, (r) => r.jobMs.p50),
      cpuMsPerJob: med(side, (r) => r.cpuMsPerJob),
    });
    const summary = { pool: sideSummary("pool"), none: sideSummary("none") };
    const ratio = sig3(summary.none.enqueueP50Ms / summary.pool.enqueueP50Ms);
    console.log(
      `medians: enqueue p50 ${summary.pool.enqueueP50Ms} ms with the pool, ${summary.none.enqueueP50Ms} without: ` +
        `${ratio}x; CPU per job ${summary.pool.cpuMsPerJob} against ${summary.none.cpuMsPerJob} ms`,
    );
    if (args.out !== "-") {
      const result = {
        date: new Date().toISOString(),
        source: await sourceVersion(),
        machine: await describeMachine(root, load),
        settings: { jobs: JOBS, pollute: POLLUTE, gapMs: GAP_MS, rounds: ROUNDS, dataBytes: 1024 },
        runs,
        medians: summary,
        ratios: { enqueueP50WithoutOverWith: ratio },
        loadAfter: loadavg()[0],
      };
      await writeFile(args.out, `${JSON.stringify(result, null, 2)}\n`);
      console.log(`wrote ${args.out}`);
    }
  } finally {
    if (args.dir === undefined) await rm(root, { recursive: true, force: true, maxRetries: 10 });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
