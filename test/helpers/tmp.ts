import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
