/**
 * The 3-node cluster of bench/replication.ts: each node is a geospool process
 * (replication-node.ts) with its own embedded PostgreSQL server, durable as in production
 * (startEmbeddedPostgres defaults: fsync on, synchronous_commit on, full_page_writes on),
 * in a full mesh wired as test/helpers/cluster.ts wires it (every node lists every other as
 * a peer with its gRPC address and PostgreSQL URL; fixed free ports so peers know each
 * other up front). A node can be stopped with or without its PostgreSQL server and started
 * again on the same ports and data.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../src/node/postgres/embedded.js";
import { freePort } from "../src/node/postgres/free-port.js";
import { postmasterPid } from "./lib/grpc-cpu.js";
import type { NodeSpec } from "./replication-node.js";

const NODE_SCRIPT = fileURLToPath(new URL("./replication-node.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
/** bin/geospool.cjs sizes libuv's pool so before anything runs; the bench's nodes get the same. */
const UV_THREADPOOL_SIZE = "32";
const JOINED = new Set(["created", "resumed", "exists", "updated", "rebuilt"]);

export interface NodeProcess {
  readonly pid: number;
  /** Write `command` and resolve with the rest of the next stdout line starting `prefix `. */
  ask(command: string, prefix: string): Promise<string>;
  /** Close stdin (the node drains and exits); SIGKILL after 20 s. */
  stop(): Promise<void>;
}

export interface BenchCluster {
  readonly ids: readonly string[];
  readonly endpoints: readonly string[];
  readonly spoolDirs: readonly string[];
  /** PostgreSQL URL of node i (the same across restarts). */
  postgresUrl(i: number): string;
  node(i: number): NodeProcess;
  /** Pids to account CPU to: node processes and postmasters (undefined while stopped). */
  pids(): Promise<Array<{ node: number | undefined; postgres: number | undefined }>>;
  /** Stop node i's process, and its PostgreSQL server too when `withPostgres`. */
  stopNode(i: number, withPostgres: boolean): Promise<void>;
  /**
   * Start node i again (its PostgreSQL first if it was stopped); resolves at READY with the
   * time each part took (postgresMs 0 when it was running).
   */
  startNode(i: number): Promise<{ postgresMs: number; nodeMs: number }>;
  /** Resolves once every running node has joined every peer. */
  waitJoined(timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startBenchCluster(opts: {
  dir: string;
  ids: string[];
  queues: string[];
  replication?: Record<string, string | number>;
}): Promise<BenchCluster> {
  const { dir, ids } = opts;
  const n = ids.length;
  const servers: Array<EmbeddedPostgres | undefined> = new Array(n).fill(undefined);
  const pgPorts: number[] = [];
  const procs: Array<NodeProcess | undefined> = new Array(n).fill(undefined);
  const grpcPorts = await distinctFreePorts(2 * n);
  const endpoints = ids.map((_, i) => `127.0.0.1:${grpcPorts[i]}`);
  const httpEndpoints = ids.map((_, i) => `127.0.0.1:${grpcPorts[n + i]}`);
  const spoolDirs = ids.map((id) => join(dir, `spool-${id}`));
  const pgDir = (i: number) => join(dir, `pg-${ids[i]}`);

  const startPostgres = async (i: number) => {
    const port = pgPorts[i];
    const s = await startEmbeddedPostgres({
      dataDir: pgDir(i),
      ...(port === undefined ? {} : { port }),
    });
    servers[i] = s;
    pgPorts[i] = s.port;
  };
  const url = (i: number) => {
    const s = servers[i];
    if (s) return s.url;
    throw new Error(`PostgreSQL of ${ids[i]} is not running`);
  };
  let urls: string[] = [];

  const spawnNode = async (i: number) => {
    const spec: NodeSpec = {
      id: ids[i] as string,
      spoolDir: spoolDirs[i] as string,
      postgresUrl: urls[i] as string,
      grpc: endpoints[i] as string,
      http: httpEndpoints[i] as string,
      queues: opts.queues,
      peers: ids
        .map((id, j) => ({ id, grpc: endpoints[j] as string, postgres: urls[j] as string }))
        .filter((p) => p.id !== ids[i]),
      ...(opts.replication ? { replication: opts.replication } : {}),
    };
    procs[i] = await spawnNodeProcess(spec, join(dir, `node-${ids[i]}.log`));
  };

  const cluster: BenchCluster = {
    ids,
    endpoints,
    spoolDirs,
    postgresUrl: (i) => urls[i] as string,
    node(i) {
      const p = procs[i];
      if (p === undefined) throw new Error(`node ${ids[i]} is not running`);
      return p;
    },
    async pids() {
      return Promise.all(
        ids.map(async (_, i) => ({
          node: procs[i]?.pid,
          postgres: servers[i] ? await postmasterPid(pgDir(i)).catch(() => undefined) : undefined,
        })),
      );
    },
    async stopNode(i, withPostgres) {
      const p = procs[i];
      procs[i] = undefined;
      await p?.stop();
      if (withPostgres) {
        const s = servers[i];
        servers[i] = undefined;
        await s?.stop();
      }
    },
    async startNode(i) {
      const t0 = performance.now();
      if (servers[i] === undefined) await startPostgres(i);
      const t1 = performance.now();
      await spawnNode(i);
      return { postgresMs: t1 - t0, nodeMs: performance.now() - t1 };
    },
    async waitJoined(timeoutMs) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(
          procs.map(async (p) =>
            p ? (JSON.parse(await p.ask("joins", "JOINS")) as Record<string, string>) : undefined,
          ),
        );
        const done = states.every(
          (s) =>
            s === undefined ||
            (Object.keys(s).length === n - 1 && Object.values(s).every((k) => JOINED.has(k))),
        );
        if (done) return;
        if (Date.now() > until) {
          throw new Error(`peers not joined after ${timeoutMs} ms: ${JSON.stringify(states)}`);
        }
        await new Promise((r) => setTimeout(r, 300));
      }
    },
    async stop() {
      await Promise.allSettled(procs.map((p) => p?.stop()));
      await Promise.allSettled(servers.map((s) => s?.stop()));
    },
  };

  try {
    await Promise.all(ids.map((_, i) => startPostgres(i)));
    urls = ids.map((_, i) => url(i));
    await Promise.all(ids.map((_, i) => spawnNode(i)));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

async function spawnNodeProcess(spec: NodeSpec, logFile: string): Promise<NodeProcess> {
  const log = await open(logFile, "a");
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", NODE_SCRIPT, JSON.stringify(spec)],
    {
      cwd: REPO_ROOT,
      stdio: ["pipe", "pipe", log.fd],
      env: { ...process.env, UV_THREADPOOL_SIZE },
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.finally(() => log.close().catch(() => undefined));
  const waiting: Array<{ prefix: string; resolve: (rest: string) => void }> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    const i = waiting.findIndex((w) => line.startsWith(`${w.prefix} `));
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(line.slice(line.indexOf(" ") + 1));
  });
  const next = (prefix: string) =>
    Promise.race([
      new Promise<string>((resolve) => waiting.push({ prefix, resolve })),
      exited.then(() => {
        throw new Error(`node ${spec.id} exited (see ${logFile})`);
      }),
    ]);
  const ready = JSON.parse(await next("READY")) as { pid: number };
  return {
    pid: ready.pid,
    ask(command, prefix) {
      const answer = next(prefix);
      child.stdin?.write(`${command}\n`);
      return answer;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin?.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
