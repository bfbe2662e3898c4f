/**
 * CPU accounting over a window for bench/replication.ts: each node process, each node's
 * PostgreSQL server (postmaster, backends, walsenders, apply workers; without the bench's
 * own instruments, `countAsBench`), the bench process (with them), and the whole machine
 * (/proc/stat: everything, other people's tests included).
 */
import { readFile } from "node:fs/promises";
import { ownCpu, processCpuMs, serverCpuMs } from "./lib/grpc-cpu.js";

export interface CpuSnapshot {
  at: number;
  nodes: Array<number | undefined>;
  postgres: Array<number | undefined>;
  bench: number;
  /** Machine-wide jiffies (ms) busy and total, summed over all CPUs. */
  machineBusy: number;
  machineTotal: number;
}

export interface CpuUsage {
  /** CPU ms per wall-clock second (1000 = one core fully busy). */
  nodes: Array<number | null>;
  postgres: Array<number | null>;
  bench: number;
  /** Everything we started, per second. */
  ours: number;
  /** Machine-wide busy ms per second (all processes), and the number of cores. */
  machine: number;
  cores: number;
  /** The window's length. */
  seconds: number;
}

const TICK_MS = 10;

/**
 * PostgreSQL backends of the bench's own instruments (the journal watcher polling C's
 * journal every millisecond): their CPU is the bench's, not the cluster's, so it is taken
 * out of their server's figure and counted with the bench process.
 */
const instruments = new Set<number>();

export function countAsBench(backendPid: number): void {
  instruments.add(backendPid);
}

async function machineTicks(): Promise<{ busy: number; total: number; cores: number }> {
  const text = await readFile("/proc/stat", "utf8");
  const lines = text.split("\n");
  const cpu = (lines[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  const cores = lines.filter((l) => /^cpu\d+ /.test(l)).length;
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS, cores };
}

export async function cpuSnapshot(
  pids: Array<{ node: number | undefined; postgres: number | undefined }>,
): Promise<CpuSnapshot> {
  const u = process.cpuUsage();
  const [nodes, postgres, m, tools] = await Promise.all([
    Promise.all(pids.map((p) => (p.node === undefined ? undefined : processCpuMs(p.node)))),
    Promise.all(pids.map((p) => (p.postgres === undefined ? undefined : serverCpuMs(p.postgres)))),
    machineTicks(),
    Promise.all([...instruments].map((pid) => ownCpu(pid))),
  ]);
  let toolsMs = 0;
  for (const t of tools) {
    const i = t === undefined ? -1 : pids.findIndex((p) => p.postgres === t.ppid);
    const server = postgres[i];
    if (t === undefined || server === undefined) continue;
    postgres[i] = server - t.ms;
    toolsMs += t.ms;
  }
  return {
    at: performance.now(),
    nodes,
    postgres,
    bench: (u.user + u.system) / 1000 + toolsMs,
    machineBusy: m.busy,
    machineTotal: m.total,
  };
}

export async function cpuCores(): Promise<number> {
  return (await machineTicks()).cores;
}

export function cpuUsage(a: CpuSnapshot, b: CpuSnapshot, cores: number): CpuUsage {
  const secs = (b.at - a.at) / 1000;
  const per = (x: number | undefined, y: number | undefined) =>
    x === undefined || y === undefined ? null : Math.round((y - x) / secs);
  const nodes = a.nodes.map((x, i) => per(x, b.nodes[i]));
  const postgres = a.postgres.map((x, i) => per(x, b.postgres[i]));
  const bench = Math.round((b.bench - a.bench) / secs);
  const ours = [...nodes, ...postgres].reduce<number>((s, x) => s + (x ?? 0), bench);
  // /proc/stat's first line sums all CPUs: busy ms per wall second, up to 1000 x cores.
  const machine = Math.round((b.machineBusy - a.machineBusy) / secs);
  return { nodes, postgres, bench, ours, machine, cores, seconds: Math.round(secs * 100) / 100 };
}
