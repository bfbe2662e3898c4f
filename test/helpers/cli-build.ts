import { spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { inject } from "vitest";
import { isErrno } from "../../src/common/errno.js";
import { type ProcessResult, runProcess } from "./run-process.js";

const SRC = fileURLToPath(new URL("../../src", import.meta.url));
const NODE_MODULES = fileURLToPath(new URL("../../node_modules", import.meta.url));
/** main.js of a build, relative to the build directory. */
const MAIN = "node/cli/main.js";

/**
 * Compile the CLI (no type check: `npm test` type-checks separately) into a temp dir, with
 * the generated protobuf code and SQL it reads at run time, so child processes start fast
 * with plain node. Returns the path of main.js and a cleanup.
 *
 * In the integration project the build is shared by every file of the run (the first file
 * that asks builds it into the suite directory of test/integration-setup.ts; files that
 * build at the same time keep the first one renamed into place), and cleanup leaves it.
 */
export async function buildCli(): Promise<{ main: string; cleanup(): Promise<void> }> {
  const suiteDir = inject("geospoolSuiteDir");
  if (suiteDir === undefined) return compileCli(tmpdir());
  const shared = { main: join(suiteDir, "cli", MAIN), cleanup: async () => undefined };
  const built = await stat(shared.main).catch(() => undefined);
  if (built) return shared;
  const own = await compileCli(suiteDir);
  try {
    await rename(own.dir, join(suiteDir, "cli"));
  } catch (err) {
    // Another file of the run put its build there first.
    if (!isErrno(err, "EEXIST", "ENOTEMPTY")) throw err;
    await own.cleanup();
  }
  return shared;
}

async function compileCli(
  parent: string,
): Promise<{ dir: string; main: string; cleanup(): Promise<void> }> {
  const build = await mkdtemp(join(parent, "geospool-cli-build-"));
  const tsc = join(
    dirname(createRequire(import.meta.url).resolve("typescript/package.json")),
    "bin/tsc",
  );
  const child = spawn(process.execPath, [
    tsc,
    "--ignoreConfig",
    "--noCheck",
    "--skipLibCheck",
    "--outDir",
    build,
    "--rootDir",
    SRC,
    "--module",
    "NodeNext",
    "--moduleResolution",
    "NodeNext",
    "--target",
    "ES2022",
    "--types",
    "node",
    join(SRC, "node/cli/main.ts"),
  ]);
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  await new Promise((r) => child.on("close", r));
  const main = join(build, MAIN);
  await readFile(main).catch(() => {
    throw new Error(`compiling the CLI failed:\n${out}`);
  });
  await cp(join(SRC, "proto/generated"), join(build, "proto/generated"), { recursive: true });
  await cp(join(SRC, "db/sql"), join(build, "db/sql"), { recursive: true });
  await writeFile(join(build, "package.json"), '{"type":"module"}\n');
  await symlink(NODE_MODULES, join(build, "node_modules"));
  return { dir: build, main, cleanup: () => rm(build, { recursive: true, force: true }) };
}

export type CliResult = ProcessResult;

/** Run the built CLI (`main` from `buildCli`) to completion, with `input` on its stdin. */
export function runBuiltCli(
  main: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<CliResult> {
  return runProcess(process.execPath, [main, ...args], options);
}

/** The `{"error":{code,message}}` line a `--json` command printed last on stderr. */
export function jsonError(r: CliResult): { code: string; message: string } {
  const lines = r.stderr.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!).error;
}
