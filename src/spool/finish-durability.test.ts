import { readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { Expert, Spool } from "./index.js";
import { coreOf } from "./spool.js";

/**
 * A finish (save, release, lease expiry, remove, and the replica placements and drops) is
 * durable before it resolves: every directory it changed has been fsynced, by an fsync(2)
 * that started after the change (the directory already listed as it ends up) and completed
 * before the promise resolved. Observed on the real fsyncs through the spool's
 * DirectorySyncer.
 */

const dir = useTempDir();

interface SyncRecord {
  dir: string;
  listing: string[];
  done: boolean;
}

async function newSpool(): Promise<{ spool: Spool<Widget, WidgetQueue>; syncs: SyncRecord[] }> {
  const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
  const syncs: SyncRecord[] = [];
  const syncer = coreOf(spool).syncer;
  const fsync = syncer.fsync;
  syncer.fsync = async (d) => {
    const record = { dir: d, listing: readdirSync(d), done: false };
    syncs.push(record);
    await fsync(d);
    record.done = true;
  };
  return { spool, syncs };
}

/** Paths of the spool's directories, relative names as in the layout. */
const at = (spool: Spool<Widget, WidgetQueue>, rel: string) => join(spool.dir, rel);

/**
 * `syncs` (the fsyncs completed so far) include one of `rel` that started when the
 * directory already held `name` (`holds`) or held nothing of it (not even `name~tag`).
 */
function expectSynced(
  spool: Spool<Widget, WidgetQueue>,
  syncs: SyncRecord[],
  rel: string,
  name: string,
  holds: boolean,
): void {
  const path = at(spool, rel);
  const ok = syncs.some(
    (s) =>
      s.dir === path &&
      s.done &&
      (holds ? s.listing.includes(name) : !s.listing.some((n) => n.startsWith(name))),
  );
  const seen = syncs.filter((s) => s.dir === path);
  expect(
    ok,
    `${rel} fsynced ${holds ? "holding" : "without"} ${name}; saw ${JSON.stringify(seen)}`,
  ).toBe(true);
}

describe("finishes are durable before they resolve", () => {
  it("save into another queue syncs the destination and the checkout directory", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const co = await spool.checkout(e);
    syncs.length = 0;
    expect(await co.save("outbox")).toEqual({ kind: "done" });
    expectSynced(spool, syncs, "outbox", e.name, true);
    expectSynced(spool, syncs, "inbox/.checkout", e.name, false);
  });

  it("release syncs its queue and the checkout directory", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const co = await spool.checkout(e);
    syncs.length = 0;
    expect((await co.release()).kind).toBe("done");
    expectSynced(spool, syncs, "inbox", e.name, true);
    expectSynced(spool, syncs, "inbox/.checkout", e.name, false);
  });

  it("lease expiry syncs the queue it returns to and the checkout directory", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    await spool.checkout(e, { leaseMs: 1_000 });
    coreOf(spool).clock = () => Date.now() + 10 * 60_000;
    syncs.length = 0;
    expect((await spool.expireLeases()).map((x) => x.name)).toEqual([e.name]);
    expectSynced(spool, syncs, "inbox", e.name, true);
    expectSynced(spool, syncs, "inbox/.checkout", e.name, false);
  });

  it("remove syncs the checkout, data and registry directories", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const co = await spool.checkout(e);
    syncs.length = 0;
    expect(await co.remove()).toEqual({ kind: "done" });
    for (const rel of ["inbox/.checkout", ".data", ".registry"]) {
      expectSynced(spool, syncs, rel, e.name, false);
    }
  });

  it("a direct remove syncs the queue, data and registry directories", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    syncs.length = 0;
    await e.direct.remove();
    for (const rel of ["inbox", ".data", ".registry"]) {
      expectSynced(spool, syncs, rel, e.name, false);
    }
  });

  it("a replica placement syncs where the entry went and where it was", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    const seen = await Expert.inspectReplica(spool, e.name);
    if (seen.kind !== "present") throw new Error(`expected present, got ${seen.kind}`);
    syncs.length = 0;
    const r = await Expert.placeReplica(
      spool,
      e.name,
      { queue: "outbox", checkedOut: false },
      seen.payload,
      3,
    );
    expect(r.kind).toBe("placed");
    expectSynced(spool, syncs, "outbox", e.name, true);
    expectSynced(spool, syncs, "inbox", e.name, false);
  });

  it("a replica drop syncs where the entry was, its data and registry directories", async () => {
    const { spool, syncs } = await newSpool();
    const e = await spool.enqueue("inbox", { id: 1 }, "d");
    syncs.length = 0;
    expect((await Expert.dropReplica(spool, e.name)).kind).toBe("dropped");
    for (const rel of ["inbox", ".data", ".registry"]) {
      expectSynced(spool, syncs, rel, e.name, false);
    }
    // A remnant (registry and data, no metadata) is dropped as durably.
    const remnant = await spool.reserveName();
    await writeFile(at(spool, `.data/${remnant}`), "left over");
    syncs.length = 0;
    expect((await Expert.dropReplica(spool, remnant)).kind).toBe("dropped");
    for (const rel of [".data", ".registry"]) expectSynced(spool, syncs, rel, remnant, false);
  });

  it("concurrent removes share their directory fsyncs", async () => {
    const { spool, syncs } = await newSpool();
    const n = 32;
    const entries = await Promise.all(
      Array.from({ length: n }, (_, i) => spool.enqueue("inbox", { id: i }, "d")),
    );
    const held = await Promise.all(entries.map((e) => spool.checkout(e)));
    syncs.length = 0;
    const results = await Promise.all(held.map((co) => co.remove()));
    expect(results.every((r) => r.kind === "done")).toBe(true);
    for (const rel of ["inbox/.checkout", ".data", ".registry"]) {
      const count = syncs.filter((s) => s.dir === at(spool, rel)).length;
      expect(count, rel).toBeGreaterThan(0);
      expect(count, rel).toBeLessThan(n);
    }
  });
});
