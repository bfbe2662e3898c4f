import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { Expert, Monitor, Spool } from "./index.js";
import type { NewReplica } from "./replica-batch.js";
import { coreOf } from "./spool.js";

const dir = useTempDir();

const payloadOf = (w: Widget) => Buffer.from(JSON.stringify(w));

async function newSpool(): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.create(join(dir.path, "spool"), widgetSpoolable());
}

function item(name: string, queue: WidgetQueue, id: number): NewReplica<string> {
  return {
    name,
    placement: { queue, checkedOut: false },
    payload: payloadOf({ id }),
    attempts: id % 3,
    bytes: Buffer.from(`data of ${name}`),
  };
}

/** Count the writer thread's rounds and every directory fsync of the spool. */
function watch(spool: Spool<Widget, WidgetQueue>) {
  const core = coreOf(spool);
  const seen = { rounds: 0, fsyncs: [] as string[] };
  const write = core.batchWriter.write.bind(core.batchWriter);
  core.batchWriter.write = (items, dirs) => {
    seen.rounds++;
    return write(items, dirs);
  };
  const fsync = core.syncer.fsync;
  core.syncer.fsync = (d) => {
    seen.fsyncs.push(d.slice(spool.dir.length + 1));
    return fsync(d);
  };
  return seen;
}

describe("placing many new replicas at once", () => {
  it("makes them visible, whole, with one durability round per 512 and one fsync per queue", async () => {
    const spool = await newSpool();
    const seen = watch(spool);
    const items = Array.from({ length: 600 }, (_, i) =>
      item(`e${String(i).padStart(4, "0")}`, i % 2 === 0 ? "inbox" : "outbox", i),
    );
    const results = await Expert.replicaSpool(spool).placeNew(items);
    expect(results.every((r) => r.kind === "placed")).toBe(true);
    expect(seen.rounds).toBe(2);
    expect(seen.fsyncs.filter((d) => d === "inbox").length).toBe(1);
    expect(seen.fsyncs.filter((d) => d === "outbox").length).toBe(1);
    expect((await spool.list("inbox")).length).toBe(300);
    expect((await spool.list("outbox")).length).toBe(300);
    for (const i of [0, 1, 599]) {
      const it = items[i] as NewReplica<string>;
      const e = await spool.entry(it.placement.queue as WidgetQueue, it.name).direct.read();
      expect(e).toEqual({ metadata: { id: i }, attempts: i % 3 });
      expect((await spool.dataFile(it.name).read()).toString()).toBe(`data of ${it.name}`);
      expect(await Expert.inspectReplica(spool, it.name)).toMatchObject({
        kind: "present",
        queue: it.placement.queue,
        checkedOut: false,
        attempts: i % 3,
      });
    }
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });

  it("places alone what is not new or goes checked out, and fails only what is wrong", async () => {
    const spool = await newSpool();
    // A remnant of a placement that died before its rename: registry and data, no metadata.
    await writeFile(join(spool.dir, ".registry", "remnant"), "");
    await writeFile(join(spool.dir, ".data", "remnant"), "half");
    // An entry placed since the caller looked: it is here, with other metadata.
    const here = await Expert.replicaSpool(spool).placeNew([item("here", "inbox", 7)]);
    expect(here).toEqual([{ kind: "placed" }]);
    const leaseUntil = Date.now() + 60_000;
    const results = await Expert.replicaSpool(spool).placeNew([
      item("new", "inbox", 1),
      item("remnant", "inbox", 2),
      item("here", "outbox", 3),
      {
        ...item("held", "outbox", 4),
        placement: { queue: "outbox", checkedOut: true, leaseUntil },
      },
      item("bad/name", "inbox", 5),
      { ...item("nowhere", "inbox", 6), placement: { queue: "nowhere", checkedOut: false } },
    ]);
    expect(results.slice(0, 4)).toEqual([
      { kind: "placed" },
      { kind: "placed" },
      { kind: "placed" },
      { kind: "placed" },
    ]);
    expect(results[4]).toMatchObject({ kind: "failed", error: { code: "invalid_name" } });
    expect(results[5]?.kind).toBe("failed");
    expect((await spool.dataFile("remnant").read()).toString()).toBe("data of remnant");
    expect(await Expert.inspectReplica(spool, "here")).toMatchObject({
      kind: "present",
      queue: "outbox",
      attempts: 0,
    });
    expect(await Expert.inspectReplica(spool, "held")).toMatchObject({
      kind: "present",
      queue: "outbox",
      checkedOut: true,
      leaseUntil,
    });
    expect((await spool.list("inbox")).map((e) => e.name).sort()).toEqual(["new", "remnant"]);
    expect(await readdir(join(spool.dir, ".registry"))).not.toContain("nowhere");
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });
  it("renames nothing into a queue before the caller's beforeVisible settles", async () => {
    // Every file call of the spool after the writer's round and before the gate opens is
    // recorded: the renames into the queues (and placements alone) must wait for the gate.
    let written = false;
    let open = false;
    const early: string[] = [];
    const spool = await Spool.create(join(dir.path, "spool"), {
      ...widgetSpoolable(),
      throttle: {
        run<T>(op: () => Promise<T>): Promise<T> {
          if (written && !open) early.push(op.toString());
          return op();
        },
      },
    });
    const core = coreOf(spool);
    const write = core.batchWriter.write.bind(core.batchWriter);
    let writerDone: () => void = () => undefined;
    const roundWritten = new Promise<void>((resolve) => {
      writerDone = resolve;
    });
    core.batchWriter.write = async (items, dirs) => {
      const r = await write(items, dirs);
      written = true;
      writerDone();
      return r;
    };
    const leaseUntil = Date.now() + 60_000;
    let atGate: unknown;
    // The gate fails: its outcome is not the spool's business, only its end.
    const gate = roundWritten
      .then(() => new Promise((resolve) => setImmediate(resolve)))
      .then(async () => {
        open = true; // the looks below go through the throttle too
        atGate = {
          early: [...early],
          inbox: (await spool.list("inbox")).length,
          held: (await Expert.inspectReplica(spool, "held")).kind,
        };
        throw new Error("the caller's own work failed");
      });
    const results = await Expert.replicaSpool(spool).placeNew(
      [
        item("first", "inbox", 1),
        item("second", "inbox", 2),
        {
          ...item("held", "outbox", 3),
          placement: { queue: "outbox", checkedOut: true, leaseUntil },
        },
      ],
      { beforeVisible: gate },
    );
    expect(atGate).toEqual({ early: [], inbox: 0, held: "absent" });
    expect(results).toEqual([{ kind: "placed" }, { kind: "placed" }, { kind: "placed" }]);
    expect((await spool.list("inbox")).map((e) => e.name).sort()).toEqual(["first", "second"]);
    expect(await Expert.inspectReplica(spool, "held")).toMatchObject({ checkedOut: true });
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });
});

describe("inspecting many entries at once", () => {
  it("answers as inspectReplica does, with the data asked for", async () => {
    const spool = await newSpool();
    const replica = Expert.replicaSpool(spool);
    const leaseUntil = Date.now() + 60_000;
    await replica.placeNew([item("waiting", "inbox", 1), item("big", "outbox", 2)]);
    await replica.place(
      "held",
      { queue: "outbox", checkedOut: true, leaseUntil },
      payloadOf({ id: 3 }),
      1,
      { bytes: Buffer.from("held data") },
    );
    await writeFile(join(spool.dir, ".registry", "moving"), "");
    const names = ["waiting", "big", "held", "moving", "nothing"];
    const looks = await replica.inspectMany(names, (n) =>
      n === "big" ? 3 : n === "held" ? 100 : undefined,
    );
    for (const [k, name] of names.entries()) {
      expect(looks[k]?.seen, name).toEqual(await Expert.inspectReplica(spool, name));
    }
    expect(looks.map((l) => l.seen.kind)).toEqual([
      "present",
      "present",
      "present",
      "in_flux",
      "absent",
    ]);
    expect(looks[2]?.seen).toMatchObject({ checkedOut: true, leaseUntil, attempts: 1 });
    // Data only where asked, and only within the size asked.
    expect(looks[0]?.data).toBeUndefined();
    expect(looks[1]?.data).toBeUndefined();
    expect(looks[2]?.data?.toString()).toBe("held data");
    expect(await replica.inspectMany([])).toEqual([]);
  });
});
