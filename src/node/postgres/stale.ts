import { realpath, rm } from "node:fs/promises";
import { resolve } from "node:path";
import type { Logger } from "pino";
import { componentLogger } from "../../common/logger.js";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";
import { reapStragglers } from "./postmaster.js";
import {
  errnoIs,
  type PostmasterPid,
  postgresProcessesIn,
  postmasterPidPath,
  processState,
  readPostmasterPid,
  waitForExit,
} from "./processes.js";

export type DataDirStatus =
  /** No server, no lock file. */
  | { kind: "idle" }
  /** A lock file whose server is gone (e.g. SIGKILLed with its children). */
  | { kind: "stale_lock"; pid: number }
  /** A live postmaster for this directory, or postgres processes still working in it. */
  | { kind: "running"; pid: number | undefined; pids: number[] };

/** Is a PostgreSQL server working in `dataDir` (absolute, symlink-free)? */
export async function dataDirStatus(dataDir: string): Promise<DataDirStatus> {
  const lock = await readPostmasterPid(dataDir);
  const pids = await postgresProcessesIn(dataDir);
  const postmaster = lock && (await isPostmasterOf(lock, dataDir, pids)) ? lock.pid : undefined;
  if (postmaster !== undefined || pids.length > 0)
    return { kind: "running", pid: postmaster, pids };
  if (lock) return { kind: "stale_lock", pid: lock.pid };
  return { kind: "idle" };
}

async function isPostmasterOf(
  lock: PostmasterPid,
  dataDir: string,
  pids: number[],
): Promise<boolean> {
  if ((await processState(lock.pid)) !== "alive") return false;
  // On Linux the process list is authoritative: a recycled pid belongs to some other process.
  if (pids.length > 0 || process.platform === "linux") return pids.includes(lock.pid);
  return lock.dataDir === dataDir;
}

export type StaleStopOutcome =
  | { kind: "not_running" }
  | { kind: "removed_stale_lock"; pid: number }
  | { kind: "stopped"; pid: number | undefined; pids: number[] };

/**
 * Stop a PostgreSQL server left running in `dataDir` by a process that died without stopping
 * it (SIGKILL, crash): read postmaster.pid, check that the pid is a postgres working in this
 * directory (pids get recycled), fast-shutdown it (escalating to SIGQUIT, then SIGKILL), kill
 * any child left behind, and remove a lock file whose server is gone. Safe to call when
 * nothing runs. Used by `geospool dev` at startup and by test cleanup.
 */
export async function stopStalePostgres(
  dataDir: string,
  opts: { logger?: Logger; timeoutMs?: number } = {},
): Promise<StaleStopOutcome> {
  const logger = componentLogger(opts.logger, "postgres");
  let dir: string;
  try {
    dir = await realpath(resolve(dataDir));
  } catch (err) {
    if (errnoIs(err, "ENOENT")) return { kind: "not_running" };
    throw err;
  }
  const status = await dataDirStatus(dir);
  switch (status.kind) {
    case "idle":
      return { kind: "not_running" };
    case "stale_lock":
      await rm(postmasterPidPath(dir), { force: true });
      logger.info({ dataDir: dir, pid: status.pid }, "removed a stale postmaster.pid");
      return { kind: "removed_stale_lock", pid: status.pid };
    case "running":
      break;
  }
  logger.warn({ dataDir: dir, pid: status.pid, pids: status.pids }, "stopping a stale postgres");
  if (status.pid !== undefined) {
    const pid = status.pid;
    const steps: [NodeJS.Signals, number][] = [
      ["SIGINT", opts.timeoutMs ?? 15_000],
      ["SIGQUIT", 5_000],
      ["SIGKILL", 5_000],
    ];
    for (const [signal, waitMs] of steps) {
      try {
        process.kill(pid, signal);
      } catch (err) {
        if (!errnoIs(err, "ESRCH")) throw err;
      }
      if (await waitForExit(pid, waitMs)) break;
    }
  }
  await reapStragglers(dir, logger);
  const after = await dataDirStatus(dir);
  if (after.kind === "running") {
    throw new PostgresServerError(
      PostgresServerErrorCode.StopFailed,
      `postgres processes ${after.pids.join(", ")} in ${dir} did not stop`,
    );
  }
  // A SIGKILLed postmaster leaves its lock file; the next start would cope, but leave none.
  if (after.kind === "stale_lock") await rm(postmasterPidPath(dir), { force: true });
  return { kind: "stopped", pid: status.pid, pids: status.pids };
}
