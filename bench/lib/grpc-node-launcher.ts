/** Starting and stopping the node process of bench/grpc.ts. */
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export interface NodeProcess {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  pid: number;
  /** Resolves with the rest of the next stdout line that starts with `prefix `. */
  nextLine(prefix: string): Promise<string>;
}

/**
 * The geospool node in its own process (grpc-node-process.ts); resolves once it listens.
 * `threadpool`: its UV_THREADPOOL_SIZE (default: Node's); `config`: top-level sections that
 * replace the defaults' (e.g. `{ spool: ..., cache: ... }`); `nodeArgs`: flags for node.
 */
export async function startNodeProcess(
  spoolDir: string,
  postgresUrl: string,
  threadpool?: string,
  config?: Record<string, unknown>,
  nodeFlags: string[] = [],
): Promise<NodeProcess> {
  const script = join(dirname(fileURLToPath(import.meta.url)), "grpc-node-process.ts");
  const nodeArgs = [...nodeFlags, "--import", "tsx", script, spoolDir];
  const threads = threadpool;
  const env = { ...process.env };
  if (threads) env.UV_THREADPOOL_SIZE = threads;
  else delete env.UV_THREADPOOL_SIZE;
  if (config) env.GEOSPOOL_BENCH_CONFIG = JSON.stringify(config);
  else delete env.GEOSPOOL_BENCH_CONFIG;
  const child = spawn(process.execPath, [...nodeArgs, postgresUrl], {
    stdio: ["pipe", "pipe", "inherit"],
    env,
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const waiting: Array<{ prefix: string; resolve: (rest: string) => void }> = [];
  lines.on("line", (line) => {
    const i = waiting.findIndex((w) => line.startsWith(`${w.prefix} `));
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(line.slice(line.indexOf(" ") + 1));
  });
  const nextLine = (prefix: string) =>
    new Promise<string>((res) => waiting.push({ prefix, resolve: res }));
  const ready = await Promise.race([
    nextLine("READY").then(
      (rest) => JSON.parse(rest) as { grpcPort: number; httpPort: number; pid: number },
    ),
    new Promise<never>((_, rej) =>
      child.once("exit", (code) =>
        rej(new Error(`the node process exited (${code}) before READY`)),
      ),
    ),
  ]);
  return { child, nextLine, ...ready };
}

/** Close its stdin (it stops the node and exits); SIGKILL after 15 s. */
export async function stopNodeProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
