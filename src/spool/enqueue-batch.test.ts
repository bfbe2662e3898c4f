import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { BATCH_ROUND_ENTRIES } from "./enqueue-batch.js";
import { Monitor, Spool, SpoolErrorCode } from "./index.js";

const dir = useTempDir();

async function newSpool(): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.create(join(dir.path, "spool"), widgetSpoolable());
}

describe("enqueueBatch", () => {
  it("stores every entry of a batch larger than one round, in order, with its data", async () => {
    const spool = await newSpool();
    const n = BATCH_ROUND_ENTRIES + 7;
    const seen: [string, number][] = [];
    const results = await spool.enqueueBatch(
      Array.from({ length: n }, (_, i) => ({
        queue: (i % 3 === 0 ? "outbox" : "inbox") as WidgetQueue,
        metadata: { id: i },
        data: `data ${i}`,
      })),
      { onVisible: (name, index) => seen.push([name, index]) },
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(seen).toHaveLength(n);
    const listed = new Set([
      ...(await spool.listNames("inbox")),
      ...(await spool.listNames("outbox")),
    ]);
    for (const [i, r] of results.entries()) {
      if (!r.ok) throw r.error;
      expect(r.entry.queue).toBe(i % 3 === 0 ? "outbox" : "inbox");
      expect(listed.has(r.entry.name)).toBe(true);
      if (i % 25 !== 0 && i !== n - 1) continue;
      const found = await spool.find(r.entry.name);
      expect(found?.metadata).toEqual({ id: i });
      expect((await spool.dataFile(r.entry.name).read()).toString()).toBe(`data ${i}`);
    }
    const names = new Set(results.map((r) => (r.ok ? r.entry.name : "")));
    expect(names.size).toBe(n);
    expect(await new Monitor(spool).fsck()).toEqual([]);
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
  });

  it("fails an entry alone, leaving nothing of it, and stores the others", async () => {
    const spool = await newSpool();
    const existing = await spool.enqueue("inbox", { id: 0 }, "first");
    const reserved = await spool.reserveName();
    const results = await spool.enqueueBatch([
      { queue: "inbox", metadata: { id: 1 }, data: "one" },
      { queue: "nowhere" as WidgetQueue, metadata: { id: 2 }, data: "two" },
      { queue: "inbox", metadata: { id: 3 }, data: "three", name: "../escape" },
      { queue: "inbox", metadata: { id: 4 }, data: "four", name: existing.name },
      { queue: "inbox", metadata: { id: 5 }, data: "five", name: "never-reserved" },
      { queue: "outbox", metadata: { id: 6 }, data: "six", name: reserved },
    ]);
    const codes = results.map((r) => (r.ok ? "ok" : r.error.code));
    expect(codes).toEqual([
      "ok",
      SpoolErrorCode.UnknownQueue,
      SpoolErrorCode.InvalidName,
      SpoolErrorCode.Io,
      SpoolErrorCode.EntryNotFound,
      "ok",
    ]);
    const third = results[3];
    expect(third?.ok === false && third.error.errno).toBe("EEXIST");
    // The live entry whose name was reused is untouched.
    expect((await spool.dataFile(existing.name).read()).toString()).toBe("first");
    expect((await spool.find(existing.name))?.metadata).toEqual({ id: 0 });
    expect(await spool.isReserved("never-reserved")).toBe(false);
    expect((await spool.find(reserved))?.queue).toBe("outbox");
    expect(await spool.listNames("inbox")).toHaveLength(2);
    expect(await new Monitor(spool).fsck()).toEqual([]);
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
    expect(await readdir(join(spool.dir, ".data"))).toHaveLength(3);
  });

  it("makes its files ahead in .pool, unless the spool says filePool: false", async () => {
    const pooled = await Spool.create(join(dir.path, "pooled"), widgetSpoolable());
    const plain = await Spool.create(join(dir.path, "plain"), widgetSpoolable({ filePool: false }));
    for (const spool of [pooled, plain]) {
      const [r] = await spool.enqueueBatch([{ queue: "inbox", metadata: { id: 1 }, data: "x" }]);
      expect(r?.ok).toBe(true);
    }
    const poolFiles = async (root: string) => {
      const dirs = await readdir(join(root, ".pool")).catch(() => []);
      return (await Promise.all(dirs.map((d) => readdir(join(root, ".pool", d))))).flat();
    };
    // The first entry's three files were made as needed, and three are made ahead.
    await vi.waitFor(async () => expect(await poolFiles(pooled.dir)).toHaveLength(3), {
      timeout: 10_000,
      interval: 5,
    });
    await pooled.close();
    await plain.close();
    expect(await readdir(plain.dir)).not.toContain(".pool");
    // Closed: the pool's files are gone with it.
    expect(await poolFiles(pooled.dir)).toEqual([]);
  });

  it("runs concurrent batches, one after another", async () => {
    const spool = await newSpool();
    for (let round = 0; round < 5; round++) {
      const r = await Promise.all(
        [0, 1, 2].map((k) =>
          spool.enqueueBatch([{ queue: "inbox", metadata: { id: round * 10 + k }, data: "x" }]),
        ),
      );
      expect(r.flat().every((x) => x.ok)).toBe(true);
    }
    expect(await spool.listNames("inbox")).toHaveLength(15);
  });

  it("uses names reserved together by reserveNames", async () => {
    const spool = await newSpool();
    const names = await spool.reserveNames(40);
    expect(new Set(names).size).toBe(40);
    for (const n of names) expect(await spool.isReserved(n)).toBe(true);
    const results = await spool.enqueueBatch(
      names.map((name, i) => ({ queue: "inbox" as const, metadata: { id: i }, data: "d", name })),
    );
    expect(results.map((r) => r.ok && r.entry.name)).toEqual(names);
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });

  it("an entry whose new name another process took goes alone under a name of its own", async () => {
    let calls = 0;
    const nameGenerator = { next: () => (calls++ === 0 ? "taken" : `fresh-${calls}`) };
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable({ nameGenerator }));
    await spool.reserveName({ next: () => "taken" });
    const seen: [string, number][] = [];
    const [r] = await spool.enqueueBatch([{ queue: "inbox", metadata: { id: 1 }, data: "d" }], {
      onVisible: (name, index) => seen.push([name, index]),
    });
    expect(r?.ok && r.entry.name).toBe("fresh-2");
    expect(seen).toEqual([["fresh-2", 0]]);
    expect(await spool.isReserved("taken")).toBe(true);
    expect(await readdir(join(spool.dir, ".data"))).toEqual(["fresh-2"]);
  });

  it("makes an entry with visibleIf visible only once it says yes; a no or a failure leaves nothing", async () => {
    const spool = await newSpool();
    let say: (yes: boolean) => void = () => undefined;
    const decided = new Promise<boolean>((resolve) => {
      say = resolve;
    });
    const [yes, no, failed] = spool.newNames(3);
    const batch = spool.enqueueBatch([
      {
        queue: "inbox",
        metadata: { id: 1 },
        data: "one",
        name: yes,
        reserve: true,
        visibleIf: decided,
      },
      {
        queue: "inbox",
        metadata: { id: 2 },
        data: "two",
        name: no,
        reserve: true,
        visibleIf: Promise.resolve(false),
      },
      {
        queue: "outbox",
        metadata: { id: 3 },
        data: "three",
        name: failed,
        reserve: true,
        visibleIf: Promise.reject(new Error("the claim failed")),
      },
    ]);
    // The first entry's files are written and durable while its decision is pending; it is
    // in no queue until then.
    const tmp = join(spool.dir, ".tmp");
    for (let i = 0; !(await readdir(tmp)).some((f) => f.startsWith(yes as string)); i++) {
      if (i > 10_000) throw new Error("the batch never wrote the undecided entry");
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await spool.listNames("inbox")).toEqual([]);
    expect(await spool.isReserved(yes as string)).toBe(true);
    say(true);
    const results = await batch;
    expect(results.map((r) => (r.ok ? "ok" : r.error.code))).toEqual([
      "ok",
      SpoolErrorCode.Withdrawn,
      SpoolErrorCode.Withdrawn,
    ]);
    expect(await spool.listNames("inbox")).toEqual([yes]);
    expect((await spool.dataFile(yes as string).read()).toString()).toBe("one");
    for (const n of [no, failed] as string[]) expect(await spool.isReserved(n)).toBe(false);
    expect(await readdir(join(spool.dir, ".data"))).toEqual([yes]);
    expect(await readdir(tmp)).toEqual([]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });

  it("an entry given a name with reserve fails when the name is taken, touching nothing", async () => {
    const spool = await newSpool();
    const held = await spool.enqueue("inbox", { id: 0 }, "first");
    const [fresh] = spool.newNames(1);
    const results = await spool.enqueueBatch([
      { queue: "inbox", metadata: { id: 1 }, data: "one", name: held.name, reserve: true },
      { queue: "inbox", metadata: { id: 2 }, data: "two", name: fresh, reserve: true },
    ]);
    expect(results.map((r) => (r.ok ? r.entry.name : r.error.code))).toEqual([
      SpoolErrorCode.NameExhausted,
      fresh,
    ]);
    expect((await spool.dataFile(held.name).read()).toString()).toBe("first");
    expect((await spool.find(held.name))?.metadata).toEqual({ id: 0 });
    expect(await spool.listNames("inbox")).toEqual([held.name, fresh].sort());
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });
});
