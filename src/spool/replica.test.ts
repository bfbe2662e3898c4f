import { mkdir, readdir, readFile, rename, rmdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { Expert, Monitor, Spool, SpoolError, SpoolErrorCode } from "./index.js";
import { coreOf } from "./spool.js";

const dir = useTempDir();

async function newSpool(
  overrides: Parameters<typeof widgetSpoolable>[0] = {},
): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.create(join(dir.path, "spool"), widgetSpoolable(overrides));
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const payloadOf = (w: Widget) => Buffer.from(JSON.stringify(w));

let adoptCounter = 0;
/** A complete data file beside the spool (same filesystem), as the replicator's fetcher leaves it. */
async function dataToAdopt(content: string): Promise<string> {
  const incoming = join(dir.path, "incoming");
  await mkdir(incoming, { recursive: true });
  const path = join(incoming, `fetched-${adoptCounter++}`);
  await writeFile(path, content);
  return path;
}

async function expectClean(spool: Spool<Widget, WidgetQueue>): Promise<void> {
  expect(await new Monitor(spool).fsck()).toEqual([]);
}

/** Every file of the spool, relative to its root (to check that nothing changed). */
async function snapshot(spool: Spool<Widget, WidgetQueue>): Promise<string[]> {
  const out: string[] = [];
  for (const d of [".registry", ".tmp", ".data", "inbox", "outbox", "dead"]) {
    for (const n of await readdir(join(spool.dir, d))) {
      if (n !== ".checkout") out.push(`${d}/${n}`);
    }
  }
  for (const q of ["inbox", "outbox", "dead"]) {
    for (const n of await readdir(join(spool.dir, q, ".checkout"))) out.push(`${q}/.checkout/${n}`);
  }
  return out.sort();
}

describe("placing an entry the spool does not hold", () => {
  it("adopts the data and makes it visible in a queue", async () => {
    const spool = await newSpool();
    const adopt = await dataToAdopt("the data");
    expect(await Expert.inspectReplica(spool, "e1")).toEqual({ kind: "absent" });
    const r = await Expert.placeReplica(
      spool,
      "e1",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 1, note: "hi" }),
      2,
      { adoptPath: adopt },
    );
    expect(r).toEqual({ kind: "placed" });
    expect((await spool.list("inbox")).map((e) => e.name)).toEqual(["e1"]);
    expect(await spool.entry("inbox", "e1").direct.read()).toEqual({
      metadata: { id: 1, note: "hi" },
      attempts: 2,
    });
    expect((await spool.dataFile("e1").read()).toString()).toBe("the data");
    expect(await readdir(join(dir.path, "incoming"))).toEqual([]);
    expect(await Expert.inspectReplica(spool, "e1")).toEqual({
      kind: "present",
      queue: "inbox",
      checkedOut: false,
      attempts: 2,
      payload: payloadOf({ id: 1, note: "hi" }),
    });
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
    await expectClean(spool);
  });

  it("places it checked out: hidden from readers until its lease ends", async () => {
    const spool = await newSpool();
    const leaseUntil = Date.now() + 60_000;
    const r = await Expert.placeReplica(
      spool,
      "e2",
      { queue: "inbox", checkedOut: true, leaseUntil },
      payloadOf({ id: 2 }),
      1,
      { adoptPath: await dataToAdopt("d2") },
    );
    expect(r).toEqual({ kind: "placed" });
    expect(await spool.list("inbox")).toEqual([]);
    expect(await spool.listCheckedOutNames("inbox")).toEqual(["e2"]);
    expect(await spool.checkoutIfPresent(spool.entry("inbox", "e2"))).toEqual({
      kind: "not_found",
    });
    const st = await stat(join(spool.dir, "inbox", ".checkout", "e2"));
    expect(Math.round(st.mtimeMs)).toBe(leaseUntil);
    expect(await Expert.inspectReplica(spool, "e2")).toMatchObject({
      kind: "present",
      queue: "inbox",
      checkedOut: true,
      leaseUntil,
      attempts: 1,
    });
    await expectClean(spool);
    expect(await spool.expireLeases()).toEqual([]);
    // After the deadline (and the grace), the lease reaper gives it back as a failed delivery.
    coreOf(spool).clock = () => leaseUntil + 10_000;
    const expired = await spool.expireLeases();
    expect(expired).toEqual([{ name: "e2", queue: "inbox", to: "inbox", attempts: 2, leaseUntil }]);
    expect(await spool.entry("inbox", "e2").direct.read()).toEqual({
      metadata: { id: 2 },
      attempts: 2,
    });
  });

  it("refuses without data, and an unknown queue, changing nothing", async () => {
    const spool = await newSpool();
    const adopt = await dataToAdopt("d");
    const noData = await Expert.placeReplica(
      spool,
      "e3",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 3 }),
      0,
    ).catch((e) => e);
    expect(noData).toBeInstanceOf(SpoolError);
    expect(noData.code).toBe(SpoolErrorCode.InvalidArgument);
    const unknown = await Expert.placeReplica(
      spool,
      "e3",
      { queue: "nowhere" as WidgetQueue, checkedOut: false },
      payloadOf({ id: 3 }),
      0,
      { adoptPath: adopt },
    ).catch((e) => e);
    expect(unknown).toBeInstanceOf(SpoolError);
    expect(unknown.code).toBe(SpoolErrorCode.UnknownQueue);
    const badName = await Expert.placeReplica(
      spool,
      "../e3",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 3 }),
      0,
      {
        adoptPath: adopt,
      },
    ).catch((e) => e);
    expect(badName.code).toBe(SpoolErrorCode.InvalidName);
    expect(await snapshot(spool)).toEqual([]);
    expect(await readFile(adopt, "utf8")).toBe("d");
  });

  it("a failure before the entry is visible undoes everything and gives the data back", async () => {
    const spool = await newSpool();
    const adopt = await dataToAdopt("keep me");
    // A directory where the metadata file must go makes the final rename fail.
    await mkdir(join(spool.dir, "inbox", "e4"));
    const err = await Expert.placeReplica(
      spool,
      "e4",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 4 }),
      0,
      {
        adoptPath: adopt,
      },
    ).catch((e) => e);
    expect(err).toBeInstanceOf(SpoolError);
    expect(err.code).toBe(SpoolErrorCode.Io);
    await rmdir(join(spool.dir, "inbox", "e4"));
    expect(await snapshot(spool)).toEqual([]);
    expect(await readFile(adopt, "utf8")).toBe("keep me");
    // A missing data file: nothing is made either.
    const missing = await Expert.placeReplica(
      spool,
      "e4",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 4 }),
      0,
      {
        adoptPath: join(dir.path, "incoming", "never-fetched"),
      },
    ).catch((e) => e);
    expect(missing.code).toBe(SpoolErrorCode.Io);
    expect(missing.errno).toBe("ENOENT");
    expect(await snapshot(spool)).toEqual([]);
  });
});

describe("placing an entry from its bytes (data carried inline)", () => {
  it("writes the data file itself: visible, whole, nothing left in .tmp", async () => {
    const spool = await newSpool();
    const r = await Expert.placeReplica(
      spool,
      "b1",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 1 }),
      1,
      { bytes: Buffer.from("inline data") },
    );
    expect(r).toEqual({ kind: "placed" });
    expect((await spool.dataFile("b1").read()).toString()).toBe("inline data");
    expect(await spool.entry("inbox", "b1").direct.read()).toEqual({
      metadata: { id: 1 },
      attempts: 1,
    });
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
    await expectClean(spool);
  });

  it("a failure before the entry is visible leaves nothing, not even the data", async () => {
    const spool = await newSpool();
    await mkdir(join(spool.dir, "inbox", "b2"));
    const err = await Expert.placeReplica(
      spool,
      "b2",
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 2 }),
      0,
      { bytes: Buffer.from("gone again") },
    ).catch((e) => e);
    expect(err).toBeInstanceOf(SpoolError);
    expect(err.code).toBe(SpoolErrorCode.Io);
    await rmdir(join(spool.dir, "inbox", "b2"));
    expect(await snapshot(spool)).toEqual([]);
  });

  it("resumes a remnant (registry and partial data) with the bytes", async () => {
    const spool = await newSpool();
    const name = await spool.reserveName();
    await writeFile(join(spool.dir, ".data", name), "half-written and longer");
    const r = await Expert.placeReplica(
      spool,
      name,
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 3 }),
      0,
      { bytes: Buffer.from("whole") },
    );
    expect(r).toEqual({ kind: "placed" });
    expect((await spool.dataFile(name).read()).toString()).toBe("whole");
    await expectClean(spool);
  });

  it("an entry already here is moved, its data kept", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 4 }, "original");
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      payloadOf({ id: 4 }),
      0,
      { bytes: Buffer.from("other") },
    );
    expect(r).toEqual({ kind: "placed" });
    expect((await spool.dataFile(e.name).read()).toString()).toBe("original");
    expect((await spool.list("outbox")).map((x) => x.name)).toEqual([e.name]);
    await expectClean(spool);
  });
});

describe("placing or dropping an entry as the caller just saw it", () => {
  it("takes it where it was seen, without looking again", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "data-1");
    const seen = await Expert.inspectReplica(spool, e.name);
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      payloadOf({ id: 1 }),
      3,
      undefined,
      seen,
    );
    expect(r).toEqual({ kind: "placed" });
    expect(await Expert.inspectReplica(spool, e.name)).toMatchObject({
      kind: "present",
      queue: "outbox",
      attempts: 3,
    });
    const again = await Expert.inspectReplica(spool, e.name);
    expect(await Expert.dropReplica(spool, e.name, again)).toEqual({ kind: "dropped" });
    expect(await Expert.inspectReplica(spool, e.name)).toEqual({ kind: "absent" });
    await expectClean(spool);
  });

  it("an entry that moved since it was seen is a race, and nothing changes", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 2 }, "data-2");
    const seen = await Expert.inspectReplica(spool, e.name);
    const held = await spool.checkoutIfPresent(spool.entry("inbox", e.name));
    expect(held.kind).toBe("ok");
    const before = await snapshot(spool);
    const placed = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      payloadOf({ id: 2 }),
      0,
      undefined,
      seen,
    );
    expect(placed).toEqual({ kind: "raced" });
    expect(await Expert.dropReplica(spool, e.name, seen)).toEqual({ kind: "raced" });
    expect(await snapshot(spool)).toEqual(before);
    // Looked at again, it is found where it is now.
    expect(await Expert.dropReplica(spool, e.name)).toEqual({ kind: "dropped" });
    await expectClean(spool);
  });
});

describe("moving an entry the spool holds", () => {
  it("moves a queued entry to another queue with new metadata, keeping its data", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "data-1");
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      payloadOf({ id: 1, note: "moved" }),
      3,
    );
    expect(r).toEqual({ kind: "placed" });
    expect(await spool.list("inbox")).toEqual([]);
    expect(await spool.entry("outbox", e.name).direct.read()).toEqual({
      metadata: { id: 1, note: "moved" },
      attempts: 3,
    });
    expect((await spool.dataFile(e.name).read()).toString()).toBe("data-1");
    await expectClean(spool);
  });

  it("checks out a queued entry with the given lease", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const leaseUntil = Date.now() + 30_000;
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: true, leaseUntil },
      payloadOf({ id: 1 }),
      0,
    );
    expect(r).toEqual({ kind: "placed" });
    expect(await spool.list("inbox")).toEqual([]);
    expect(await spool.listCheckedOutNames("outbox")).toEqual([e.name]);
    const st = await stat(join(spool.dir, "outbox", ".checkout", e.name));
    expect(Math.round(st.mtimeMs)).toBe(leaseUntil);
    await expectClean(spool);
  });

  it("overrides a local holder, whose finishes then report lease_lost", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const holder = await spool.checkout(e, { leaseMs: 60_000 });
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      payloadOf({ id: 1, note: "from a peer" }),
      0,
    );
    expect(r).toEqual({ kind: "placed" });
    expect(await holder.held()).toBe(false);
    expect(await holder.extendLease(60_000)).toEqual({ kind: "lease_lost" });
    expect(await holder.save("dead")).toEqual({ kind: "lease_lost" });
    expect(await holder.remove()).toEqual({ kind: "lease_lost" });
    expect(await spool.entry("outbox", e.name).direct.contents()).toEqual({
      id: 1,
      note: "from a peer",
    });
    expect((await spool.dataFile(e.name).read()).toString()).toBe("d");
    await expectClean(spool);
  });

  it("re-placing a checkout in place (a new lease) also takes it from its holder", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const holder = await spool.checkout(e, { leaseMs: 60_000 });
    const leaseUntil = holder.leaseUntil + 30_000;
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "inbox", checkedOut: true, leaseUntil },
      payloadOf({ id: 1 }),
      0,
    );
    expect(r).toEqual({ kind: "placed" });
    expect(await holder.save("outbox")).toEqual({ kind: "lease_lost" });
    expect(await Expert.inspectReplica(spool, e.name)).toMatchObject({
      checkedOut: true,
      leaseUntil,
    });
    await expectClean(spool);
  });

  it("changes nothing when the entry is already as asked", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const path = join(spool.dir, "inbox", e.name);
    const before = await stat(path);
    const same = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 1 }),
      0,
    );
    expect(same).toEqual({ kind: "unchanged" });
    expect((await stat(path)).ino).toBe(before.ino);
    // A different attempts count is a change.
    expect(
      await Expert.placeReplica(
        spool,
        e.name,
        { queue: "inbox", checkedOut: false },
        payloadOf({ id: 1 }),
        1,
      ),
    ).toEqual({ kind: "placed" });
    const leaseUntil = Date.now() + 60_000;
    const checkout = { queue: "inbox", checkedOut: true, leaseUntil } as const;
    expect(await Expert.placeReplica(spool, e.name, checkout, payloadOf({ id: 1 }), 1)).toEqual({
      kind: "placed",
    });
    const co = await stat(join(spool.dir, "inbox", ".checkout", e.name));
    // Within a second of the lease on disk: unchanged; further: placed.
    expect(
      await Expert.placeReplica(
        spool,
        e.name,
        { ...checkout, leaseUntil: leaseUntil + 500 },
        payloadOf({ id: 1 }),
        1,
      ),
    ).toEqual({ kind: "unchanged" });
    expect((await stat(join(spool.dir, "inbox", ".checkout", e.name))).ino).toBe(co.ino);
    expect(
      await Expert.placeReplica(
        spool,
        e.name,
        { ...checkout, leaseUntil: leaseUntil + 5_000 },
        payloadOf({ id: 1 }),
        1,
      ),
    ).toEqual({ kind: "placed" });
    await expectClean(spool);
  });

  it("an unknown queue changes nothing of an entry it holds", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const before = await snapshot(spool);
    const err = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "elsewhere" as WidgetQueue, checkedOut: false },
      payloadOf({ id: 1 }),
      0,
    ).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.UnknownQueue);
    expect(await snapshot(spool)).toEqual(before);
  });

  it("a failure mid-way puts the taken file back where it was", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const before = await snapshot(spool);
    await mkdir(join(spool.dir, "outbox", e.name));
    const err = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      payloadOf({ id: 9 }),
      0,
    ).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.Io);
    await rmdir(join(spool.dir, "outbox", e.name));
    expect(await snapshot(spool)).toEqual(before);
    expect((await spool.list("inbox")).map((x) => x.name)).toEqual([e.name]);
    await expectClean(spool);
  });
});

describe("races with local readers", () => {
  it("placing or dropping while a reader checks the entry out leaves one consistent state", async () => {
    const spool = await newSpool();
    for (let i = 0; i < 12; i++) {
      const e = await spool.enqueue("inbox", { id: i }, `d${i}`);
      const drop = i % 2 === 1;
      const [replica, local] = await Promise.all([
        drop
          ? Expert.dropReplica(spool, e.name)
          : Expert.placeReplica(
              spool,
              e.name,
              { queue: "outbox", checkedOut: false },
              payloadOf({ id: i }),
              0,
            ),
        // The reader starts a little later each round, so the winner varies.
        delay(i % 6).then(() =>
          spool.checkoutIfPresent(spool.entry("inbox", e.name), { leaseMs: 60_000 }),
        ),
      ]);
      if (replica.kind === "raced") {
        // The reader got it first and keeps it.
        expect(local.kind).toBe("ok");
        if (local.kind === "ok") expect(await local.entry.save("dead")).toEqual({ kind: "done" });
        expect((await spool.dataFile(e.name).read()).toString()).toBe(`d${i}`);
      } else {
        expect(replica.kind).toBe(drop ? "dropped" : "placed");
        if (local.kind === "ok")
          expect(await local.entry.save("dead")).toEqual({ kind: "lease_lost" });
        const where = await Expert.inspectReplica(spool, e.name);
        if (drop) {
          expect(where).toEqual({ kind: "absent" });
        } else {
          expect(where).toMatchObject({ kind: "present", queue: "outbox", checkedOut: false });
          expect((await spool.dataFile(e.name).read()).toString()).toBe(`d${i}`);
        }
      }
      await expectClean(spool);
    }
  });

  it("a finish under way (name~tag in a .checkout) is in_flux: place and drop answer raced", async () => {
    const spool = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    await spool.checkout(e, { leaseMs: 60_000 });
    const co = join(spool.dir, "inbox", ".checkout", e.name);
    await rename(co, `${co}~0123abcd`);
    const before = await snapshot(spool);
    expect(await Expert.inspectReplica(spool, e.name)).toEqual({ kind: "in_flux" });
    expect(
      await Expert.placeReplica(
        spool,
        e.name,
        { queue: "outbox", checkedOut: false },
        payloadOf({ id: 1 }),
        0,
        {
          adoptPath: await dataToAdopt("other"),
        },
      ),
    ).toEqual({ kind: "raced" });
    expect(await Expert.dropReplica(spool, e.name)).toEqual({ kind: "raced" });
    expect(await snapshot(spool)).toEqual(before);
  });
});

describe("remnants and drops", () => {
  it("resumes an in_flux remnant (registry and data, no metadata) with new data", async () => {
    const spool = await newSpool();
    const name = await spool.reserveName();
    await writeFile(join(spool.dir, ".data", name), "half-fetched");
    expect(await Expert.inspectReplica(spool, name)).toEqual({ kind: "in_flux" });
    const err = await Expert.placeReplica(
      spool,
      name,
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 5 }),
      0,
    ).catch((x) => x);
    expect(err.code).toBe(SpoolErrorCode.InvalidArgument);
    const r = await Expert.placeReplica(
      spool,
      name,
      { queue: "inbox", checkedOut: false },
      payloadOf({ id: 5 }),
      0,
      { adoptPath: await dataToAdopt("whole") },
    );
    expect(r).toEqual({ kind: "placed" });
    expect((await spool.dataFile(name).read()).toString()).toBe("whole");
    expect(await spool.entry("inbox", name).direct.contents()).toEqual({ id: 5 });
    await expectClean(spool);
  });

  it("drops an in_flux remnant, a queued entry, a held checkout; absent stays absent", async () => {
    const spool = await newSpool();
    const remnant = await spool.reserveName();
    await writeFile(join(spool.dir, ".data", remnant), "x");
    expect(await Expert.dropReplica(spool, remnant)).toEqual({ kind: "dropped" });
    expect(await Expert.inspectReplica(spool, remnant)).toEqual({ kind: "absent" });

    const queued = await spool.enqueue("outbox", { id: 1 }, "q");
    expect(await Expert.dropReplica(spool, queued.name)).toEqual({ kind: "dropped" });

    const held = await spool.enqueue("inbox", { id: 2 }, "h");
    const holder = await spool.checkout(held, { leaseMs: 60_000 });
    expect(await Expert.dropReplica(spool, held.name)).toEqual({ kind: "dropped" });
    expect(await holder.save("outbox")).toEqual({ kind: "lease_lost" });
    expect(await holder.remove()).toEqual({ kind: "lease_lost" });

    const placed = await Expert.placeReplica(
      spool,
      "p1",
      { queue: "dead", checkedOut: true, leaseUntil: Date.now() + 60_000 },
      payloadOf({ id: 3 }),
      4,
      { adoptPath: await dataToAdopt("p") },
    );
    expect(placed).toEqual({ kind: "placed" });
    expect(await Expert.dropReplica(spool, "p1")).toEqual({ kind: "dropped" });

    expect(await Expert.dropReplica(spool, "never-was")).toEqual({ kind: "absent" });
    expect(await snapshot(spool)).toEqual([]);
    await expectClean(spool);
  });

  it("monitor repair cleans up after a placement that died mid-way", async () => {
    const spool = await newSpool({ leases: { graceMs: 0 } });
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    // Died after taking the queued entry and writing its tmp metadata.
    await rename(
      join(spool.dir, "inbox", e.name),
      join(spool.dir, "inbox", ".checkout", `${e.name}~dead01`),
    );
    await writeFile(join(spool.dir, ".tmp", `${e.name}~place-0badf00d`), "partial");
    expect(await Expert.inspectReplica(spool, e.name)).toEqual({ kind: "in_flux" });
    const monitor = new Monitor(spool, { maxTmpFileAgeMs: 0 });
    const later = Date.now() + 5_000;
    expect((await monitor.fsck(later)).map((p) => `${p.kind}:${p.file.filename}`).sort()).toEqual([
      `too_old:${e.name}~dead01`,
      `too_old:${e.name}~place-0badf00d`,
    ]);
    const report = await monitor.repair(later);
    expect(report.remaining).toEqual([]);
    expect(await monitor.fsck(later)).toEqual([]);
    expect(await Expert.inspectReplica(spool, e.name)).toMatchObject({
      kind: "present",
      queue: "inbox",
      checkedOut: false,
    });
  });
});
