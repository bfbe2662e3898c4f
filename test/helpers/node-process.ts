import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** A peer as `geospool node` takes it in `--peers` (JSON). */
export interface ProcessPeer {
  id: string;
  grpc: string;
  postgres?: string;
}

export interface NodeProcessOptions {
  /** main.js of a CLI built with `buildCli()`. */
  main: string;
  id: string;
  spoolDir: string;
  postgresUrl: string;
  /** Fixed `127.0.0.1:port` addresses: peers must know the gRPC one up front. */
  grpc: string;
  http: string;
  peers: readonly ProcessPeer[];
  /** Default `warn`: the node's log (stderr) is kept for failure messages. */
  logLevel?: string;
  /** More `--key value` flags (they override the defaults below). */
  flags?: Record<string, string>;
  /** Run inside this network namespace (`ip netns exec`; see netns.ts). */
  netns?: string;
}

/** One `geospool node` child process. */
export interface NodeProcess {
  readonly id: string;
  readonly grpc: string;
  readonly http: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The tail of the node's log. */
  stderr(): string;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (a clean drain); resolves with the exit code. */
  stop(): Promise<number | null>;
}

const KEEP_LOG_CHARS = 64 * 1024;
const READY_TIMEOUT_MS = 30_000;

/**
 * Start `geospool node` as a child process with the same settings the in-process test
 * cluster uses (lease grace 0, dead-letter queue `dead`, fast reconcile and peer joins),
 * configured by flags (peers by GEOSPOOL_PEERS), and wait until its `/readyz` answers. Processes still running are
 * in `running` (kill them in `afterAll`).
 */
export function startNodeProcess(opts: NodeProcessOptions): Promise<NodeProcess> {
  const args = nodeArgs(opts);
  return becomeReady(opts, spawnCli(opts.main, args, spawnOptions(opts)));
}

/** A `geospool node` child process booted ahead; `start` makes it the node. */
export interface NodeStandby {
  start(): Promise<NodeProcess>;
}

/**
 * Boot a `geospool node` child (test/helpers/node-standby.mjs: the CLI and the node's
 * modules loaded, nothing opened) to be started later with `opts`, as `startNodeProcess`
 * would start it. A test that kills and restarts a node boots the next one meanwhile.
 */
export function prepareNodeProcess(opts: NodeProcessOptions): NodeStandby {
  const cli = spawnCli(STANDBY, [opts.main, ...nodeArgs(opts)], {
    ...spawnOptions(opts),
    stdin: true,
    stdout: true,
  });
  const booted = new Promise<void>((resolve, reject) => {
    let out = "";
    cli.child.stdout?.on("data", (d) => {
      out += d;
      if (out.includes("standby\n")) resolve();
    });
    void cli.exited.then(() =>
      reject(new Error(`node ${opts.id} exited on standby:\n${cli.stderr()}`)),
    );
  });
  booted.catch(() => undefined);
  return {
    async start() {
      await booted;
      cli.child.stdin?.write("go\n");
      return becomeReady(opts, cli);
    },
  };
}

const STANDBY = fileURLToPath(new URL("./node-standby.mjs", import.meta.url));

function nodeArgs(opts: NodeProcessOptions): string[] {
  const flags: Record<string, string> = {
    "node.id": opts.id,
    "spool.dir": opts.spoolDir,
    "spool.leases.grace": "0ms",
    "spool.leases.deadLetterQueue": "dead",
    "postgres.url": opts.postgresUrl,
    "grpc.listen": opts.grpc,
    "http.listen": opts.http,
    "log.level": opts.logLevel ?? "warn",
    "shutdown.deadline": "2s",
    "replication.fullReconcileEvery": "2s",
    "replication.joinRetry": "300ms",
    ...opts.flags,
  };
  return ["node", ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v])];
}

function spawnOptions(opts: NodeProcessOptions): { env: Record<string, string>; netns?: string } {
  // Peers go in the environment: `geospool node` refuses a `--peers` flag (no dot in it),
  // though the configuration documents one.
  return {
    env: { GEOSPOOL_PEERS: JSON.stringify(opts.peers) },
    ...(opts.netns ? { netns: opts.netns } : {}),
  };
}

/** The node process `cli` runs, once its `/readyz` answers (killed if it never does). */
async function becomeReady(opts: NodeProcessOptions, cli: CliProcess): Promise<NodeProcess> {
  const { child, exited, stderr } = cli;
  const proc: NodeProcess = {
    id: opts.id,
    grpc: opts.grpc,
    http: opts.http,
    child,
    exited,
    stderr,
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      child.kill("SIGTERM");
      return (await exited).code;
    },
  };
  try {
    await waitReady(proc);
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return proc;
}

/** A `geospool` child process (any command). */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The tail of its stderr. */
  stderr(): string;
}

/**
 * Run `node main ...args` (inside `netns` when given) with stderr kept (its tail) and stdout piped when `stdout` is set
 * (else ignored). The process is in `running` until it exits.
 */
export function spawnCli(
  main: string,
  args: readonly string[],
  opts: { env?: Record<string, string>; stdin?: boolean; stdout?: boolean; netns?: string } = {},
): CliProcess {
  const [cmd, argv] = opts.netns
    ? ["ip", ["netns", "exec", opts.netns, process.execPath, main, ...args]]
    : [process.execPath, [main, ...args]];
  const child = spawn(cmd, argv, {
    stdio: [opts.stdin ? "pipe" : "ignore", opts.stdout ? "pipe" : "ignore", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  running.add(child);
  let log = "";
  child.stderr?.on("data", (d) => {
    log += d;
    if (log.length > 2 * KEEP_LOG_CHARS) log = log.slice(-KEEP_LOG_CHARS);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, exited, stderr: () => log.slice(-KEEP_LOG_CHARS) };
}

/** Processes started and not yet exited. */
export const running = new Set<ChildProcess>();

/** SIGKILL every process still running (for `afterAll`). */
export async function killNodeProcesses(): Promise<void> {
  const left = [...running];
  await Promise.all(
    left.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once("exit", () => resolve());
          c.kill("SIGKILL");
        }),
    ),
  );
}

async function waitReady(proc: NodeProcess): Promise<void> {
  let gone = false;
  void proc.exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`node ${proc.id} exited before it was ready:\n${proc.stderr()}`);
    const ok = await fetch(`http://${proc.http}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`node ${proc.id} not ready in ${READY_TIMEOUT_MS} ms:\n${proc.stderr()}`);
}
