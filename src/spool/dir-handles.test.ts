import { mkdir, readdir, readFile, readlink, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { BatchWriter, type WriterItem } from "./batch-writer.js";
import { DirectoryHandles } from "./fs-ops.js";

/**
 * Directories kept open between their fsyncs (DirectoryHandles on the event loop's side,
 * the spool threads' `syncDir`): a sync always reaches the directory its path names now,
 * a directory gone fails the sync, and only a bounded number stay open. What is open is
 * read from /proc/self/fd.
 */

const dir = useTempDir();

/** Paths (under `under`) of this process's open descriptors, " (deleted)" when removed. */
async function openUnder(under: string): Promise<string[]> {
  const found: string[] = [];
  for (const fd of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
    if (target.startsWith(under)) found.push(target);
  }
  return found.sort();
}

describe.skipIf(process.platform !== "linux")("directories kept open for fsync", () => {
  it("keeps a directory open, follows one replaced at its path, and fails for one gone", async () => {
    const handles = new DirectoryHandles();
    const a = join(dir.path, "a");
    await mkdir(a);
    await handles.fsync(a);
    await handles.fsync(a);
    expect(await openUnder(dir.path)).toEqual([a]);

    // Replaced: the next sync is of the new directory; the old one is let go.
    await rename(a, join(dir.path, "a-old"));
    await mkdir(a);
    await handles.fsync(a);
    expect(await openUnder(dir.path)).toEqual([a]);

    // Removed (the kept descriptor would still fsync the deleted one): the sync fails.
    await rm(a, { recursive: true });
    await expect(handles.fsync(a)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await openUnder(dir.path)).toEqual([]);
  });

  it("keeps at most 32 open, and every sync of many at once succeeds", async () => {
    const handles = new DirectoryHandles();
    const dirs = Array.from({ length: 40 }, (_, i) => join(dir.path, `d${i}`));
    for (const d of dirs) await mkdir(d);
    await Promise.all(dirs.map((d) => handles.fsync(d)));
    await Promise.all(dirs.map((d) => handles.fsync(d)));
    const open = await openUnder(dir.path);
    expect(open.length).toBeGreaterThan(0);
    expect(open.length).toBeLessThanOrEqual(32);
    expect(open.every((p) => dirs.includes(p))).toBe(true);
  });

  it("a spool thread's syncs follow a directory replaced at its path", async () => {
    for (const d of ["registry", "data", "tmp"]) await mkdir(join(dir.path, d));
    const item = (name: string): WriterItem => ({
      registry: join(dir.path, "registry", name),
      reserve: true,
      data: join(dir.path, "data", name),
      tmp: join(dir.path, "tmp", name),
      dataBytes: Buffer.from(`data of ${name}`),
      metadataBytes: Buffer.from(`metadata of ${name}`),
    });
    const dirs = [join(dir.path, "registry"), join(dir.path, "data")];
    const w = new BatchWriter();
    expect(await w.write([item("e1")], dirs)).toEqual([{ ok: true }]);
    expect(await openUnder(dir.path)).toEqual(dirs.slice().sort());

    await rename(join(dir.path, "data"), join(dir.path, "data-old"));
    await mkdir(join(dir.path, "data"));
    expect(await w.write([item("e2")], dirs)).toEqual([{ ok: true }]);
    expect(await readFile(join(dir.path, "data", "e2"), "utf8")).toBe("data of e2");
    expect(await openUnder(dir.path)).toEqual(dirs.slice().sort());

    await rm(join(dir.path, "data"), { recursive: true });
    const [failed] = await w.write([item("e3")], dirs);
    expect(failed?.ok).toBe(false);
    expect(await openUnder(dir.path)).toEqual([join(dir.path, "registry")]);
  });
});
