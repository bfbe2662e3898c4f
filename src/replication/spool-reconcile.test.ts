import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { widgetSpoolable } from "../../test/helpers/widget.js";
import { Expert, Spool } from "../spool/index.js";
import type { Placed } from "./replica-state.js";
import { reconcileSpool } from "./spool-reconcile.js";

const dir = useTempDir();

const at = (queue: string, checkedOut = false): Placed => ({
  queue,
  checkedOut,
  leaseUntil: null,
  attempts: 0,
  payloadSha256: "",
});

async function setUp(count: number) {
  const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
  const results = await spool.enqueueBatch(
    Array.from({ length: count }, (_, i) => ({
      queue: "inbox" as const,
      metadata: { id: i },
      data: `d${i}`,
    })),
  );
  const entries = results.map((r) => {
    if (!r.ok) throw r.error;
    return r.entry;
  });
  const names = entries.map((e) => e.name);
  const record = new Map(names.map((n) => [n, at("inbox")]));
  return { spool, entries, names, record };
}

async function marks(spool: Spool<unknown, string>, record: Map<string, Placed>) {
  const marked: string[] = [];
  const n = await reconcileSpool(
    Expert.replicaSpool(spool),
    () => record,
    (e) => marked.push(e),
  );
  expect(n).toBe(marked.length);
  return marked.sort();
}

describe("reconcileSpool", () => {
  it("files as recorded, over several slices of the walk: nothing marked", async () => {
    const { spool, record } = await setUp(1_200);
    expect(await marks(spool as Spool<unknown, string>, record)).toEqual([]);
  });

  it("marks what disagrees: not recorded, moved without an event, checked out, gone", async () => {
    const { spool, entries, names, record } = await setUp(6);
    const [crashed, moved, taken, gone] = names as [string, string, string, string];
    // A crash between the rename into the queue and the journal insert: never recorded.
    record.delete(crashed);
    // Moved by another process, its event lost.
    await rename(join(spool.dir, "inbox", moved), join(spool.dir, "outbox", moved));
    await spool.checkout(entries[2] as (typeof entries)[number], { leaseMs: 60_000 });
    // Recorded, and in no queue any more.
    record.set("gone-entry", at("outbox"));
    record.set(gone, at("dead", true));
    await rename(join(spool.dir, "inbox", gone), join(dir.path, "aside"));
    expect(await marks(spool as Spool<unknown, string>, record)).toEqual(
      [crashed, moved, taken, gone, "gone-entry"].sort(),
    );
  });

  it("leaves out the spool's own files and finishes under way", async () => {
    const { spool, names, record } = await setUp(1);
    await writeFile(join(spool.dir, "inbox", ".hidden"), "");
    await writeFile(join(spool.dir, "inbox", ".checkout", `${names[0]}~save`), "");
    expect(await marks(spool as Spool<unknown, string>, record)).toEqual([]);
  });

  it("compares each slice with the record as it is then", async () => {
    const { spool, names, record } = await setUp(3);
    const [a] = names as [string];
    const marked: string[] = [];
    const replica = Expert.replicaSpool(spool);
    // The record drops an entry (a remove synced) while the walk goes on: not marked as gone.
    record.set("removed-meanwhile", at("outbox"));
    await reconcileSpool(
      {
        walk: (visit) =>
          replica.walk((queue, checkedOut, slice) => {
            record.delete("removed-meanwhile");
            visit(queue, checkedOut, slice);
          }),
      },
      () => record,
      (e) => marked.push(e),
    );
    expect(marked).toEqual([]);
    expect(record.has(a)).toBe(true);
  });
});
