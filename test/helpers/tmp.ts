import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, type RunnerTestSuite } from "vitest";

/**
 * A fresh temporary directory. `cleanup(failed)` removes it, or keeps it and prints where it
 * is when `failed`. Prefer `useTempDir` / `useSuiteTempDir`, which know whether a test failed.
 */
export async function tempDir(prefix = "geospool-"): Promise<{
  path: string;
  cleanup(failed: boolean): Promise<void>;
}> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return {
    path,
    async cleanup(failed: boolean) {
      if (failed) {
        console.error(`test failed; state kept in ${path}`);
        return;
      }
      // Retried: a spool's batch writer thread may still be making its pool's last files.
      await rm(path, { recursive: true, force: true, maxRetries: 10, retryDelay: 10 });
    },
  };
}

/**
 * A fresh temporary directory for each test of the calling file or `describe`: removed when
 * the test passes, kept (and its path printed) when it fails. Returns an object whose `path`
 * is the current test's directory.
 *
 * The test's outcome is read in `afterEach` from `task.result`, which vitest sets before the
 * `afterEach` hooks run; `onTestFailed` callbacks run only after them, too late to keep it.
 */
export function useTempDir(prefix?: string): { readonly path: string } {
  let current: Awaited<ReturnType<typeof tempDir>> | undefined;
  beforeEach(async () => {
    current = await tempDir(prefix);
  });
  afterEach(async ({ task }) => {
    await current?.cleanup(task.result?.state === "fail");
    current = undefined;
  });
  return {
    get path(): string {
      if (!current) throw new Error("useTempDir: no test is running");
      return current.path;
    },
  };
}

/**
 * One temporary directory shared by every test of the calling file or `describe`, made
 * before its other `beforeAll` hooks (call this first) and removed after its other `afterAll`
 * hooks (vitest runs them in reverse), unless a test or a hook of the suite failed: then it
 * is kept and its path printed.
 */
export function useSuiteTempDir(prefix?: string): { readonly path: string } {
  let dir: Awaited<ReturnType<typeof tempDir>> | undefined;
  beforeAll(async () => {
    dir = await tempDir(prefix);
  });
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a hook's first parameter as fixtures
  afterAll(async ({}, suite) => {
    await dir?.cleanup(suiteFailed(suite));
    dir = undefined;
  });
  return {
    get path(): string {
      if (!dir) throw new Error("useSuiteTempDir: used outside its suite's hooks and tests");
      return dir.path;
    },
  };
}

/** A test or hook of the suite (or of a suite inside it) failed. */
export function suiteFailed(suite: Pick<RunnerTestSuite, "result" | "tasks">): boolean {
  if (suite.result?.state === "fail") return true;
  return suite.tasks.some((t) =>
    t.type === "suite" ? suiteFailed(t) : t.result?.state === "fail",
  );
}
