import { join } from "node:path";
import pg from "pg";
import type { Logger } from "pino";
import { afterAll, afterEach, beforeAll } from "vitest";
import { migrate } from "../../src/db/migrate.js";
import { startEmbeddedPostgres, stopStalePostgres } from "../../src/node/postgres/embedded.js";
import { useSuiteTempDir } from "./tmp.js";

/** A PostgreSQL server for a test: connect with `url`, end with `stop()` (idempotent). */
export interface TestPostgres {
  /** `postgresql://...@127.0.0.1:<port>/geospool`, wal_level=logical. */
  url: string;
  /** Embedded servers only: the data directory (kept with the test's temp dir on failure). */
  dataDir: string | undefined;
  stop(): Promise<void>;
}

export type PostgresProvider = "embedded" | "testcontainers";

/** `GEOSPOOL_PG_PROVIDER=testcontainers` (needs a Docker engine); default `embedded`. */
export function postgresProvider(): PostgresProvider {
  const wanted = process.env.GEOSPOOL_PG_PROVIDER ?? "embedded";
  if (wanted === "embedded" || wanted === "testcontainers") return wanted;
  throw new Error(`GEOSPOOL_PG_PROVIDER must be "embedded" or "testcontainers", not "${wanted}"`);
}

/**
 * Start `n` servers in parallel. Embedded servers live in `<dir>/pg-<i>` (copies of the shared
 * template, fsync off); if one fails to start, the others are stopped before the error is
 * rethrown. Pair with `stopPostgresServers` in `afterEach`/`finally`.
 */
export async function startPostgresServers(
  n: number,
  opts: { dir: string; logger?: Logger; settings?: Record<string, string> },
): Promise<TestPostgres[]> {
  const provider = postgresProvider();
  const starts = Array.from({ length: n }, (_, i) =>
    provider === "embedded" ? startEmbedded(join(opts.dir, `pg-${i}`), opts) : startContainer(opts),
  );
  const results = await Promise.allSettled(starts);
  const started = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) {
    await stopPostgresServers(started);
    throw failure.reason;
  }
  return started;
}

/**
 * Stop every server (in parallel, all of them even when some fail), then make sure nothing
 * is left in their data directories. Throws the first failure after trying them all.
 */
export async function stopPostgresServers(servers: readonly TestPostgres[]): Promise<void> {
  const results = await Promise.allSettled(
    servers.map(async (server) => {
      try {
        await clientsGone(server.url);
        await server.stop();
      } finally {
        if (server.dataDir) await stopStalePostgres(server.dataDir);
      }
    }),
  );
  const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) throw failure.reason;
}

/**
 * Wait (up to `withinMs`) until no client session but ours is open on the server. A pool's
 * `end()` resolves before its connections have closed; a fast shutdown meanwhile sends them
 * "terminating connection due to administrator command" (57P01), which a pool without an
 * error listener throws as an uncaught exception in the test file that ended it.
 */
async function clientsGone(url: string, withinMs = 2_000): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on("error", () => {});
  try {
    await client.connect();
  } catch {
    return; // Not answering: nothing to wait for.
  }
  try {
    const deadline = Date.now() + withinMs;
    while (Date.now() < deadline) {
      const r = await client
        .query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity
            where backend_type = 'client backend' and pid <> pg_backend_pid()`,
        )
        .catch(() => undefined);
      // Gone meanwhile (a test may stop it itself): nothing to wait for.
      if (r === undefined || (r.rows[0]?.n ?? 0) === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await client.end().catch(() => {});
  }
}

async function startEmbedded(
  dataDir: string,
  opts: { logger?: Logger; settings?: Record<string, string> },
): Promise<TestPostgres> {
  const server = await startEmbeddedPostgres({
    dataDir,
    fsync: false,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.settings ? { settings: opts.settings } : {}),
  });
  return { url: server.url, dataDir: server.dataDir, stop: server.stop };
}

async function startContainer(opts: { settings?: Record<string, string> }): Promise<TestPostgres> {
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
  const settings: Record<string, string> = {
    wal_level: "logical",
    max_wal_senders: "20",
    max_replication_slots: "20",
    max_slot_wal_keep_size: "1GB",
    idle_replication_slot_timeout: "1d",
    max_logical_replication_workers: "8",
    max_worker_processes: "16",
    fsync: "off",
    ...opts.settings,
  };
  const command = [
    "postgres",
    ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
  ];
  const container = await new PostgreSqlContainer(process.env.GEOSPOOL_PG_IMAGE ?? "postgres:18")
    .withDatabase("geospool")
    .withUsername("postgres")
    .withPassword("postgres")
    .withCommand(command)
    .start();
  let stopping: Promise<unknown> | undefined;
  return {
    url: container.getConnectionUri(),
    dataDir: undefined,
    stop: async () => {
      stopping ??= container.stop();
      await stopping;
    },
  };
}

/**
 * One PostgreSQL server shared by the tests of the calling file (started in beforeAll,
 * stopped in afterAll; its directory kept if any test failed), and a fresh empty database
 * per call of `freshDatabase`, returned as a connection URL.
 */
export function useSharedPostgres(prefix: string): { freshDatabase(): Promise<string> } {
  const dir = useSuiteTempDir(`geospool-${prefix}-`);
  let server: TestPostgres | undefined;
  let databases = 0;
  beforeAll(async () => {
    [server] = (await startPostgresServers(1, { dir: dir.path })) as [TestPostgres];
  });
  afterAll(async () => {
    await stopPostgresServers(server ? [server] : []);
  });
  return {
    async freshDatabase() {
      if (!server) throw new Error("useSharedPostgres: the server is not started");
      const name = `${prefix}_${++databases}`;
      const admin = new pg.Client(server.url);
      await admin.connect();
      try {
        await admin.query(`create database ${name}`);
      } finally {
        await admin.end();
      }
      const url = new URL(server.url);
      url.pathname = `/${name}`;
      return url.toString();
    },
  };
}

/**
 * `useSharedPostgres` with the node's schema: `database()` makes a fresh database, migrates
 * it and returns a pool to it, ended after the test.
 */
export function useMigratedDatabases(prefix: string): { database(): Promise<pg.Pool> } {
  const shared = useSharedPostgres(prefix);
  const pools: pg.Pool[] = [];
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.end();
  });
  return {
    async database() {
      const pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 2 });
      pools.push(pool);
      await migrate(pool);
      return pool;
    },
  };
}
