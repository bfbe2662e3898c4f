import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { writerLayout } from "../../test/helpers/writer-items.js";
import {
  BatchWriter,
  POOL_MAX,
  POOL_STALE_MS,
  WRITE_GROUP_ITEMS,
  WRITES_IN_FLIGHT,
  type WriterItem,
} from "./batch-writer.js";

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

  describe("the file pool", () => {
    /** The writer's pool files (its one directory under `pool`): path → inode. */
    const poolFiles = async (pool: string): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      for (const d of await readdir(pool).catch(() => [])) {
        for (const f of await readdir(join(pool, d)).catch(() => [])) {
          out.set(join(pool, d, f), (await stat(join(pool, d, f))).ino);
        }
      }
      return out;
    };
    const filled = async (pool: string, n: number) => {
      await vi.waitFor(async () => expect((await poolFiles(pool)).size).toBeGreaterThanOrEqual(n), {
        timeout: 10_000,
        interval: 5,
      });
      return poolFiles(pool);
    };
    const ino = async (p: string) => (await stat(p)).ino;
    /** `f` with a writer whose pool is `pool`, and the maker of its items; then closed. */
    const withPoolWriter = async (
      pool: string,
      f: (w: BatchWriter, item: (name: string) => WriterItem) => Promise<void>,
    ) => {
      const item = await layout();
      const w = new BatchWriter(pool);
      try {
        await f(w, item);
      } finally {
        await w.close();
      }
    };

    it("makes the files an entry needs ahead, and links them in under its names", async () => {
      const pool = join(dir.path, ".pool");
      const dirs = [join(dir.path, "registry"), join(dir.path, "data")];
      await withPoolWriter(pool, async (w, item) => {
        // The first entry's three files were made as needed; the pool makes three more.
        expect(await w.write([item("a")], dirs)).toEqual([{ ok: true }]);
        const ahead = await filled(pool, 3);
        expect(new Set([...ahead.keys()].map((p) => dirname(p))).size).toBe(1);
        expect(await w.write([item("b")], dirs)).toEqual([{ ok: true }]);
        const used = [
          await ino(join(dir.path, "registry", "b")),
          await ino(join(dir.path, "data", "b")),
          await ino(join(dir.path, "tmp", "b")),
        ];
        expect(new Set(used)).toEqual(new Set(ahead.values()));
        // Each has one name again, and the entry's contents.
        for (const f of ["registry", "data", "tmp"]) {
          expect((await stat(join(dir.path, f, "b"))).nlink).toBe(1);
        }
        expect(await readFile(join(dir.path, "data", "b"), "utf8")).toBe("data of b");
        expect(await readFile(join(dir.path, "tmp", "b"), "utf8")).toBe("metadata of b");
        expect(await readFile(join(dir.path, "registry", "b"), "utf8")).toBe("");
        // Reserving names takes from the pool too.
        const next = await filled(pool, 3);
        expect(await w.reserve([join(dir.path, "registry", "c")])).toEqual(["created"]);
        expect([...next.values()]).toContain(await ino(join(dir.path, "registry", "c")));
      });
      // Closed: its pool's files are gone.
      expect((await poolFiles(pool)).size).toBe(0);
    });

    it("gives a file taken from the pool fresh times, however long it waited", async () => {
      const pool = join(dir.path, ".pool");
      await withPoolWriter(pool, async (w, item) => {
        await w.write([item("a")], [join(dir.path, "data")]);
        const ahead = await filled(pool, 3);
        const hourAgo = (Date.now() - 3_600_000) / 1000;
        for (const f of ahead.keys()) await utimes(f, hourAgo, hourAgo);
        const before = Date.now() - 1000;
        expect(await w.write([item("b")], [join(dir.path, "data")])).toEqual([{ ok: true }]);
        for (const f of ["registry", "data", "tmp"]) {
          const st = await stat(join(dir.path, f, "b"));
          expect(ahead.has(join(dir.path, f, "b"))).toBe(false);
          expect([...ahead.values()]).toContain(st.ino);
          expect(st.mtimeMs).toBeGreaterThan(before);
        }
      });
    });

    it("leaves no pool behind when closed while its thread is still starting", async () => {
      const item = await layout();
      const pool = join(dir.path, ".pool");
      const w = new BatchWriter(pool);
      const written = w.write([item("a"), item("b")], [join(dir.path, "data")]);
      await w.close();
      expect(await written).toEqual([{ ok: true }, { ok: true }]);
      expect(await readdir(pool).catch(() => [])).toEqual([]);
    });

    it("leaves a pool file where it was when the name is taken, and never makes more than POOL_MAX", async () => {
      const pool = join(dir.path, ".pool");
      const dirs = [join(dir.path, "data")];
      await withPoolWriter(pool, async (w, item) => {
        const many = Array.from({ length: POOL_MAX }, (_, i) => item(`m${i}`));
        expect((await w.write(many, dirs)).every((r) => r.ok)).toBe(true);
        const ahead = await filled(pool, POOL_MAX);
        // Taken names (registry, then data): nothing of the pool is used up.
        await writeFile(join(dir.path, "registry", "t1"), "");
        await writeFile(join(dir.path, "data", "t2"), "someone's");
        const [t1, t2] = await w.write([item("t1"), item("t2")], dirs);
        expect(t1).toEqual({ ok: false, taken: true });
        expect(t2).toMatchObject({ ok: false, step: "write data", errno: "EEXIST" });
        expect(await readFile(join(dir.path, "data", "t2"), "utf8")).toBe("someone's");
        // t2's registry file came from the pool and went with the failed entry.
        await expect(stat(join(dir.path, "registry", "t2"))).rejects.toMatchObject({
          code: "ENOENT",
        });
        const after = await filled(pool, POOL_MAX);
        expect(after.size).toBe(POOL_MAX);
        const kept = [...ahead.keys()].filter((p) => after.has(p));
        expect(kept.length).toBe(POOL_MAX - 1);
      });
    });

    it("makes files as needed when its pool directory was removed, then a new pool", async () => {
      const pool = join(dir.path, ".pool");
      const dirs = [join(dir.path, "data")];
      await withPoolWriter(pool, async (w, item) => {
        await w.write([item("a")], dirs);
        await filled(pool, 3);
        await rm(pool, { recursive: true });
        expect(await w.write([item("b"), item("c")], dirs)).toEqual([{ ok: true }, { ok: true }]);
        expect(await readFile(join(dir.path, "data", "c"), "utf8")).toBe("data of c");
        // b and c needed six files: the new pool makes six (all of them, before d takes the
        // last made).
        const again = await filled(pool, 6);
        expect(await w.write([item("d")], dirs)).toEqual([{ ok: true }]);
        expect([...again.values()]).toContain(await ino(join(dir.path, "data", "d")));
      });
    });

    it("removes the pool directories other threads left behind, once stale", async () => {
      const pool = join(dir.path, ".pool");
      for (const d of ["stale", "recent"]) {
        await mkdir(join(pool, d), { recursive: true });
        await writeFile(join(pool, d, "0"), "");
      }
      const old = (Date.now() - POOL_STALE_MS - 60_000) / 1000;
      await utimes(join(pool, "stale"), old, old);
      await withPoolWriter(pool, async (w, item) => {
        await w.write([item("a")], [join(dir.path, "data")]);
        await vi.waitFor(async () => expect((await readdir(pool)).sort()).not.toContain("stale"), {
          timeout: 10_000,
          interval: 5,
        });
        expect(await readdir(join(pool, "recent"))).toEqual(["0"]);
      });
    });
  });
});
