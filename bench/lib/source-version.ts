import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The commit a benchmark measured, and the files under src/ that differed from it (so a
 * result from uncommitted code says so). `unknown` outside a git checkout.
 */
export async function sourceVersion(): Promise<{ commit: string; srcModified: string[] }> {
  const git = (...a: string[]) =>
    promisify(execFile)("git", a, { cwd: repo }).then((r) => r.stdout.trimEnd());
  try {
    const commit = (await git("rev-parse", "HEAD")).trim();
    const status = await git("status", "--porcelain", "--", "src");
    return { commit, srcModified: status === "" ? [] : status.split("\n").map((l) => l.slice(3)) };
  } catch {
    return { commit: "unknown", srcModified: [] };
  }
}
