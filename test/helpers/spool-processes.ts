import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { afterAll, beforeAll } from "vitest";
import type { FromWorker, ToWorker, WorkerConfig } from "./spool-worker-config.js";

const WORKER_SOURCE = join(dirname(fileURLToPath(import.meta.url)), "spool-worker.ts");

/**
 * Bundle spool-worker.ts (with src/spool) into one ESM file in `outDir`.
 * Plain node starts it in ~70 ms where `node --import tsx` takes ~300 ms, which matters
 * when a test starts hundreds of workers.
 */
export async function bundleSpoolWorker(outDir: string): Promise<string> {
  const outfile = join(outDir, "spool-worker.mjs");
  await build({
    entryPoints: [WORKER_SOURCE],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
    // chokidar's CommonJS-free, but keep `require` available for anything that asks.
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
  });
  return outfile;
}

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A worker process: its messages, its exit, and its stderr for diagnostics. */
export class WorkerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<WorkerExit>;
  private stderrText = "";
  private readonly seen: FromWorker[] = [];
  private readonly waiters: Array<{ kind: FromWorker["kind"]; resolve: () => void }> = [];

  /**
   * A worker running `config`; or, given "standby", a worker that boots and waits for
   * `start` (its config) before it opens anything.
   */
  constructor(
    bundle: string,
    config: WorkerConfig | "standby",
    options: { uid?: number; gid?: number } = {},
  ) {
    const arg = config === "standby" ? config : JSON.stringify(config);
    this.child = spawn(process.execPath, [bundle, arg], {
      stdio: ["ignore", "inherit", "pipe", "ipc"],
      ...options,
    });
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (chunk: string) => {
      this.stderrText += chunk;
    });
    this.child.on("message", (m: FromWorker) => {
      this.seen.push(m);
      for (const w of this.waiters.filter((x) => x.kind === m.kind)) w.resolve();
    });
    this.exited = new Promise((resolve, reject) => {
      this.child.once("error", reject);
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
    });
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** Resolves when the worker sends `kind`; rejects if it exits first. */
  async waitFor(kind: FromWorker["kind"]): Promise<void> {
    if (this.seen.some((m) => m.kind === kind)) return;
    const got = new Promise<void>((resolve) => this.waiters.push({ kind, resolve }));
    const early = this.exited.then((e) => {
      throw new Error(
        `worker exited (code ${e.code}, signal ${e.signal}) before "${kind}": ${this.stderrText}`,
      );
    });
    await Promise.race([got, early]);
  }

  /** Give a standby worker its config, once it has booted. */
  async start(config: WorkerConfig): Promise<void> {
    await this.waitFor("standby");
    this.send({ kind: "start", config });
  }

  send(message: ToWorker): void {
    this.child.send(message);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }

  /** Wait for a clean exit (code 0); otherwise throw with the worker's stderr. */
  async succeeded(): Promise<void> {
    const e = await this.exited;
    if (e.code !== 0) {
      throw new Error(`worker failed (code ${e.code}, signal ${e.signal}): ${this.stderrText}`);
    }
  }
}

/** Read a worker's JSON result file. */
export async function readResult<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, "utf8")) as T;
}

/** Kill every worker still running (for finally blocks). */
export async function killAll(workers: readonly WorkerProcess[]): Promise<void> {
  for (const w of workers) {
    if (w.child.exitCode === null && w.child.signalCode === null) w.kill("SIGKILL");
  }
  await Promise.all(workers.map((w) => w.exited.catch(() => undefined)));
}

/**
 * Bundle the spool worker once for the calling test file (beforeAll), remove it afterwards.
 * `path` is the bundle to run with plain node.
 */
export function useSpoolWorkerBundle(): { readonly path: string } {
  let dir: string | undefined;
  let bundle: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "geospool-worker-"));
    bundle = await bundleSpoolWorker(dir);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    get path(): string {
      if (!bundle) throw new Error("useSpoolWorkerBundle: not built yet");
      return bundle;
    },
  };
}
