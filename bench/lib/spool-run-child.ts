import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The repository root (bench/lib/ is two levels down). */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHILD = fileURLToPath(new URL("./spool-child.ts", import.meta.url));

/**
 * Run one measurement in a fresh Node process (bench/lib/spool-child.ts under tsx) with
 * UV_THREADPOOL_SIZE in its environment, and return the JSON it reports.
 */
export function runChild<T = Record<string, unknown>>(
  args: string[],
  threadpool: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, UV_THREADPOOL_SIZE: String(threadpool) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      err += s;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const line = out.split("\n").find((l) => l.startsWith("RESULT "));
      if (code !== 0 || line === undefined) {
        const why = signal ?? `exit code ${code}`;
        reject(new Error(`bench child ${args.join(" ")} failed (${why}):\n${err}${out}`));
        return;
      }
      resolve(JSON.parse(line.slice("RESULT ".length)) as T);
    });
  });
}
