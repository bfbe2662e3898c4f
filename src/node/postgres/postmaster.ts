import { spawn } from "node:child_process";
import { open, stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Logger } from "pino";
import type { PostgresBinaries } from "./binaries.js";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";
import { freePort } from "./free-port.js";
import {
  errnoIs,
  postgresProcessesIn,
  processState,
  readPostmasterPid,
  waitForExit,
} from "./processes.js";
import type { ServerUser } from "./server-user.js";

/** The superuser and password baked into the template (a local dev credential). */
export const SUPERUSER = "postgres";
export const SUPERUSER_PASSWORD = "postgres";

export interface LaunchOptions {
  binaries: PostgresBinaries;
  user: ServerUser | undefined;
  /** Absolute, symlink-free path of an initialised data directory. */
  dataDir: string;
  /** 0 or absent: pick a free port on 127.0.0.1 (retrying if another process takes it). */
  port?: number;
  /** Server settings, passed as `-c name=value` (they override postgresql.conf). */
  settings: Record<string, string>;
  /** stdout and stderr of the server are appended here. */
  logFile: string;
  logger: Logger;
  startTimeoutMs?: number;
}

export interface Postmaster {
  pid: number;
  port: number;
  /** Fast shutdown (SIGINT); escalates to SIGQUIT then SIGKILL past the deadline. Idempotent. */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
}

const PORT_ATTEMPTS = 5;
/** Connection failures that mean "not accepting connections yet". */
const NOT_READY = new Set(["ECONNREFUSED", "ECONNRESET", "57P03"]);

export async function launchPostmaster(opts: LaunchOptions): Promise<Postmaster> {
  const fixed = opts.port !== undefined && opts.port !== 0;
  let lastError: unknown;
  for (let attempt = 1; attempt <= (fixed ? 1 : PORT_ATTEMPTS); attempt++) {
    const port = fixed ? (opts.port as number) : await freePort();
    const outcome = await launchOnce(opts, port);
    if (outcome.kind === "ready") return outcome.postmaster;
    lastError = outcome.error;
    // An early exit on an auto-picked port is most likely a lost race for the port; the
    // log tail in the error says otherwise if it was not.
    if (outcome.kind === "timed_out") break;
    opts.logger.debug({ port, attempt }, "postgres exited during start; retrying on another port");
  }
  throw lastError;
}

type LaunchOutcome =
  | { kind: "ready"; postmaster: Postmaster }
  | { kind: "exited"; error: PostgresServerError }
  | { kind: "timed_out"; error: PostgresServerError };

async function launchOnce(opts: LaunchOptions, port: number): Promise<LaunchOutcome> {
  const { dataDir, logger } = opts;
  const log = await open(opts.logFile, "a");
  const logOffset = (await log.stat()).size;
  const args = ["-D", dataDir, "-p", String(port)];
  for (const [name, value] of Object.entries(opts.settings)) args.push("-c", `${name}=${value}`);
  const child = (() => {
    try {
      // Detached: its own session, so a Ctrl-C in the terminal reaches only the CLI, which
      // decides the shutdown order. If we die without stopping it, the server lives on as an
      // orphan, which stopStalePostgres(dataDir) finds through postmaster.pid.
      return spawn(opts.binaries.postgres, args, {
        detached: true,
        stdio: ["ignore", log.fd, log.fd],
        env: { ...process.env, LC_MESSAGES: "C" },
        ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
      });
    } finally {
      void log.close();
    }
  })();
  child.unref();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((info) => {
    exitInfo = info;
  });
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  const pid = child.pid;
  if (pid === undefined) {
    const cause = await spawnError;
    return {
      kind: "exited",
      error: new PostgresServerError(
        PostgresServerErrorCode.StartFailed,
        `could not run ${opts.binaries.postgres}`,
        { cause },
      ),
    };
  }

  let stopping: Promise<void> | undefined;
  let readyOnce = false;
  const postmaster: Postmaster = {
    pid,
    port,
    stop(stopOpts) {
      stopping ??= shutdown(pid, dataDir, exited, stopOpts?.timeoutMs ?? 30_000, logger);
      return stopping;
    },
  };
  void exited.then((info) => {
    if (!stopping && readyOnce) logger.error({ pid, ...info }, "postgres exited unexpectedly");
  });

  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (exitInfo) {
      const tail = await readTail(opts.logFile, logOffset);
      return {
        kind: "exited",
        error: new PostgresServerError(
          PostgresServerErrorCode.StartFailed,
          `postgres exited during start (code ${exitInfo.code}, signal ${exitInfo.signal}); ` +
            `log ${opts.logFile}:\n${tail}`,
        ),
      };
    }
    if (Date.now() >= deadline) {
      await postmaster.stop({ timeoutMs: 5_000 });
      const tail = await readTail(opts.logFile, logOffset);
      return {
        kind: "timed_out",
        error: new PostgresServerError(
          PostgresServerErrorCode.StartFailed,
          `postgres did not accept connections within the deadline; log ${opts.logFile}:\n${tail}`,
        ),
      };
    }
    // Like pg_ctl: our postmaster marks its lock file "ready" once it listens. Only then is
    // whoever answers on the port certainly us.
    const lock = await readPostmasterPid(dataDir);
    if (lock?.pid !== pid || lock.status !== "ready") {
      await sleep(20);
      continue;
    }
    let probe: "ready" | "not_yet";
    try {
      probe = await probeReady(port, dataDir);
    } catch (cause) {
      await postmaster.stop({ timeoutMs: 5_000 });
      throw new PostgresServerError(
        PostgresServerErrorCode.StartFailed,
        `postgres started but refused the readiness check (log ${opts.logFile})`,
        { cause },
      );
    }
    if (probe === "ready") {
      readyOnce = true;
      return { kind: "ready", postmaster };
    }
    await sleep(20);
  }
}

/** A connection on the port succeeds and the server behind it serves our data directory. */
async function probeReady(port: number, dataDir: string): Promise<"ready" | "not_yet"> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port,
    user: SUPERUSER,
    password: SUPERUSER_PASSWORD,
    database: "postgres",
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ dir: string }>(
      "select current_setting('data_directory') as dir",
    );
    return rows[0]?.dir === dataDir ? "ready" : "not_yet";
  } catch (err) {
    if (NOT_READY.has(codeOf(err))) return "not_yet";
    throw err;
  } finally {
    await client.end().catch(() => {});
  }
}

async function shutdown(
  pid: number,
  dataDir: string,
  exited: Promise<unknown>,
  timeoutMs: number,
  logger: Logger,
): Promise<void> {
  const escalation: [NodeJS.Signals, number][] = [
    ["SIGINT", timeoutMs], // fast shutdown: roll back, disconnect, checkpoint
    ["SIGQUIT", 5_000], // immediate shutdown: crash recovery at next start
    ["SIGKILL", 5_000],
  ];
  for (const [signal, waitMs] of escalation) {
    if ((await processState(pid)) !== "alive") break;
    if (signal !== "SIGINT") logger.warn({ pid, signal }, "postgres is slow to stop; escalating");
    try {
      process.kill(pid, signal);
    } catch (err) {
      if (!errnoIs(err, "ESRCH")) throw err;
    }
    if (await settlesWithin(exited, waitMs)) break;
  }
  await reapStragglers(dataDir, logger);
  if ((await processState(pid)) === "alive") {
    throw new PostgresServerError(
      PostgresServerErrorCode.StopFailed,
      `postgres (pid ${pid}) for ${dataDir} did not stop`,
    );
  }
  logger.debug({ pid }, "postgres stopped");
}

/**
 * After the postmaster is gone, its children follow within moments (they watch the postmaster
 * death pipe). Give them that moment, then kill what is left so that no process keeps the data
 * directory (or its shared memory) busy.
 */
export async function reapStragglers(dataDir: string, logger: Logger): Promise<void> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const left = await postgresProcessesIn(dataDir);
    if (left.length === 0) return;
    if (Date.now() >= deadline) {
      logger.warn({ pids: left, dataDir }, "killing leftover postgres processes");
      for (const pid of left) {
        try {
          process.kill(pid, "SIGKILL");
        } catch (err) {
          if (!errnoIs(err, "ESRCH")) throw err;
        }
      }
      await Promise.all(left.map((pid) => waitForExit(pid, 5_000)));
      return;
    }
    await sleep(25);
  }
}

/** Whether `promise` settles within `ms`, without leaving a timer behind either way. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise.then(() => true),
      sleep(ms, false, { signal: timer.signal }),
    ]);
  } finally {
    timer.abort();
  }
}

async function readTail(path: string, from: number, max = 4_000): Promise<string> {
  try {
    const size = (await stat(path)).size;
    const start = Math.max(from, size - max);
    const fh = await open(path, "r");
    try {
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.toString("utf8");
    } finally {
      await fh.close();
    }
  } catch {
    return "(log unavailable)";
  }
}

function codeOf(err: unknown): string {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : "";
  return typeof code === "string" ? code : "";
}
