import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const exec = promisify(execFile);
const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

describe("useTempDir / useSuiteTempDir", () => {
  it("keep the directories of a failed test and its suite, remove the rest", async () => {
    const root = await mkdtemp(join(tmpdir(), "geospool-tmp-helper-"));
    try {
      const log = join(root, "log");
      const run = await exec(
        process.execPath,
        [
          "node_modules/vitest/vitest.mjs",
          "run",
          "--config",
          "test/helpers/fixtures/vitest.config.ts",
        ],
        { env: { ...process.env, TMPDIR: root, TMP_FIXTURE_LOG: log } },
      ).then(
        () => ({ failed: false }),
        (err: { code?: number }) => ({ failed: true, code: err.code }),
      );
      expect(run).toEqual({ failed: true, code: 1 }); // the fixture's one deliberate failure
      const dirs = Object.fromEntries(
        (await readFile(log, "utf8"))
          .trim()
          .split("\n")
          .map((line) => line.split(" ") as [string, string]),
      );
      expect(Object.keys(dirs).sort()).toEqual([
        "suite-failing",
        "suite-passing",
        "test-failing",
        "test-passing",
      ]);
      for (const p of Object.values(dirs)) expect(p.startsWith(root)).toBe(true);
      expect(await exists(dirs["test-failing"]!)).toBe(true);
      expect(await exists(dirs["suite-failing"]!)).toBe(true);
      expect(await exists(dirs["test-passing"]!)).toBe(false);
      expect(await exists(dirs["suite-passing"]!)).toBe(false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
