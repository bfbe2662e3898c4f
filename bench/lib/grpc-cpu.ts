/**
 * CPU time of the processes a run uses, from /proc (Linux): a process's own user+system
 * time, plus, for a PostgreSQL server, that of its live backends and of the children the
 * postmaster has already reaped (cutime+cstime). The difference of two snapshots is the CPU
 * the server spent in between.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

const TICK_MS = 10; // CLK_TCK is 100 on Linux

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime, ms */
  self: number;
  /** cutime + cstime (reaped children), ms */
  children: number;
}

async function procStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces; fields after it follow the last ")".
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const n = (i: number) => Number(f[i - 3]);
  return {
    pid,
    ppid: n(4),
    self: (n(14) + n(15)) * TICK_MS,
    children: (n(16) + n(17)) * TICK_MS,
  };
}

/** CPU ms of one live process itself, and its parent's pid; undefined once it is gone. */
export async function ownCpu(pid: number): Promise<{ ms: number; ppid: number } | undefined> {
  const s = await procStat(pid);
  return s && { ms: s.self, ppid: s.ppid };
}

/** CPU ms of one process (itself and reaped children). */
export async function processCpuMs(pid: number): Promise<number> {
  const s = await procStat(pid);
  return s ? s.self + s.children : 0;
}

/** The postmaster's pid: the first line of <dataDir>/postmaster.pid. */
export async function postmasterPid(dataDir: string): Promise<number> {
  const text = await readFile(join(dataDir, "postmaster.pid"), "utf8");
  const pid = Number(text.split("\n")[0]);
  if (!Number.isSafeInteger(pid) || pid <= 0)
    throw new Error(`no pid in ${dataDir}/postmaster.pid`);
  return pid;
}

/** CPU ms of a PostgreSQL server: postmaster, its reaped children, its live children. */
export async function serverCpuMs(postmaster: number): Promise<number> {
  const root = await procStat(postmaster);
  if (!root) return 0;
  let total = root.self + root.children;
  const pids = (await readdir("/proc")).filter((d) => /^\d+$/.test(d)).map(Number);
  const stats = await Promise.all(pids.map((p) => (p === postmaster ? undefined : procStat(p))));
  for (const s of stats) if (s && s.ppid === postmaster) total += s.self;
  return total;
}

/** CPU ms of one thread of a process (the main thread's id is the pid). */
export async function threadCpuMs(pid: number, tid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}
