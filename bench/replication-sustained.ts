/**
 * The sustained-rate section of bench/replication.ts: `rate` enqueues/s on A, waiting
 * Dequeue loops on C, probe rows interleaved; prints the latencies, the floor under the same
 * load, CPU, the per-step breakdown and the replicators' batch statistics, and returns them
 * for the JSON.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { GeospoolClient } from "../src/node/client/index.js";
import type { BenchCluster } from "./replication-cluster.js";
import { type CpuSnapshot, type CpuUsage, cpuSnapshot, cpuUsage } from "./replication-cpu.js";
import { runSustained } from "./replication-load.js";
import type { JournalWatcher, ProbeWriter } from "./replication-probe.js";
import {
  batchStats,
  breakdown,
  type Dist,
  dist,
  fmt,
  poolStats,
  probeDists,
  rounded,
  sig,
} from "./replication-report.js";
import type { NodeTrace } from "./replication-trace.js";

export const [A, B, C] = [0, 1, 2] as const;

/** Where an entry's files are in a spool directory (for a missing entry's diagnosis). */
async function locate(spoolDir: string, name: string): Promise<string> {
  const queues = (await readdir(spoolDir)).filter((d) => !d.startsWith("."));
  const places = [...queues.flatMap((q) => [q, `${q}/.checkout`]), ".registry", ".data"];
  const exists = (p: string) =>
    stat(join(spoolDir, p, name)).then(
      () => true,
      () => false,
    );
  const found = [];
  for (const p of places) if (await exists(p)) found.push(p);
  return found.length === 0 ? "absent" : found.join("+");
}

function relative(
  points: Record<string, number> | undefined,
  t0: number,
): Record<string, number | null> {
  return Object.fromEntries(Object.entries(points ?? {}).map(([k, v]) => [k, sig(v - t0)]));
}

export async function trace(cluster: BenchCluster, i: number): Promise<NodeTrace> {
  return JSON.parse(await cluster.node(i).ask("trace", "TRACE")) as NodeTrace;
}

export function printDist(label: string, d: Dist): void {
  console.log(
    `${label.padEnd(46)} p50 ${fmt(d.p50)} ms  p90 ${fmt(d.p90)} ms  p99 ${fmt(d.p99)} ms  ` +
      `mean ${fmt(d.mean)} ms  (n=${d.count}${d.missing ? `, ${d.missing} missing` : ""})`,
  );
}

export function printCpu(u: CpuUsage): void {
  const pct = (x: number | null) => (x === null ? "-" : `${Math.round(x / 10)}%`);
  console.log(
    `CPU (% of one core): nodes A/B/C ${u.nodes.map(pct).join("/")}, their PostgreSQL ` +
      `${u.postgres.map(pct).join("/")}, bench ${pct(u.bench)}; ours ${pct(u.ours)}, ` +
      `whole machine ${pct(u.machine)} of ${u.cores * 100}%`,
  );
}

/**
 * CPU per replicated entry: the CPU of the three node processes and their PostgreSQL
 * servers from the first enqueue (warm-up included) until every entry was dequeued on C and
 * every replicator was idle again (the checkout and remove rows back on A and B), divided
 * by the entries A acknowledged in that run. So a backlog still being worked off when the
 * window ends counts in full. The bench process is not counted, nor its journal watcher's
 * backend on C (replication-cpu.ts, `countAsBench`); the probe rows (20/s of
 * bare journal rows) and the idle cost of the cluster over that time (the floor section's
 * `idleCpuMsPerSecond`) are.
 */
function cpuPerEntry(cpu: CpuUsage, seconds: number, entries: number, idle: CpuUsage | undefined) {
  const sum = (xs: Array<number | null>) => xs.reduce<number>((s, x) => s + (x ?? 0), 0);
  const per = (msPerSecond: number) =>
    entries === 0 ? null : sig((msPerSecond * seconds) / entries);
  const all = sum(cpu.nodes) + sum(cpu.postgres);
  return {
    cpuMsPerEntry: per(all),
    /**
     * Less what the same processes used idle (floor section) over as long: the entries'
     * own cost, which a long drain on a starved machine otherwise buries.
     */
    aboveIdleMs: idle === undefined ? null : per(all - sum(idle.nodes) - sum(idle.postgres)),
    nodesMs: per(sum(cpu.nodes)),
    postgresMs: per(sum(cpu.postgres)),
    entries,
    seconds: sig(seconds),
  };
}

export interface SustainedFigures {
  latency: Dist;
  floor: Dist;
  json: Record<string, unknown>;
}

export async function sustainedSection(opts: {
  cluster: BenchCluster;
  producer: GeospoolClient;
  consumer: GeospoolClient;
  writer: ProbeWriter;
  watcher: JournalWatcher;
  rate: number;
  warmupMs: number;
  durationMs: number;
  consumers: number;
  probeRate: number;
  cores: number;
  /** CPU profiles of A and C over the window into this directory. */
  profileDir?: string;
  /** Resolves once every replicator is idle (after the run, for the CPU per entry). */
  settle: () => Promise<void>;
  /** The cluster's CPU when idle (the floor section), if measured. */
  idleCpu?: CpuUsage;
}): Promise<SustainedFigures> {
  const c = opts.cluster;
  const pids = await c.pids();
  for (const i of [A, B, C]) await trace(c, i);
  const runStart = await cpuSnapshot(pids);
  let cpuStart: Promise<CpuSnapshot> | undefined;
  let cpuEnd: Promise<CpuSnapshot> | undefined;
  let profiling: Promise<unknown> | undefined;
  const r = await runSustained({
    producer: opts.producer,
    consumer: opts.consumer,
    queue: "inbox",
    rate: opts.rate,
    warmupMs: opts.warmupMs,
    durationMs: opts.durationMs,
    consumers: opts.consumers,
    drainMs: 180_000,
    probe: { writer: opts.writer, watcher: opts.watcher, rate: opts.probeRate },
    atWindowStart: () => {
      cpuStart = cpuSnapshot(pids);
      if (opts.profileDir) {
        profiling = Promise.all([A, C].map((i) => c.node(i).ask("profile-start", "PROFILING")));
      }
    },
    atWindowEnd: () => {
      cpuEnd = cpuSnapshot(pids);
      const dir = opts.profileDir;
      if (dir) {
        profiling = (profiling ?? Promise.resolve()).then(() =>
          Promise.all(
            [A, C].map((i) =>
              c.node(i).ask(`profile-stop ${dir}/${c.ids[i]}-${opts.rate}.cpuprofile`, "PROFILED"),
            ),
          ),
        );
      }
    },
  });
  await profiling;
  await opts.settle();
  const runCpu = cpuUsage(runStart, await cpuSnapshot(pids), opts.cores);
  const cpu = cpuUsage(
    await (cpuStart as Promise<CpuSnapshot>),
    await (cpuEnd as Promise<CpuSnapshot>),
    opts.cores,
  );
  const [ta, tb, tc] = [await trace(c, A), await trace(c, B), await trace(c, C)];
  const measured = r.entries.filter((e) => e.measured);
  const lat = dist(measured.map((e) => (e.deq === undefined ? undefined : e.deq - e.t0)));
  const latAck = dist(
    measured.map((e) => (e.deq === undefined || e.ack === undefined ? undefined : e.deq - e.ack)),
  );
  const enq = dist(measured.map((e) => (e.ack === undefined ? undefined : e.ack - e.t0)));
  const pd = probeDists(r.probes, tc);
  const offered = measured.length / (opts.durationMs / 1000);
  const errors = r.entries.filter((e) => e.error !== undefined).length;
  printDist("floor under load (insert A → visible on C)", pd.floor);
  printDist("  same probe rows → C's apply stream", pd.appliedStreamOnC);
  printDist("enqueue start on A → dequeued on C", lat);
  printDist("enqueue acknowledged → dequeued on C", latAck);
  printDist("enqueue call on A (client)", enq);
  console.log(
    `offered ${sig(offered)}/s; ${errors} enqueue errors; ${r.lateStarts} enqueues started ` +
      `>5 ms late; at most ${r.maxInFlight} enqueues in flight; ${r.consumeErrors} consumer errors`,
  );
  printCpu(cpu);
  const acked = r.entries.filter((e) => e.ack !== undefined).length;
  const perEntry = cpuPerEntry(runCpu, runCpu.seconds, acked, opts.idleCpu);
  console.log(
    `CPU per replicated entry: ${perEntry.cpuMsPerEntry} ms (node processes ${perEntry.nodesMs}, ` +
      `their PostgreSQL ${perEntry.postgresMs}; above the idle cluster's ${perEntry.aboveIdleMs}): ` +
      `${perEntry.entries} entries acknowledged, ${perEntry.seconds} s from the first enqueue ` +
      "until the cluster was idle again",
  );
  const missing = measured.filter((e) => e.deq === undefined);
  if (missing.length > 0) {
    console.log(
      `${missing.length} entries not dequeued on C ${sig(r.drainedMs / 1000)} s after the last ` +
        "enqueue returned; the first few:",
    );
    for (const e of missing.slice(0, 5)) {
      const name = e.name ?? "?";
      const where = await Promise.all([A, B, C].map((i) => locate(c.spoolDirs[i] as string, name)));
      console.log(
        `  ${name}: ${e.error ?? "acknowledged"}; on A/B/C: ${where.join(" / ")}; ` +
          `A trace ${JSON.stringify(relative(ta.entries[name], e.t0))}, C trace ` +
          `${JSON.stringify(relative(tc.entries[name], e.t0))}, row on C at ` +
          `${sig((opts.watcher.seen.get(name) ?? Number.NaN) - e.t0)} ms`,
      );
    }
  }
  const bd = breakdown(r.entries, ta, tc, opts.watcher.seen);
  console.log(`where the time goes (${bd.entries} entries of the window; ms):`);
  console.log(`${"step".padEnd(54)}    p50     p99    mean`);
  for (const s of bd.stepsMs) {
    console.log(`${s.step.padEnd(54)}${fmt(s.p50)} ${fmt(s.p99)} ${fmt(s.mean)}  n=${s.n}`);
  }
  console.log(`${"point (since the enqueue started)".padEnd(54)}    p50     p99`);
  for (const p of bd.sinceEnqueueStartMs) {
    console.log(`${p.point.padEnd(54)}${fmt(p.p50)} ${fmt(p.p99)}  n=${p.n}`);
  }
  const batches = {
    A: batchStats(ta.batches, r.windowStart, r.windowEnd),
    B: batchStats(tb.batches, r.windowStart, r.windowEnd),
    C: batchStats(tc.batches, r.windowStart, r.windowEnd),
  };
  const pools = {
    A: poolStats(ta.pool, r.windowStart, r.windowEnd),
    B: poolStats(tb.pool, r.windowStart, r.windowEnd),
    C: poolStats(tc.pool, r.windowStart, r.windowEnd),
  };
  for (const [k, p] of Object.entries(pools)) {
    console.log(
      `PostgreSQL pool of ${k} (the replicator's own, max 4): queries waiting for ` +
        `a connection in ${p.waitingFraction} of samples, mean ${p.meanWaiting}, max ` +
        `${p.maxWaiting}; ${p.meanInUse} connections in use on average`,
    );
  }
  for (const [k, b] of Object.entries(batches)) {
    console.log(
      `replicator ${k}: ${b.batches} batches of ${b.entriesPerBatch.mean} entries ` +
        `(max ${b.entriesPerBatch.max}), ${b.syncsPerEntry} syncs per entry; batch p50 ` +
        `${b.durationMs.p50} ms (sync ${b.syncMs.p50}, of which inspect ${b.inspectMs.p50}; commit ${b.commitMs.p50}), p99 ` +
        `${b.durationMs.p99} ms; loop busy ${b.busy} of the window`,
    );
  }
  return {
    latency: lat,
    floor: pd.floor,
    json: {
      rate: opts.rate,
      offeredPerSecond: sig(offered),
      windowSeconds: opts.durationMs / 1000,
      enqueueToDequeuedMs: rounded(lat),
      ackToDequeuedMs: rounded(latAck),
      enqueueCallMs: rounded(enq),
      floorUnderLoadMs: rounded(pd.floor),
      floorRowsToApplyStreamOnCMs: rounded(pd.appliedStreamOnC),
      floorCommitOnAMs: rounded(pd.commitOnA),
      ratios: {
        p50ToFloorP50: sig(lat.p50 / pd.floor.p50),
        p99ToFloorP99: sig(lat.p99 / pd.floor.p99),
      },
      enqueueErrors: errors,
      consumerErrors: r.consumeErrors,
      lateStarts: r.lateStarts,
      maxInFlight: r.maxInFlight,
      drainedSeconds: sig(r.drainedMs / 1000),
      notDequeued: missing.length,
      cpuMsPerSecond: cpu,
      cpuMsPerEntry: perEntry.cpuMsPerEntry,
      cpuPerEntry: perEntry,
      breakdown: bd,
      replicatorBatches: batches,
      nodePools: pools,
    },
  };
}
