import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { listingsOf } from "../../test/helpers/listings.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { discoverQueues, Expert, Spool, SpoolError, SpoolErrorCode } from "./index.js";

const dir = useTempDir();

async function newSpool(): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.create(join(dir.path, "spool"), widgetSpoolable());
}

describe("create and load", () => {
  it("creates every directory and loads it back", async () => {
    const spool = await newSpool();
    const names = (await readdir(spool.dir)).sort();
    expect(names).toEqual([".data", ".registry", ".spool-id", ".tmp", "dead", "inbox", "outbox"]);
    expect(await readdir(join(spool.dir, "inbox"))).toEqual([".checkout"]);
    await Spool.load(spool.dir, widgetSpoolable());
  });

  it("refuses a non-empty directory that is not a spool", async () => {
    const other = join(dir.path, "home");
    await mkdir(other);
    await writeFile(join(other, "precious.txt"), "keep me");
    const err = await Spool.load(other, widgetSpoolable(), { createIfMissing: true }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(SpoolError);
    expect(err.code).toBe(SpoolErrorCode.NotASpool);
    expect(await readdir(other)).toEqual(["precious.txt"]);
  });

  it("refuses a missing directory without createIfMissing", async () => {
    const err = await Spool.load(join(dir.path, "nope"), widgetSpoolable()).catch((e) => e);
    expect(err.code).toBe(SpoolErrorCode.MissingDirectory);
  });

  it("refuses a spool missing a queue directory unless asked to create it", async () => {
    const spool = await newSpool();
    const more = widgetSpoolable({ queues: ["inbox", "outbox", "dead", "extra"] as never });
    const err = await Spool.load(spool.dir, more).catch((e) => e);
    expect(err.code).toBe(SpoolErrorCode.MissingDirectory);
    await Spool.load(spool.dir, more, { createIfMissing: true });
    expect(await readdir(join(spool.dir, "extra"))).toEqual([".checkout"]);
  });
});

describe("discoverQueues", () => {
  it("finds the queue directories of a spool, and none where there is no spool", async () => {
    const spool = await newSpool();
    await mkdir(join(spool.dir, "not-a-queue"));
    expect(await discoverQueues(spool.dir)).toEqual(["dead", "inbox", "outbox"]);
    expect(await discoverQueues(join(dir.path, "nowhere"))).toEqual([]);
  });
});

describe("identity", () => {
  it("is made with the spool, kept by every load, and new when the spool is made again", async () => {
    const spool = await newSpool();
    const made = spool.identity;
    expect(made?.made).toBe("created");
    expect(made?.id).toMatch(/^[0-9a-f]{32}$/);
    expect((await readFile(join(spool.dir, ".spool-id"), "utf8")).trim()).toBe(made?.id);
    const again = await Spool.load(spool.dir, widgetSpoolable(), { createIfMissing: true });
    expect(again.identity).toEqual({ id: made?.id, made: "loaded" });
    await rm(spool.dir, { recursive: true });
    const remade = await newSpool();
    expect(remade.identity?.made).toBe("created");
    expect(remade.identity?.id).not.toBe(made?.id);
  });

  it("is adopted by a spool made before identities, once", async () => {
    const spool = await newSpool();
    await rm(join(spool.dir, ".spool-id"));
    const adopted = await Spool.load(spool.dir, widgetSpoolable());
    expect(adopted.identity?.made).toBe("adopted");
    const later = await Spool.load(spool.dir, widgetSpoolable());
    expect(later.identity).toEqual({ id: adopted.identity?.id, made: "loaded" });
  });

  it("refuses a malformed identity file, naming it, and leaves it alone", async () => {
    const spool = await newSpool();
    await writeFile(join(spool.dir, ".spool-id"), "not an id\n");
    const err = await Spool.load(spool.dir, widgetSpoolable()).catch((e) => e);
    expect(err).toBeInstanceOf(SpoolError);
    expect(err.code).toBe(SpoolErrorCode.NotASpool);
    expect(err.message).toContain(join(spool.dir, ".spool-id"));
    expect(await readFile(join(spool.dir, ".spool-id"), "utf8")).toBe("not an id\n");
  });

  it("a directory holding only an identity (a creation cut short) is still new", async () => {
    const spool = await newSpool();
    const id = spool.identity?.id;
    for (const d of await readdir(spool.dir)) {
      if (d !== ".spool-id") await rm(join(spool.dir, d), { recursive: true });
    }
    const resumed = await newSpool();
    expect(resumed.identity).toEqual({ id, made: "created" });
    expect(Spool.loadUnsafe(spool.dir, widgetSpoolable()).identity).toBeUndefined();
  });
});

describe("enqueue, list, checkout, save, remove", () => {
  it("round-trips metadata and data", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1, note: "hi" }, Buffer.from("payload"));
    expect(await e.direct.contents()).toEqual({ id: 1, note: "hi" });
    expect((await spool.list("inbox")).map((x) => x.name)).toEqual([e.name]);
    const co = await spool.checkout(e, { leaseMs: 60_000 });
    expect(co.contents).toEqual({ id: 1, note: "hi" });
    expect((await co.dataFile().read()).toString()).toBe("payload");
    expect(await spool.list("inbox")).toEqual([]);
    co.update((m) => ({ ...m, note: "done" }));
    expect(await co.save("outbox")).toEqual({ kind: "done" });
    const [moved] = await spool.list("outbox");
    expect(await moved!.direct.contents()).toEqual({ id: 1, note: "done" });
    const co2 = await spool.checkout(moved!);
    expect(await co2.remove()).toEqual({ kind: "done" });
    for (const d of [".registry", ".data", ".tmp", "outbox/.checkout"]) {
      expect(await readdir(join(spool.dir, d))).toEqual([]);
    }
  });

  it("streams data from an async iterable", async () => {
    const spool = await newSpool();
    async function* chunks() {
      for (let i = 0; i < 100; i++) yield Buffer.alloc(10_000, i);
    }
    const e = await spool.enqueue("inbox", { id: 2 }, chunks());
    expect((await e.dataFile().stat()).size).toBe(1_000_000);
  });

  it("the loser of a checkout race gets not_found", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 3 }, "x");
    const results = await Promise.all(
      Array.from({ length: 8 }, () => spool.checkoutIfPresent(spool.entry("inbox", e.name))),
    );
    expect(results.filter((r) => r.kind === "ok")).toHaveLength(1);
    expect(results.filter((r) => r.kind === "not_found")).toHaveLength(7);
    const err = await spool.checkout(e).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.EntryNotFound);
  });

  it("withEntry saves, removes and releases as the handler says", async () => {
    const spool = await newSpool();
    const a = await spool.enqueue("inbox", { id: 1 }, "a");
    const got = await spool.withEntry(a, async (m, data) => [
      { kind: "save", queue: "outbox", metadata: { ...m, note: (await data.read()).toString() } },
      "seen",
    ]);
    expect(got).toBe("seen");
    const [b] = await spool.list("outbox");
    expect(await b!.direct.contents()).toEqual({ id: 1, note: "a" });
    const r = await spool.withEntryIfPresent(b!, async () => [{ kind: "remove" }, 1]);
    expect(r).toEqual({ kind: "ok", value: 1 });
    expect(await spool.withEntryIfPresent(b!, async () => [{ kind: "remove" }, 1])).toEqual({
      kind: "not_found",
    });
  });

  it("a handler that throws gives the entry back with one failed attempt", async () => {
    const spool = await newSpool();
    const a = await spool.enqueue("inbox", { id: 1 }, "a");
    await expect(
      spool.withEntry(a, async () => {
        throw new Error("worker broke");
      }),
    ).rejects.toThrow("worker broke");
    const [back] = await spool.list("inbox");
    expect(await back!.direct.read()).toEqual({ metadata: { id: 1 }, attempts: 1 });
  });

  it("enqueue with a name reserved earlier", async () => {
    const spool = await newSpool();
    const name = await spool.reserveName();
    const e = await spool.enqueue("inbox", { id: 9 }, "d", { name });
    expect(e.name).toBe(name);
    const err = await spool
      .enqueue("inbox", { id: 9 }, "d", { name: "never-reserved" })
      .catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.EntryNotFound);
  });

  it("a reserved name is given back unless an entry holds it", async () => {
    const spool = await newSpool();
    const unused = await spool.reserveName();
    const used = await spool.reserveName();
    const held = await spool.reserveName();
    await spool.enqueue("inbox", { id: 1 }, "d", { name: used });
    const checkedOut = await spool.checkout(
      await spool.enqueue("inbox", { id: 3 }, "d", { name: held }),
    );
    expect(await spool.isReserved(unused)).toBe(true);
    await spool.unreserveName(unused);
    await spool.unreserveName(used);
    await spool.unreserveName(held);
    expect(await spool.isReserved(unused)).toBe(false);
    expect(await spool.isReserved(used)).toBe(true);
    expect(await spool.isReserved(held)).toBe(true);
    expect(await spool.listNames("inbox")).toEqual([used]);
    await checkedOut.remove();
    const err = await spool.enqueue("inbox", { id: 2 }, "d", { name: unused }).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.EntryNotFound);
  });

  it("Direct operations read, overwrite and remove in place", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    await e.direct.save({ id: 2 });
    expect(await e.direct.contents()).toEqual({ id: 2 });
    expect((await e.stat()).isFile()).toBe(true);
    await e.direct.remove();
    expect(await spool.list("inbox")).toEqual([]);
    expect((await e.stat().catch((x) => x)).code).toBe(SpoolErrorCode.EntryNotFound);
  });

  it("lists checkouts (unsafe) with their metadata", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 5 }, "d");
    await spool.checkout(e, { leaseMs: 5000 });
    const cos = await Expert.listCheckoutsUnsafe(spool, "inbox");
    expect(cos.map((c) => [c.name, c.contents])).toEqual([[e.name, { id: 5 }]]);
  });
});

describe("bad input", () => {
  const bad = ["", "a/b", "..", "../x", ".hidden", "a\0b", "x".repeat(201), "a b", "a~b"];
  it.each(bad)("rejects entry name %j without touching the disk", async (name) => {
    const spool = await newSpool();
    const err = await spool.enqueue("inbox", { id: 1 }, "d", { name }).catch((x) => x);
    expect(err).toBeInstanceOf(SpoolError);
    expect(err.code).toBe(SpoolErrorCode.InvalidName);
    expect(() => spool.entry("inbox", name)).toThrow(/invalid entry name/);
    expect(await readdir(dir.path)).toEqual(["spool"]);
  });

  it.each(["a/b", "..", ".checkout", "q\0"])("rejects queue name %j", async (q) => {
    const err = await Spool.create(join(dir.path, "s2"), {
      ...widgetSpoolable(),
      queues: [q] as never,
    }).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.InvalidName);
    expect(await readdir(dir.path)).toEqual([]);
  });

  it("rejects an unknown queue", async () => {
    const spool = await newSpool();
    const err = await spool.enqueue("nope" as WidgetQueue, { id: 1 }, "d").catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.UnknownQueue);
    expect(await readdir(join(spool.dir, ".registry"))).toEqual([]);
  });

  it("reports undecodable metadata with the entry name and loses nothing", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    await writeFile(e.path, '{"v":1,"attempts":0}\n{not json');
    const err = await spool.checkout(e).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.MetadataDecode);
    expect(err.message).toContain(e.name);
    // Still there, checked out, with its data; its lease will bring it back.
    expect(await readdir(join(spool.dir, "inbox", ".checkout"))).toEqual([e.name]);
    expect((await readFile(join(spool.dir, ".data", e.name))).toString()).toBe("d");
  });

  it("a data stream that fails leaves nothing behind", async () => {
    const spool = await newSpool();
    async function* broken() {
      yield Buffer.from("partial");
      throw new Error("upstream went away");
    }
    const err = await spool.enqueue("inbox", { id: 1 }, broken()).catch((x) => x);
    expect(err).toBeInstanceOf(Error);
    for (const d of [".registry", ".data", ".tmp", "inbox"]) {
      expect((await readdir(join(spool.dir, d))).filter((n) => n !== ".checkout")).toEqual([]);
    }
  });

  it("metadata that cannot be encoded leaves nothing behind", async () => {
    const spool = await newSpool();
    const cyclic: Record<string, unknown> = { id: 1 };
    cyclic.self = cyclic;
    const err = await spool.enqueue("inbox", cyclic as never, "d").catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.InvalidArgument);
    expect(await readdir(join(spool.dir, ".registry"))).toEqual([]);
  });
});

describe("queue reader wake-ups", () => {
  it.each(["inotify", "poll"] as const)(
    "a waiting reader (%s) is woken by an enqueue, with no periodic re-listing",
    async (watch) => {
      const spool = await newSpool();
      const { QueueReader } = await import("./index.js");
      const reader = new QueueReader(spool, "inbox", { reapEveryMs: 0, watch });
      const listings = listingsOf(spool, "inbox");
      try {
        const waiting = reader.dequeue(AbortSignal.timeout(10_000));
        // Enqueue only once the reader has listed the queue empty: from then on, only its
        // wake-up can deliver the entry (without one it stops after 10 s).
        await listings.emptySeen;
        const e = await spool.enqueue("inbox", { id: 42 }, "wake up");
        const r = await waiting;
        expect(r.kind).toBe("checked_out");
        if (r.kind === "checked_out") expect(r.entry.name).toBe(e.name);
        // One listing before the wait, one after the wake-up: no periodic re-listing.
        expect(listings.count()).toBe(2);
      } finally {
        listings.restore();
        await reader.close();
      }
    },
  );
});

describe("finishing a checkout is atomic", () => {
  it("of two concurrent finishes of one checkout, exactly one acts", async () => {
    const spool = await newSpool();
    for (let i = 0; i < 20; i++) {
      const e = await spool.enqueue("inbox", { id: i }, `data-${i}`);
      await spool.checkout(e, { leaseMs: 60_000 });
      const a = await Expert.checkedOutUnsafe(spool, "inbox", e.name);
      const b = await Expert.checkedOutUnsafe(spool, "inbox", e.name);
      const results = await Promise.all([a!.save("outbox"), b!.remove()]);
      const done = results.filter((r) => r.kind === "done");
      expect(done).toHaveLength(1);
      const inOutbox = (await readdir(join(spool.dir, "outbox"))).includes(e.name);
      const hasData = (await readdir(join(spool.dir, ".data"))).includes(e.name);
      // Saved: in outbox with its data. Removed: nowhere, no data. Never half of each.
      expect(inOutbox).toBe(results[0].kind === "done");
      expect(hasData).toBe(inOutbox);
      expect(await readdir(join(spool.dir, "inbox", ".checkout"))).toEqual([]);
    }
  });

  it("repair puts back a finish interrupted after it took the checkout", async () => {
    const { rename } = await import("node:fs/promises");
    const { Monitor } = await import("./index.js");
    const spool = await Spool.create(
      join(dir.path, "s"),
      widgetSpoolable({ leases: { graceMs: 0 } }),
    );
    const e = await spool.enqueue("inbox", { id: 1 }, "kept");
    await spool.checkout(e, { leaseMs: 1 });
    const co = join(spool.dir, "inbox", ".checkout", e.name);
    await rename(co, `${co}~deadbeef`);
    // Not visible to readers or to listings, but fsck still counts the entry as held.
    expect(await spool.list("inbox")).toEqual([]);
    expect(await spool.listCheckedOutNames("inbox")).toEqual([]);
    const monitor = new Monitor(spool, { maxTmpFileAgeMs: 0 });
    const later = Date.now() + 5_000;
    expect((await monitor.fsck(later)).map((p) => p.kind)).toEqual(["too_old"]);
    const report = await monitor.repair(later);
    expect(report.repaired.map((r) => r.action)).toEqual([
      "restored an interrupted finish and returned it to inbox (attempt 1)",
    ]);
    expect((await spool.list("inbox")).map((x) => x.name)).toEqual([e.name]);
    expect(await monitor.fsck(later)).toEqual([]);
  });
});
