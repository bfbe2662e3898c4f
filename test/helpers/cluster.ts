import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { startEmbeddedPostgres, stopStalePostgres } from "../../src/node/postgres/embedded.js";
import { readPostmasterPid, waitForExit } from "../../src/node/postgres/processes.js";
import { startTestNode } from "./node.js";
import { startPostgresServers, stopPostgresServers, type TestPostgres } from "./postgres.js";
import { useSuiteTempDir } from "./tmp.js";

/**
 * Ports free right now on 127.0.0.1 (peers must know each other's gRPC address up front).
 * They are taken below the kernel's ephemeral range (`ip_local_port_range`): a node
 * stopped and started again binds its port a second time, and a port from that range can
 * be taken meanwhile as the local port of any outgoing connection on the machine (another
 * test's client), which failed a restart with EADDRINUSE.
 */
export async function freePorts(n: number): Promise<number[]> {
  const [low, high] = portRange();
  const held: import("node:net").Server[] = [];
  try {
    for (let tries = 0; held.length < n; tries++) {
      if (tries > 1000) throw new Error(`no free port found in ${low}-${high}`);
      const port = low + Math.floor(Math.random() * (high - low + 1));
      const s = await new Promise<import("node:net").Server | undefined>((resolve) => {
        const server = createServer();
        server.once("error", () => resolve(undefined));
        server.listen(port, "127.0.0.1", () => resolve(server));
      });
      if (s !== undefined) held.push(s);
    }
    return held.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}

/** Where freePorts looks: the 10,000 ports below the ephemeral range, or 20000-29999. */
function portRange(): [number, number] {
  try {
    const [ephemeralLow] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    if (ephemeralLow !== undefined && ephemeralLow >= 12_000) {
      return [ephemeralLow - 10_000, ephemeralLow - 1];
    }
  } catch {
    // not Linux: the default below
  }
  return [20_000, 29_999];
}

export interface TestCluster {
  readonly ids: readonly string[];
  readonly postgres: readonly TestPostgres[];
  /** gRPC `host:port` of each node. */
  readonly endpoints: readonly string[];
  /** The running node i (throws if it is stopped). */
  node(i: number): RunningNode;
  /**
   * Start node i (again), with the same spool, database and ports; `config` is laid over the
   * cluster's (top-level keys replace theirs).
   */
  start(i: number, config?: Record<string, unknown>): Promise<RunningNode>;
  /** Drain and stop node i (its PostgreSQL keeps running). */
  stopNode(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * N nodes, each with its own real PostgreSQL server, in a full replication mesh (every node
 * lists every other as a peer with its gRPC address and PostgreSQL URL).
 */
export async function startTestCluster(opts: {
  n: number;
  dir: string;
  config?: Record<string, unknown>;
  ids?: string[];
  /** Node i's wall clock (NodeHooks.clock), e.g. skewed; default the real one. */
  clocks?: ReadonlyArray<(() => number) | undefined>;
}): Promise<TestCluster> {
  const ids = opts.ids ?? Array.from({ length: opts.n }, (_, i) => `n${i + 1}`);
  const postgres = await startPostgresServers(opts.n, { dir: join(opts.dir, "pg") });
  const ports = await freePorts(opts.n);
  const endpoints = ports.map((p) => `127.0.0.1:${p}`);
  const running: Array<RunningNode | undefined> = new Array(opts.n).fill(undefined);
  const start = async (i: number, config: Record<string, unknown> = {}) => {
    const clock = opts.clocks?.[i];
    const node = await startTestNode({
      ...(clock === undefined ? {} : { clock }),
      id: ids[i] as string,
      dir: opts.dir,
      postgresUrl: (postgres[i] as TestPostgres).url,
      config: {
        grpc: { listen: endpoints[i] },
        peers: ids
          .map((id, j) => ({ id, grpc: endpoints[j], postgres: (postgres[j] as TestPostgres).url }))
          .filter((p) => p.id !== ids[i]),
        ...opts.config,
        ...config,
        replication: {
          fullReconcileEvery: "2s",
          joinRetry: "300ms",
          ...(opts.config?.replication as object | undefined),
          ...(config.replication as object | undefined),
        },
      },
    });
    running[i] = node;
    return node;
  };
  const cluster: TestCluster = {
    ids,
    postgres,
    endpoints,
    node(i) {
      const n = running[i];
      if (n === undefined) throw new Error(`node ${ids[i]} is not running`);
      return n;
    },
    start,
    async stopNode(i) {
      const n = running[i];
      running[i] = undefined;
      await n?.stop();
    },
    async stop() {
      await Promise.allSettled(running.map((n) => n?.stop()));
      await stopPostgresServers(postgres);
    },
  };
  try {
    for (let i = 0; i < opts.n; i++) await start(i);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Poll `check` until it returns true (or throw after `timeoutMs` with `what`). */
export async function eventually(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * SIGKILL the postmaster of an embedded test server (its pid from `<dataDir>/postmaster.pid`)
 * and wait until it is gone. Its children follow on their own; `restartPostgres` reaps any
 * left. Returns the pid killed.
 */
export async function killPostgres(server: TestPostgres): Promise<number> {
  if (server.dataDir === undefined) throw new Error("killPostgres needs an embedded server");
  const lock = await readPostmasterPid(server.dataDir);
  if (lock === undefined) throw new Error(`no postmaster.pid in ${server.dataDir}`);
  process.kill(lock.pid, "SIGKILL");
  if (!(await waitForExit(lock.pid, 10_000))) throw new Error(`postgres ${lock.pid} survived`);
  return lock.pid;
}

/**
 * Start an embedded test server again on its data directory and port (after `killPostgres`):
 * leftover children are stopped and the stale lock removed first; crash recovery runs on
 * start. `server.stop` then stops the new server.
 */
export async function restartPostgres(server: TestPostgres): Promise<void> {
  if (server.dataDir === undefined) throw new Error("restartPostgres needs an embedded server");
  await stopStalePostgres(server.dataDir);
  const port = Number(new URL(server.url).port);
  const again = await startEmbeddedPostgres({ dataDir: server.dataDir, port, fsync: false });
  if (again.url !== server.url) {
    await again.stop();
    throw new Error(`restarted postgres answers at ${again.url}, not ${server.url}`);
  }
  server.stop = again.stop;
}

/** Where node `i` holds `name`: `<queue>/queued`, `<queue>/checked_out` or `absent`. */
export async function placeOf(cluster: TestCluster, i: number, name: string): Promise<string> {
  const loc = await cluster.node(i).spool.locate(name);
  return loc === undefined ? "absent" : `${loc.queue}/${loc.state}`;
}

/**
 * A test file's cluster teardown: close the clients and pools, then stop the cluster (its
 * state directory is the suite's `useSuiteTempDir`, removed after this unless a test failed).
 */
export async function closeCluster(parts: {
  clients?: readonly { close(): void }[];
  pools?: readonly { end(): Promise<void> }[];
  cluster: TestCluster | undefined;
}): Promise<void> {
  for (const c of parts.clients ?? []) c.close();
  await Promise.allSettled((parts.pools ?? []).map((p) => p.end()));
  await parts.cluster?.stop();
}

/**
 * A two-node cluster for the calling file (in a suite temp dir named by `prefix`), with a
 * client on B and a one-connection pool on A's PostgreSQL: the setup of the tests that break
 * node A by hand while B feeds it. `beforeClose` runs first at the end (e.g. to undo settings
 * made on A's server).
 */
export function useTwoNodeCluster(
  prefix: string,
  opts: { beforeClose?: (poolA: pg.Pool) => Promise<void> } = {},
): { readonly cluster: TestCluster; readonly clientB: GeospoolClient; readonly poolA: pg.Pool } {
  const dir = useSuiteTempDir(prefix);
  let cluster: TestCluster | undefined;
  let clientB: GeospoolClient | undefined;
  let poolA: pg.Pool | undefined;
  beforeAll(async () => {
    cluster = await startTestCluster({ n: 2, dir: dir.path });
    clientB = new GeospoolClient({
      endpoints: [cluster.endpoints[1] as string],
      retryForMs: 5_000,
    });
    poolA = new pg.Pool({ connectionString: cluster.postgres[0]?.url, max: 1 });
  }, 120_000);
  afterAll(async () => {
    if (poolA && opts.beforeClose) await opts.beforeClose(poolA).catch(() => undefined);
    await closeCluster({ clients: clientB ? [clientB] : [], pools: poolA ? [poolA] : [], cluster });
  });
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useTwoNodeCluster: ${what} is not started yet`);
    return value;
  };
  return {
    get cluster() {
      return need(cluster, "the cluster");
    },
    get clientB() {
      return need(clientB, "the client");
    },
    get poolA() {
      return need(poolA, "the pool");
    },
  };
}
