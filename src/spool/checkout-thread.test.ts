import { copyFile, mkdir, readdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { Monitor, Spool } from "./index.js";
import { readLeaseToken } from "./lease-token.js";
import { coreOf } from "./spool.js";

const dir = useTempDir();

/** A spool whose checkout thread runs: its checkouts and removals go through the thread. */
async function spoolWithThread(): Promise<Spool<Widget, WidgetQueue>> {
  const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
  const thread = coreOf(spool).checkouts;
  thread.start();
  for (let i = 0; !thread.running; i++) {
    if (i > 100_000) throw new Error("the checkout thread never started");
    await new Promise((resolve) => setImmediate(resolve));
  }
  return spool;
}

describe("the checkout thread", () => {
  it("checks out as the spool does: deadline, contents, lease token, one winner", async () => {
    const spool = await spoolWithThread();
    const calls = coreOf(spool).checkouts.calls;
    const e = await spool.enqueue("inbox", { id: 7 }, "seven");
    const before = Date.now();
    const got = await spool.checkoutIfPresent(e, { leaseMs: 60_000 });
    if (got.kind !== "ok") throw new Error("not checked out");
    const co = got.entry;
    expect(coreOf(spool).checkouts.calls).toBe(calls + 1);
    expect(co.contents).toEqual({ id: 7 });
    expect(co.attempts).toBe(0);
    expect(co.leaseUntil).toBeGreaterThanOrEqual(before + 60_000);
    const st = await stat(co.path);
    expect(Math.abs(st.mtimeMs - co.leaseUntil)).toBeLessThan(1);
    expect(st.ino).toBe(co.inode);
    const registry = join(spool.dir, ".registry", e.name);
    expect(await readLeaseToken(registry, co.inode)).toBe(co.leaseToken);
    // The queue file is gone: a second checkout finds nothing, and touches nothing.
    expect((await spool.checkoutIfPresent(e)).kind).toBe("not_found");
    expect(await readLeaseToken(registry, co.inode)).toBe(co.leaseToken);
    // The removal's directories are fsynced through the syncer every finish shares.
    const synced: string[] = [];
    const syncer = coreOf(spool).syncer;
    const fsync = syncer.fsync;
    syncer.fsync = async (d) => {
      await fsync(d);
      synced.push(d);
    };
    expect((await co.remove()).kind).toBe("done");
    expect(coreOf(spool).checkouts.calls).toBe(calls + 3);
    for (const d of ["inbox/.checkout", ".data", ".registry"]) {
      expect(synced).toContain(join(spool.dir, d));
    }
    // Nothing of it is left: no registry or data file, nothing checked out or waiting.
    for (const d of [".registry", ".data", "inbox/.checkout"]) {
      expect(await readdir(join(spool.dir, d))).toEqual([]);
    }
    expect(await readdir(join(spool.dir, "inbox"))).toEqual([".checkout"]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });

  it("leaves a checkout file that is not the one checked out, and reports the lease lost", async () => {
    const spool = await spoolWithThread();
    const e = await spool.enqueue("inbox", { id: 1 }, "one");
    const got = await spool.checkoutIfPresent(e, { leaseMs: 60_000 });
    if (got.kind !== "ok") throw new Error("not checked out");
    // Someone else's checkout of the entry now: another inode at the checkout path.
    const other = join(spool.dir, ".tmp", "other");
    await copyFile(got.entry.path, other);
    await rename(other, got.entry.path);
    const ino = (await stat(got.entry.path)).ino;
    expect((await got.entry.remove()).kind).toBe("lease_lost");
    expect((await stat(got.entry.path)).ino).toBe(ino);
    expect((await spool.dataFile(e.name).read()).toString()).toBe("one");
  });
});

describe("a checkout that reads the data (readDataUpTo)", () => {
  // The same answers whether the checkout runs on the thread or through the thread pool
  // (before the thread is up).
  for (const path of ["thread", "pool"] as const) {
    it(`returns data no larger than asked for, and nothing else (${path})`, async () => {
      const spool =
        path === "thread"
          ? await spoolWithThread()
          : await Spool.create(join(dir.path, "spool"), widgetSpoolable());
      const core = coreOf(spool);
      if (path === "pool") {
        // Keep the thread from starting, so every checkout here takes the pool path.
        Object.defineProperty(core.checkouts, "running", { get: () => false });
        core.checkouts.start = () => undefined;
      }
      const calls = core.checkouts.calls;
      const small = await spool.enqueue("inbox", { id: 1 }, "four");
      const empty = await spool.enqueue("inbox", { id: 2 }, "");
      const large = await spool.enqueue("inbox", { id: 3 }, "x".repeat(5));
      const plain = await spool.enqueue("inbox", { id: 4 }, "plain");
      const take = async (e: typeof small, readDataUpTo?: number) => {
        const got = await spool.checkoutIfPresent(e, { leaseMs: 60_000, readDataUpTo });
        if (got.kind !== "ok") throw new Error(`${e.name} not checked out`);
        return got.entry;
      };
      const a = await take(small, 4);
      const aData = a.takeData();
      expect(aData?.toString()).toBe("four");
      // Handed over once: the checkout keeps no reference to it.
      expect(a.takeData()).toBeUndefined();
      expect(a.contents).toEqual({ id: 1 });
      expect((await take(empty, 4)).takeData()).toEqual(Buffer.alloc(0));
      // One byte over the limit: no data, the checkout itself is whole.
      const c = await take(large, 4);
      expect(c.takeData()).toBeUndefined();
      expect(c.contents).toEqual({ id: 3 });
      expect((await c.dataFile().read()).toString()).toBe("xxxxx");
      expect((await take(plain)).takeData()).toBeUndefined();
      // A data file gone, or one that cannot be read (a directory in its place): the
      // checkout is made all the same, without data (ReadData says what is wrong).
      const gone = await spool.enqueue("inbox", { id: 5 }, "gone");
      await unlink(join(spool.dir, ".data", gone.name));
      const unreadable = await spool.enqueue("inbox", { id: 6 }, "dir");
      await unlink(join(spool.dir, ".data", unreadable.name));
      await mkdir(join(spool.dir, ".data", unreadable.name));
      for (const e of [gone, unreadable]) {
        const co = await take(e, 100);
        expect(co.takeData()).toBeUndefined();
        expect(await co.held()).toBe(true);
      }
      // Each checkout still one message to the thread (none before it runs).
      expect(core.checkouts.calls - calls).toBe(path === "thread" ? 6 : 0);
      // The data is a copy: removing the entry does not change what was handed out.
      expect((await a.remove()).kind).toBe("done");
      expect(aData?.toString()).toBe("four");
    });
  }
});
