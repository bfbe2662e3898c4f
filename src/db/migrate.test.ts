import { copyFile, mkdir, readdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import {
  DEFAULT_SQL_DIR,
  listMigrations,
  MigrationError,
  MigrationErrorCode,
  migrate,
} from "./migrate.js";

const shared = useSharedPostgres("migrate");

const dir = useTempDir("geospool-migrate-sql-");
const pools: pg.Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end()));
});

/** A pool on a fresh, empty database of the shared server. */
async function freshDatabase(): Promise<{ pool: () => pg.Pool }> {
  const url = await shared.freshDatabase();
  return {
    pool: () => {
      const pool = new pg.Pool({ connectionString: url, max: 3 });
      pool.on("error", () => {});
      pools.push(pool);
      return pool;
    },
  };
}

async function sqlDir(files: Record<string, string>): Promise<string> {
  const path = join(dir.path, "sql");
  await mkdir(path);
  for (const [name, sql] of Object.entries(files)) await writeFile(join(path, name), sql);
  return path;
}

async function versions(pool: pg.Pool): Promise<[number, string][]> {
  const { rows } = await pool.query<{ version: number; name: string }>(
    "select version, name from geospool_migrations order by version",
  );
  return rows.map((r) => [r.version, r.name]);
}

describe("migrate", () => {
  it("applies the shipped migrations once and records them", async () => {
    const pool = (await freshDatabase()).pool();
    const shipped = await listMigrations(DEFAULT_SQL_DIR);
    expect(shipped[0]?.file).toBe("0001_node.sql");
    expect(await migrate(pool)).toEqual({ applied: shipped.map((m) => m.file) });
    expect(await versions(pool)).toEqual(shipped.map((m) => [m.version, m.name]));

    await pool.query("insert into node_info (node_id, region) values ('n1', 'eu')");
    const second = await pool
      .query("insert into node_info (node_id, region) values ('n2', 'us')")
      .catch((e) => e);
    expect(second.code).toBe("23505"); // one row only
    const notSingleton = await pool
      .query("insert into node_info (singleton, node_id, region) values (false, 'n3', 'us')")
      .catch((e) => e);
    expect(notSingleton.code).toBe("23514");
    await pool.query(
      "insert into idempotency_keys (key, queue, entry_name) values ('k', 'inbox', 'e1')",
    );
    const { rows } = await pool.query(
      "select indexname from pg_indexes where tablename = 'idempotency_keys' order by 1",
    );
    expect(rows.map((r) => r.indexname)).toEqual([
      "idempotency_keys_created_at",
      "idempotency_keys_pkey",
    ]);
  });

  it("applies nothing on a rerun", async () => {
    const pool = (await freshDatabase()).pool();
    const first = await migrate(pool);
    expect(first.applied.length).toBeGreaterThan(0);
    expect(await migrate(pool)).toEqual({ applied: [] });
    expect((await versions(pool)).length).toBe(first.applied.length);
  });

  it("applies each file exactly once when several processes migrate at once", async () => {
    const sql = await sqlDir({
      "0002_slow.sql": "create table slow (x int primary key); select pg_sleep(0.2);",
      "0003_after.sql": "create table after_slow (x int references slow (x));",
    });
    await copyFile(join(DEFAULT_SQL_DIR, "0001_node.sql"), join(sql, "0001_node.sql"));
    const db = await freshDatabase();
    // Separate pools stand for separate nodes starting against one database.
    const results = await Promise.all(
      Array.from({ length: 4 }, () => migrate(db.pool(), { sqlDir: sql })),
    );
    const applied = results.flatMap((r) => r.applied).sort();
    expect(applied).toEqual(["0001_node.sql", "0002_slow.sql", "0003_after.sql"]);
    expect(await versions(db.pool())).toEqual([
      [1, "node"],
      [2, "slow"],
      [3, "after"],
    ]);
  });

  it("rolls back a failing migration and names its file", async () => {
    const sql = await sqlDir({
      "0001_good.sql": "create table good (x int);",
      "0002_broken.sql": "create table half_done (x int);\nselect * from no_such_table;",
      "0003_never.sql": "create table never (x int);",
    });
    const pool = (await freshDatabase()).pool();
    const err = await migrate(pool, { sqlDir: sql }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe(MigrationErrorCode.Failed);
    expect(err.file).toBe("0002_broken.sql");
    expect(err.sqlstate).toBe("42P01"); // undefined_table
    expect(err.message).toContain("0002_broken.sql");
    expect(await versions(pool)).toEqual([[1, "good"]]);
    const { rows } = await pool.query(
      "select table_name from information_schema.tables where table_schema = 'public' order by 1",
    );
    expect(rows.map((r) => r.table_name)).toEqual(["geospool_migrations", "good"]);
  });

  it("refuses a misnamed or duplicated migration file before touching the database", async () => {
    const pool = (await freshDatabase()).pool();
    const misnamed = await sqlDir({ "0001_ok.sql": "select 1;", "2_oops.sql": "select 1;" });
    const err = await migrate(pool, { sqlDir: misnamed }).catch((e) => e);
    expect(err.code).toBe(MigrationErrorCode.BadFileName);
    expect(err.file).toBe("2_oops.sql");
    await writeFile(join(misnamed, "2_oops.sql"), "");
    const dupDir = join(dir.path, "dup");
    await mkdir(dupDir);
    await writeFile(join(dupDir, "0001_a.sql"), "select 1;");
    await writeFile(join(dupDir, "0001_b.sql"), "select 1;");
    const dup = await migrate(pool, { sqlDir: dupDir }).catch((e) => e);
    expect(dup.code).toBe(MigrationErrorCode.BadFileName);
    const { rows } = await pool.query("select to_regclass('geospool_migrations') as t");
    expect(rows[0].t).toBeNull();
  });
});

describe("the shipped migrations", () => {
  it("keep the versions and names databases already recorded, wherever the files live", async () => {
    // Recorded in geospool_migrations of every database migrated so far: a released file is
    // never renamed or renumbered (new changes get new numbers).
    const released = [
      [1, "node"],
      [2, "idempotency_completion"],
      [3, "journal"],
      [4, "replica"],
      [5, "journal_inline_data"],
      [6, "idempotency_scope"],
      [7, "replica_spool"],
      [8, "cache_index"],
    ];
    const shipped = await listMigrations(DEFAULT_SQL_DIR);
    expect(shipped.slice(0, released.length).map((m) => [m.version, m.name])).toEqual(released);
  });

  it("are all in src/db/sql, the one directory migrate reads", async () => {
    const src = fileURLToPath(new URL("..", import.meta.url));
    const strays = (await readdir(src, { recursive: true }))
      .filter((f) => f.endsWith(".sql"))
      .map((f) => join(src, f))
      .filter((f) => dirname(f) !== resolve(DEFAULT_SQL_DIR));
    expect(strays).toEqual([]);
  });
});
