import { spawn } from "node:child_process";
import { chown, mkdtemp, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import pg from "pg";
import type { Logger } from "pino";
import type { PostgresBinaries } from "./binaries.js";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";
import { launchPostmaster, SUPERUSER, SUPERUSER_PASSWORD } from "./postmaster.js";
import { errnoIs } from "./processes.js";
import { ensureTraversable, type ServerUser } from "./server-user.js";

/** The database every server has from its first start (created in the template). */
export const DATABASE = "geospool";

/** Bump when the initdb flags or the template's contents change, so old caches are ignored. */
const TEMPLATE_FORMAT = 1;

export function defaultTemplateDir(tmp: string, binaries: PostgresBinaries): string {
  return join(tmp, `geospool-pg-template-${binaries.major}-v${TEMPLATE_FORMAT}`);
}

const building = new Map<string, Promise<void>>();

/**
 * A cleanly shut down data directory, initialised once and copied for every server. Built in
 * a private directory beside `templateDir` and renamed into place, so a reader never sees half
 * a template and two processes racing to build it both end up using the winner's.
 */
export async function ensureTemplate(opts: {
  binaries: PostgresBinaries;
  user: ServerUser | undefined;
  templateDir: string;
  logger: Logger;
}): Promise<{ built: boolean }> {
  if (await isDataDir(opts.templateDir)) return { built: false };
  let build = building.get(opts.templateDir);
  if (!build) {
    build = buildTemplate(opts).finally(() => building.delete(opts.templateDir));
    building.set(opts.templateDir, build);
  }
  await build;
  return { built: true };
}

export async function isDataDir(dir: string): Promise<boolean> {
  try {
    return (await stat(join(dir, "PG_VERSION"))).isFile();
  } catch (err) {
    if (errnoIs(err, "ENOENT", "ENOTDIR")) return false;
    throw err;
  }
}

async function buildTemplate(opts: {
  binaries: PostgresBinaries;
  user: ServerUser | undefined;
  templateDir: string;
  logger: Logger;
}): Promise<void> {
  const { binaries, user, templateDir, logger } = opts;
  const started = Date.now();
  const parent = dirname(templateDir);
  if (user) await ensureTraversable(parent, user, logger);
  const work = await realpath(await mkdtemp(join(parent, `${basename(templateDir)}.build-`)));
  try {
    const data = join(work, "data");
    const pwfile = join(work, "pwfile");
    await writeFile(pwfile, `${SUPERUSER_PASSWORD}\n`, { mode: 0o600 });
    if (user) {
      await chown(work, user.uid, user.gid);
      await chown(pwfile, user.uid, user.gid);
    }
    await initdb(binaries, user, data, pwfile);
    const server = await launchPostmaster({
      binaries,
      user,
      dataDir: data,
      settings: {
        listen_addresses: "127.0.0.1",
        unix_socket_directories: "",
        // Let the shutdown checkpoint delete spent WAL segments instead of keeping them.
        min_wal_size: "2MB",
        max_wal_size: "32MB",
      },
      logFile: join(work, "server.log"),
      logger,
    });
    try {
      const client = new pg.Client({
        host: "127.0.0.1",
        port: server.port,
        user: SUPERUSER,
        password: SUPERUSER_PASSWORD,
        database: "postgres",
      });
      client.on("error", () => {});
      await client.connect();
      try {
        await client.query(`create database ${DATABASE} strategy = file_copy`);
      } finally {
        await client.end();
      }
    } finally {
      await server.stop();
    }
    await rm(join(data, "postmaster.opts"), { force: true });
    try {
      await rename(data, templateDir);
      logger.info({ templateDir, ms: Date.now() - started }, "built the PostgreSQL template");
    } catch (err) {
      // Another process renamed its template into place first: use that one.
      if (!errnoIs(err, "ENOTEMPTY", "EEXIST") || !(await isDataDir(templateDir))) throw err;
    }
  } catch (cause) {
    if (cause instanceof PostgresServerError) throw cause;
    throw new PostgresServerError(
      PostgresServerErrorCode.TemplateFailed,
      `could not build the PostgreSQL template ${templateDir}`,
      { cause },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function initdb(
  binaries: PostgresBinaries,
  user: ServerUser | undefined,
  data: string,
  pwfile: string,
): Promise<void> {
  const args = [
    `--pgdata=${data}`,
    `--username=${SUPERUSER}`,
    `--pwfile=${pwfile}`,
    "--auth=scram-sha-256",
    "--encoding=UTF8",
    // Deterministic, OS-independent collation; C messages in the log.
    "--no-locale",
    "--locale-provider=builtin",
    "--builtin-locale=C.UTF-8",
    // 1 MB WAL segments instead of 16 MB: a template a third the size, faster copies.
    "--wal-segsize=1",
    "--no-instructions",
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(binaries.initdb, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolve();
      else {
        reject(
          new PostgresServerError(
            PostgresServerErrorCode.TemplateFailed,
            `initdb failed (code ${code}, signal ${signal}):\n${output.slice(-4_000)}`,
          ),
        );
      }
    });
  });
}
