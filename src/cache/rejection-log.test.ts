import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import type { RejectedUpload } from "./cache-writer.js";
import { REJECTED_QUEUE, RejectionLog } from "./rejection-log.js";

const dir = useTempDir("geospool-rejection-log-");
const HASH = "l493h11hsb577v1lhgwxzcmxh4q2m02w";

function rejection(at: number, message = `at ${at}`): RejectedUpload {
  return {
    hashPart: HASH,
    storePath: `/nix/store/${HASH}-geo-app`,
    reason: "file_size",
    message,
    by: "ci",
    at,
    narinfo: Buffer.from(`StorePath: /nix/store/${HASH}-geo-app\n# ${at}\n`),
  };
}

describe("the rejection log", () => {
  it("keeps each rejection with its narinfo on disk, read back by another opening", async () => {
    const path = join(dir.path, "rejected");
    const log = await RejectionLog.open(path, { maxEntries: 10, maxAgeMs: 60_000 }, () => 1000);
    await log.keep(rejection(1000));
    await log.keep({
      ...rejection(1001),
      storePath: undefined,
      reason: "unparsable",
      narinfo: undefined,
    });
    const kept = await RejectionLog.read(path);
    expect(kept.map(({ entry: _, ...r }) => r)).toEqual([
      {
        v: 1,
        hashPart: HASH,
        storePath: `/nix/store/${HASH}-geo-app`,
        reason: "file_size",
        message: "at 1000",
        by: "ci",
        at: 1000,
      },
      { v: 1, hashPart: HASH, reason: "unparsable", message: "at 1001", by: "ci", at: 1001 },
    ]);
    expect((await RejectionLog.narinfo(path, kept[0]!.entry)).toString()).toBe(
      `StorePath: /nix/store/${HASH}-geo-app\n# 1000\n`,
    );
    expect((await RejectionLog.narinfo(path, kept[1]!.entry)).length).toBe(0);
    expect(await RejectionLog.read(join(dir.path, "none"))).toEqual([]);
  });

  it("keeps at most maxEntries, dropping the oldest", async () => {
    const path = join(dir.path, "rejected");
    const log = await RejectionLog.open(path, { maxEntries: 3, maxAgeMs: 60_000 }, () => 1000);
    for (let i = 0; i < 5; i++) await log.keep(rejection(1000, `r${i}`));
    expect((await log.list()).map((r) => r.message)).toEqual(["r2", "r3", "r4"]);
    expect(await readdir(join(path, REJECTED_QUEUE))).toHaveLength(3 + 1); // + .checkout
  });

  it("drops rejections older than maxAgeMs when the next one is kept", async () => {
    const path = join(dir.path, "rejected");
    let now = 0;
    const log = await RejectionLog.open(path, { maxEntries: 100, maxAgeMs: 1000 }, () => now);
    await log.keep(rejection(0, "old"));
    await log.keep(rejection(500, "younger"));
    now = 1200;
    await log.keep(rejection(1200, "new"));
    expect((await log.list()).map((r) => r.message)).toEqual(["younger", "new"]);
    now = 5000;
    expect(await log.prune()).toBe(2);
    expect(await log.list()).toEqual([]);
  });
});
