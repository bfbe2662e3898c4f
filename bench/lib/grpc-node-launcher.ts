/** Starting and stopping the node process of bench/grpc.ts. */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "esbuild";

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
 * replace the defaults' (e.g. `{ spool: ..., cache: ... }`); `nodeArgs`: flags for node;
 * `script`: a built script (`buildNodeProcess`) instead of the sources under tsx.
 */
export async function startNodeProcess(
  spoolDir: string,
  postgresUrl: string,
  threadpool?: string,
  config?: Record<string, unknown>,
  nodeFlags: string[] = [],
  built?: string,
): Promise<NodeProcess> {
  const script = join(dirname(fileURLToPath(import.meta.url)), "grpc-node-process.ts");
  const nodeArgs =
    built === undefined
      ? [...nodeFlags, "--import", "tsx", script, spoolDir]
      : [...nodeFlags, built, spoolDir];
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

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The node process script as plain JavaScript, running the node as it ships: `npm run
 * build`'s compiler output in dist/ (built here first), with the bench's own helpers
 * bundled by esbuild (into node_modules/.cache, so its packages resolve) and every import
 * of src/ pointed at dist/. No tsx: it adds about 50 MB of RSS and source-mapped stack
 * traces (docs/benchmarks.md).
 */
export async function buildNodeProcess(): Promise<string> {
  const outDir = join(repo, "node_modules", ".cache", "geospool-bench");
  await promisify(execFile)("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: repo });
  await promisify(execFile)("node", ["scripts/copy-assets.mjs"], { cwd: repo });
  const outfile = join(outDir, "grpc-node-process.mjs");
  await build({
    entryPoints: [join(repo, "bench", "lib", "grpc-node-process.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "warning",
    plugins: [
      {
        name: "src-to-dist",
        setup(b) {
          b.onResolve({ filter: /\/src\// }, (args) => {
            const source = resolve(args.resolveDir, args.path);
            const rel = source.slice(join(repo, "src").length + 1);
            return { path: join(repo, "dist", rel), external: true };
          });
        },
      },
    ],
  });
  return outfile;
}
