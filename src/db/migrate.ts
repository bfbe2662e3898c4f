import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";
import { inTransaction } from "./pg-session.js";

/**
 * The node's database schema, for every layer that keeps tables in it (the node's identity and
 * idempotency keys, replication's journal and record, the cache's index): one numbered
 * sequence, so a database migrated by any earlier build keeps its history.
 *
 * Schema migrations: numbered files `sql/NNNN_name.sql`, applied in order at start, each in
 * its own transaction, recorded in `geospool_migrations`. Several nodes or processes may
 * migrate one database at once: each transaction takes a transaction-scoped advisory lock and
 * re-checks whether its version is already recorded, so every file is applied exactly once.
 * Files never change once released; a new change is a new number.
 */

export const MigrationErrorCode = {
  /** A `.sql` file whose name is not `NNNN_name.sql`, or two files with one number. */
  BadFileName: "bad_file_name",
  /** A migration failed and was rolled back; `file` names it, `sqlstate` says why. */
  Failed: "failed",
} as const;

export type MigrationErrorCode = (typeof MigrationErrorCode)[keyof typeof MigrationErrorCode];

export class MigrationError extends Error {
  readonly code: MigrationErrorCode;
  readonly file: string | undefined;
  /** The SQLSTATE of the failing statement, when PostgreSQL reported one. */
  readonly sqlstate: string | undefined;

  constructor(
    code: MigrationErrorCode,
    message: string,
    options: { file?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "MigrationError";
    this.code = code;
    this.file = options.file;
    this.sqlstate = sqlstateOf(options.cause);
  }
}

export interface Migration {
  version: number;
  name: string;
  file: string;
}

export interface MigrateOptions {
  logger?: Logger;
  /** Directory of the migration files; default: `sql/` beside this module. */
  sqlDir?: string;
}

/** Shipped beside the compiled module (the build copies `*.sql` next to the JS). */
export const DEFAULT_SQL_DIR = fileURLToPath(new URL("./sql/", import.meta.url));

/** Arbitrary but fixed: the ASCII bytes of "geospool" as a bigint. */
const LOCK_KEY = "7450224240596160364";
const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;

const SQLSTATE = {
  uniqueViolation: "23505",
  duplicateTable: "42P07",
} as const;

export async function migrate(
  pool: pg.Pool,
  opts: MigrateOptions = {},
): Promise<{ applied: string[] }> {
  const logger = componentLogger(opts.logger, "migrate");
  const migrations = await listMigrations(opts.sqlDir ?? DEFAULT_SQL_DIR);
  await ensureBookkeeping(pool);
  const done = await appliedVersions(pool);
  const applied: string[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    if (await applyOne(pool, migration, opts.sqlDir ?? DEFAULT_SQL_DIR)) {
      applied.push(migration.file);
      logger.info({ file: migration.file }, "applied migration");
    } else {
      logger.debug({ file: migration.file }, "migration applied concurrently by another process");
    }
  }
  const newest = migrations.at(-1)?.version ?? 0;
  const ahead = [...done].filter((v) => v > newest);
  if (ahead.length > 0) {
    logger.warn({ versions: ahead }, "the database has migrations newer than this build");
  }
  return { applied };
}

export async function listMigrations(sqlDir: string): Promise<Migration[]> {
  const migrations: Migration[] = [];
  const seen = new Map<number, string>();
  for (const file of (await readdir(sqlDir)).sort()) {
    if (!file.endsWith(".sql")) continue;
    const match = FILE_NAME.exec(file);
    if (!match) {
      throw new MigrationError(
        MigrationErrorCode.BadFileName,
        `migration file ${file} is not named NNNN_name.sql`,
        { file },
      );
    }
    const version = Number(match[1]);
    const other = seen.get(version);
    if (other !== undefined) {
      throw new MigrationError(
        MigrationErrorCode.BadFileName,
        `migration files ${other} and ${file} share version ${version}`,
        { file },
      );
    }
    seen.set(version, file);
    migrations.push({ version, name: match[2] ?? "", file });
  }
  return migrations;
}

async function ensureBookkeeping(pool: pg.Pool): Promise<void> {
  try {
    await inTransaction(pool, async (client) => {
      await client.query("select pg_advisory_xact_lock($1::bigint)", [LOCK_KEY]);
      await client.query(`create table if not exists geospool_migrations (
        version int primary key,
        name text not null,
        applied_at timestamptz not null default now()
      )`);
    });
  } catch (err) {
    // Without the lock (an older build, a manual run), concurrent "create table if not
    // exists" calls can still collide on the catalog: the other side created it.
    const code = sqlstateOf(err);
    if (code !== SQLSTATE.uniqueViolation && code !== SQLSTATE.duplicateTable) throw err;
  }
}

async function appliedVersions(pool: pg.Pool): Promise<Set<number>> {
  const { rows } = await pool.query<{ version: number }>("select version from geospool_migrations");
  return new Set(rows.map((r) => r.version));
}

/** True when this call applied it; false when another process had meanwhile. */
async function applyOne(pool: pg.Pool, migration: Migration, sqlDir: string): Promise<boolean> {
  const sql = await readFile(join(sqlDir, migration.file), "utf8");
  try {
    return await inTransaction(pool, async (client) => {
      await client.query("select pg_advisory_xact_lock($1::bigint)", [LOCK_KEY]);
      const { rowCount } = await client.query(
        "select 1 from geospool_migrations where version = $1",
        [migration.version],
      );
      if (rowCount !== 0) return false;
      // No parameters: the simple query protocol runs every statement in the file.
      await client.query(sql);
      await client.query("insert into geospool_migrations (version, name) values ($1, $2)", [
        migration.version,
        migration.name,
      ]);
      return true;
    });
  } catch (err) {
    const state = sqlstateOf(err);
    throw new MigrationError(
      MigrationErrorCode.Failed,
      `migration ${migration.file} failed and was rolled back` +
        `${state ? ` (SQLSTATE ${state})` : ""}: ${(err as Error).message}`,
      { file: migration.file, cause: err },
    );
  }
}

function sqlstateOf(err: unknown): string | undefined {
  const code =
    typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
