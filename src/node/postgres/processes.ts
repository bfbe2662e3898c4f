import { existsSync } from "node:fs";
import { readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * What `postmaster.pid` in a data directory says. PostgreSQL writes it in stages, so any
 * field but the pid may be missing while the server starts.
 */
export interface PostmasterPid {
  pid: number;
  dataDir: string | undefined;
  port: number | undefined;
  /** "starting", "ready", "stopping" or "standby" (line 8), when written. */
  status: string | undefined;
}

export function postmasterPidPath(dataDir: string): string {
  return join(dataDir, "postmaster.pid");
}

export async function readPostmasterPid(dataDir: string): Promise<PostmasterPid | undefined> {
  let text: string;
  try {
    text = await readFile(postmasterPidPath(dataDir), "utf8");
  } catch (err) {
    if (errnoIs(err, "ENOENT", "ENOTDIR")) return undefined;
    throw err;
  }
  const lines = text.split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const port = Number.parseInt(lines[3] ?? "", 10);
  return {
    pid,
    dataDir: lines[1] || undefined,
    port: Number.isInteger(port) ? port : undefined,
    status: lines[7]?.trim() || undefined,
  };
}

export type ProcessState = "alive" | "zombie" | "dead";

/** Whether `pid` runs. A zombie (exited, not yet reaped by its parent) counts as gone. */
export async function processState(pid: number): Promise<ProcessState> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (errnoIs(err, "ESRCH")) return "dead";
    if (!errnoIs(err, "EPERM")) throw err;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) S ...": the state follows the last ')', since comm may contain ')'.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X" ? "zombie" : "alive";
  } catch (err) {
    // ESRCH: the process was reaped between opening and reading its stat file.
    if (errnoIs(err, "ENOENT", "ESRCH")) return procFs ? "dead" : "alive";
    throw err;
  }
}

/** Poll until `pid` is gone; false when the deadline passed first. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await processState(pid)) !== "alive") return true;
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
}

/** PostgreSQL processes (postmaster and children) are found through /proc on Linux. */
const procFs = existsSync("/proc/self/stat");

/**
 * The PostgreSQL processes working in `dataDir` (an absolute, symlink-free path): every
 * postgres process, the postmaster and each child, has the data directory as its working
 * directory. Linux only (elsewhere: always empty); the caller relies on postmaster.pid there.
 */
export async function postgresProcessesIn(dataDir: string): Promise<number[]> {
  if (!procFs) return [];
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const [cwd, comm] = await Promise.all([
        readlink(`/proc/${pid}/cwd`),
        readFile(`/proc/${pid}/comm`, "utf8"),
      ]);
      if (cwd === dataDir && comm.trim() === "postgres") found.push(pid);
    } catch {
      // The process exited while we looked, or is not ours to inspect.
    }
  }
  return found;
}

export function errnoIs(err: unknown, ...codes: string[]): boolean {
  const code =
    typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && codes.includes(code);
}
