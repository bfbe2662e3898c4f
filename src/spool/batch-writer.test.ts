import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { writerLayout } from "../../test/helpers/writer-items.js";
import { BatchWriter, WRITE_GROUP_ITEMS, WRITES_IN_FLIGHT } from "./batch-writer.js";

const dir = useTempDir();

const layout = () => writerLayout(dir.path);

describe("BatchWriter", () => {
  it("groups the writes asked for while others are under way, and answers each its own", async () => {
    const item = await layout();
    const w = new BatchWriter();
    const dirs = [join(dir.path, "registry"), join(dir.path, "data")];
    const calls = 12;
    const results = await Promise.all(
      Array.from({ length: calls }, (_, i) => w.write([item(`e${i}a`), item(`e${i}b`)], dirs)),
    );
    // The first WRITES_IN_FLIGHT go at once; the rest waited and went as one request.
    expect(w.requests).toBe(WRITES_IN_FLIGHT + 1);
    expect(results).toHaveLength(calls);
    for (const [i, r] of results.entries()) {
      expect(r).toEqual([{ ok: true }, { ok: true }]);
      for (const s of ["a", "b"]) {
        expect(await readFile(join(dir.path, "data", `e${i}${s}`), "utf8")).toBe(
          `data of e${i}${s}`,
        );
        expect(await readFile(join(dir.path, "tmp", `e${i}${s}`), "utf8")).toBe(
          `metadata of e${i}${s}`,
        );
      }
    }
    // An item that fails (its name taken) fails alone, in its own write's answer.
    const again = await Promise.all([
      w.write([item("f1")], dirs),
      w.write([item("f2")], dirs),
      w.write([item("e0a"), item("f3")], dirs),
      w.write([item("f4")], dirs),
    ]);
    expect(again).toEqual([
      [{ ok: true }],
      [{ ok: true }],
      [{ ok: false, taken: true }, { ok: true }],
      [{ ok: true }],
    ]);
  });

  it("never groups past WRITE_GROUP_ITEMS items, but sends a larger write whole", async () => {
    const item = await layout();
    const w = new BatchWriter();
    const dirs = [join(dir.path, "data")];
    const half = WRITE_GROUP_ITEMS / 2 + 1;
    const batch = (tag: string, n: number) =>
      Array.from({ length: n }, (_, i) => item(`${tag}-${i}`));
    const first = Array.from({ length: WRITES_IN_FLIGHT }, (_, i) =>
      w.write(batch(`a${i}`, 1), dirs),
    );
    const results = await Promise.all([
      ...first,
      // Queued: c and d do not fit together; e, larger than a group, goes alone.
      w.write(batch("c", half), dirs),
      w.write(batch("d", half), dirs),
      w.write(batch("e", WRITE_GROUP_ITEMS + 3), dirs),
    ]);
    expect(results.map((r) => r.length)).toEqual([
      ...first.map(() => 1),
      half,
      half,
      WRITE_GROUP_ITEMS + 3,
    ]);
    expect(results.flat().every((r) => r.ok)).toBe(true);
    expect(w.requests).toBe(WRITES_IN_FLIGHT + 3);
  });
});
