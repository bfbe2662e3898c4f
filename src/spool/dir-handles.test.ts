import fs from "node:fs";
import { mkdir, readdir, readFile, readlink, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { widgetSpoolable } from "../../test/helpers/widget.js";
import { writerLayout } from "../../test/helpers/writer-items.js";
import { BatchWriter } from "./batch-writer.js";
import { DirectoryHandles } from "./fs-ops.js";
import { Spool } from "./index.js";

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

type FsyncCallback = (err: NodeJS.ErrnoException | null) => void;
const realFsync = fs.fsync;
/** Replace fs.fsync (as the spool's event-loop side calls it) until the test ends. */
function onFsync(f: (fd: number, done: FsyncCallback) => void): void {
  (fs as { fsync: unknown }).fsync = f;
}

describe.skipIf(process.platform !== "linux")("directories kept open for fsync", () => {
  afterEach(() => {
    (fs as { fsync: unknown }).fsync = realFsync;
  });

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
    const item = await writerLayout(dir.path);
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

  it("a failed fsync of a kept descriptor is reported, not retried on a fresh one", async () => {
    const handles = new DirectoryHandles();
    const a = join(dir.path, "a");
    await mkdir(a);
    await handles.fsync(a);
    let calls = 0;
    onFsync((_fd, done) => {
      calls++;
      done(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }));
    });
    await expect(handles.fsync(a)).rejects.toMatchObject({ code: "EIO" });
    expect(calls).toBe(1);
    expect(await openUnder(dir.path)).toEqual([]);
    (fs as { fsync: unknown }).fsync = realFsync;
    await handles.fsync(a);
    expect(await openUnder(dir.path)).toEqual([a]);
  });

  it("a descriptor let go while its fsync runs is closed once the fsync is done", async () => {
    const handles = new DirectoryHandles();
    const a = join(dir.path, "a");
    await mkdir(a);
    await handles.fsync(a);
    let release: () => void = () => undefined;
    onFsync((fd, done) => {
      release = () => realFsync(fd, done);
    });
    const syncing = handles.fsync(a);
    handles.close();
    // Not closed under the fsync (its number could be another file's by the time it runs).
    expect(await openUnder(dir.path)).toEqual([a]);
    release();
    await syncing;
    expect(await openUnder(dir.path)).toEqual([]);
  });

  it("a sync that opened its descriptor before a close does not keep it", async () => {
    const handles = new DirectoryHandles();
    const a = join(dir.path, "a");
    await mkdir(a);
    let release: () => void = () => undefined;
    let asked: () => void = () => undefined;
    const fsyncAsked = new Promise<void>((resolve) => {
      asked = resolve;
    });
    onFsync((fd, done) => {
      release = () => realFsync(fd, done);
      asked();
    });
    const syncing = handles.fsync(a);
    await fsyncAsked;
    handles.close();
    release();
    await syncing;
    expect(await openUnder(dir.path)).toEqual([]);
  });

  it("Spool.close lets go of every directory the spool and its threads kept open", async () => {
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
    const [batched] = await spool.enqueueBatch([
      { queue: "inbox", metadata: { id: 1 }, data: "a" },
    ]);
    expect(batched?.ok).toBe(true);
    const single = await spool.enqueue("inbox", { id: 2 }, "b");
    await (await spool.checkout(single)).remove();
    expect((await openUnder(spool.dir)).length).toBeGreaterThan(0);
    await spool.close();
    expect(await openUnder(spool.dir)).toEqual([]);
    // Still usable.
    const again = await spool.enqueueBatch([{ queue: "inbox", metadata: { id: 3 }, data: "c" }]);
    expect(again[0]?.ok).toBe(true);
    await spool.close();
    expect(await openUnder(spool.dir)).toEqual([]);
  });
});
