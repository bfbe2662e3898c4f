import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";

/**
 * A fresh temporary directory per test. Removed when the test passes; kept (and its path
 * printed) when it fails, so the state can be inspected.
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
      await rm(path, { recursive: true, force: true });
    },
  };
}

/**
 * Register a fresh temporary directory for each test of the calling file (kept and printed
 * when the test fails). Returns an object whose `path` is the current test's directory.
 */
export function useTempDir(prefix?: string): { readonly path: string } {
  let current: Awaited<ReturnType<typeof tempDir>> | undefined;
  let failed = false;
  beforeEach(async (ctx) => {
    current = await tempDir(prefix);
    failed = false;
    ctx.onTestFailed(() => {
      failed = true;
    });
  });
  afterEach(async () => {
    await current?.cleanup(failed);
  });
  return {
    get path(): string {
      if (!current) throw new Error("useTempDir: no test is running");
      return current.path;
    },
  };
}
