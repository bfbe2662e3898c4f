import { access, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { type Entry, Spool } from "./index.js";

/** A failed enqueue cleans up only what it made itself: never another entry's files. */

const dir = useTempDir();

function newSpool(): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.create(join(dir.path, "spool"), widgetSpoolable());
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The entry is whole: queue file, metadata, data and registry, and it can be finished. */
async function expectWhole(
  spool: Spool<Widget, WidgetQueue>,
  e: Entry<Widget, WidgetQueue>,
  metadata: Widget,
  data: string,
): Promise<void> {
  expect((await spool.list(e.queue)).map((x) => x.name)).toEqual([e.name]);
  expect(await e.direct.contents()).toEqual(metadata);
  expect((await e.dataFile().read()).toString()).toBe(data);
  expect(await exists(join(spool.dir, ".registry", e.name))).toBe(true);
  const co = await spool.checkout(e);
  expect((await co.dataFile().read()).toString()).toBe(data);
  expect(await co.remove()).toEqual({ kind: "done" });
  expect(await readdir(join(spool.dir, ".registry"))).toEqual([]);
  expect(await readdir(join(spool.dir, ".data"))).toEqual([]);
}

describe("a failed enqueue", () => {
  it("with a live entry's name in the same queue leaves that entry whole", async () => {
    const spool = await newSpool();
    const live = await spool.enqueue("inbox", { id: 1 }, "live data");
    const err = await spool
      .enqueue("inbox", { id: 2 }, "intruder", { name: live.name })
      .catch((x) => x);
    expect(err).toBeInstanceOf(Error);
    expect(await readdir(join(spool.dir, ".tmp"))).toEqual([]);
    await expectWhole(spool, live, { id: 1 }, "live data");
  });

  it("with a live entry's name in another queue leaves that entry whole", async () => {
    const spool = await newSpool();
    const live = await spool.enqueue("inbox", { id: 1 }, "live data");
    const err = await spool
      .enqueue("outbox", { id: 2 }, "intruder", { name: live.name })
      .catch((x) => x);
    expect(err).toBeInstanceOf(Error);
    expect(await spool.list("outbox")).toEqual([]);
    await expectWhole(spool, live, { id: 1 }, "live data");
  });

  it("with the name of an enqueue under way leaves that enqueue to finish whole", async () => {
    const spool = await newSpool();
    const name = await spool.reserveName();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let started!: () => void;
    const writing = new Promise<void>((r) => {
      started = r;
    });
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield Buffer.from("first half, ");
      started();
      await gate;
      yield Buffer.from("second half");
    }
    const first = spool.enqueue("inbox", { id: 1 }, slow(), { name });
    await writing;
    const err = await spool.enqueue("outbox", { id: 2 }, "intruder", { name }).catch((x) => x);
    expect(err).toBeInstanceOf(Error);
    release();
    const e = await first;
    await expectWhole(spool, e, { id: 1 }, "first half, second half");
  });

  it("that made the entry's files removes all of them, its reservation included", async () => {
    const spool = await newSpool();
    const name = await spool.reserveName();
    const err = await spool
      .enqueueDeferred(
        "inbox",
        "data",
        () => {
          throw new Error("no metadata for you");
        },
        { name },
      )
      .catch((x) => x);
    expect(String(err.cause ?? err)).toContain("no metadata for you");
    for (const sub of [".registry", ".tmp", ".data", "inbox"]) {
      expect(await readdir(join(spool.dir, sub)), sub).toEqual(
        sub === "inbox" ? [".checkout"] : [],
      );
    }
  });
});
