import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { walkDir } from "./dir-walk.js";
import type { Throttle } from "./throttle.js";

const dir = useTempDir();

describe("walkDir", () => {
  it("visits every name once, a slice at a time, each slice read in one turn of the throttle", async () => {
    const path = join(dir.path, "d");
    await mkdir(path);
    const names = Array.from({ length: 1_100 }, (_, i) => `n${i}`);
    for (const n of names) await writeFile(join(path, n), "");
    let turns = 0;
    let inTurn = false;
    const throttle: Throttle = {
      async run(op) {
        turns++;
        inTurn = true;
        try {
          return await op();
        } finally {
          inTurn = false;
        }
      },
    };
    const slices: number[] = [];
    const seen: string[] = [];
    await walkDir(
      throttle,
      path,
      (slice) => {
        // Visited outside the throttle: a slow visit holds no slot.
        expect(inTurn).toBe(false);
        slices.push(slice.length);
        seen.push(...slice);
      },
      500,
    );
    expect(slices).toEqual([500, 500, 100]);
    expect(seen.sort()).toEqual(names.sort());
    // The open, then one turn per slice.
    expect(turns).toBe(1 + 3);
  });

  it("an empty directory: no visit", async () => {
    const path = join(dir.path, "empty");
    await mkdir(path);
    const visits: unknown[] = [];
    await walkDir({ run: (op) => op() }, path, (slice) => void visits.push(slice));
    expect(visits).toEqual([]);
  });

  it("a missing directory fails as readdir does", async () => {
    await expect(
      walkDir({ run: (op) => op() }, join(dir.path, "none"), () => undefined),
    ).rejects.toMatchObject({ code: "ENOENT" });
  });
});
