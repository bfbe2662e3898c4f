import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { Expert, lexicographicTimeNames, type NameGenerator, QueueReader, Spool } from "./index.js";

/**
 * Multispool's own test cases (janestreet/async_smtp `test/lib/test_multispool.ml` "File
 * Behavior" and `test/feature_subtree/feature_test_multispool.ml`), ported where nothing
 * here covered them. Their queue1/queue2/queue3 are inbox/outbox/dead here.
 */

const dir = useTempDir();

function newSpool(nameGenerator?: NameGenerator): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.create(
    join(dir.path, "spool"),
    widgetSpoolable(nameGenerator ? { nameGenerator } : {}),
  );
}

/** Multispool's `Reserve prefix`: `<prefix><attempt, 6 digits>`, the next number when taken. */
function numbered(prefix: string): NameGenerator {
  return { next: (attempt) => `${prefix}${String(attempt).padStart(6, "0")}` };
}

/** What `find spool | sort` prints (C locale). */
async function layout(spool: Spool<Widget, WidgetQueue>): Promise<string[]> {
  const paths = (await readdir(spool.dir, { recursive: true })).map((p) => `spool/${p}`);
  return ["spool", ...paths].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const EMPTY = [
  "spool",
  "spool/.data",
  "spool/.registry",
  "spool/.spool-id",
  "spool/.tmp",
  "spool/dead",
  "spool/dead/.checkout",
  "spool/inbox",
  "spool/inbox/.checkout",
  "spool/outbox",
  "spool/outbox/.checkout",
];

/** EMPTY plus the entries named in each directory. */
function withFiles(files: Record<string, string[]>): string[] {
  const extra = Object.entries(files).flatMap(([d, names]) => names.map((n) => `spool/${d}/${n}`));
  return [...EMPTY, ...extra].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const data = (serial: number, customer: string) => JSON.stringify({ serial, customer });

describe("Multispool's File Behavior, step by step", () => {
  it("the files of one entry at each step: enqueue, checkout, remove", async () => {
    const spool = await newSpool();
    expect(await layout(spool)).toEqual(EMPTY);

    const name = await spool.reserveName(numbered("q1_co_test_"));
    expect(name).toBe("q1_co_test_000000");
    const e = await spool.enqueue("inbox", { id: 1 }, data(12345, "Acme Incorporated"), { name });
    expect(await layout(spool)).toEqual(
      withFiles({ ".data": [name], ".registry": [name], inbox: [name] }),
    );

    const co = await spool.checkout(e);
    expect(await layout(spool)).toEqual(
      withFiles({ ".data": [name], ".registry": [name], "inbox/.checkout": [name] }),
    );
    expect((await Expert.listCheckoutsUnsafe(spool, "outbox")).map((c) => c.name)).toEqual([]);
    expect((await Expert.listCheckoutsUnsafe(spool, "inbox")).map((c) => c.name)).toEqual([name]);

    expect(await co.remove()).toEqual({ kind: "done" });
    expect(await layout(spool)).toEqual(EMPTY);
  });

  it("numbered-suffix names, a save into another queue, iterAvailable saving back, withEntry in one queue", async () => {
    const spool = await newSpool();
    const put = async (queue: WidgetQueue, prefix: string, note: string, serial: number) => {
      const name = await spool.reserveName(numbered(prefix));
      await spool.enqueue(queue, { id: serial, note }, data(serial, note), {
        name,
      });
      return name;
    };
    // A prefix already used gets the next free number: the reservation retries.
    expect(await put("inbox", "q1prefix1_", "Hello, world 1!", 1000000)).toBe("q1prefix1_000000");
    expect(await put("inbox", "q1prefix1_", "Hello, world 2!", 1000001)).toBe("q1prefix1_000001");
    expect(await put("inbox", "q1prefix2_", "Hello, world 3!", 1000002)).toBe("q1prefix2_000000");
    expect(await put("outbox", "q2prefix1_", "Hello, world 4!", 2000001)).toBe("q2prefix1_000000");
    expect(await put("outbox", "q2prefix2_", "Hello, world 5!", 2000002)).toBe("q2prefix2_000000");
    expect(await put("outbox", "q2prefix1_", "Hello, world 6!", 4444444)).toBe("q2prefix1_000001");
    const all = [
      "q1prefix1_000000",
      "q1prefix1_000001",
      "q1prefix2_000000",
      "q2prefix1_000000",
      "q2prefix1_000001",
      "q2prefix2_000000",
    ];
    const q1 = ["q1prefix1_000000", "q1prefix1_000001", "q1prefix2_000000"];
    const q2 = ["q2prefix1_000000", "q2prefix1_000001", "q2prefix2_000000"];
    expect(await layout(spool)).toEqual(
      withFiles({ ".data": all, ".registry": all, inbox: q1, outbox: q2 }),
    );
    expect((await spool.list("inbox")).map((e) => e.name)).toEqual(q1);
    expect((await spool.list("outbox")).map((e) => e.name)).toEqual(q2);

    // Check one out of inbox and save it into outbox.
    const moved = await spool.checkout(spool.entry("inbox", "q1prefix1_000000"));
    expect(await moved.save("outbox")).toEqual({ kind: "done" });
    expect(await layout(spool)).toEqual(
      withFiles({
        ".data": all,
        ".registry": all,
        inbox: ["q1prefix1_000001", "q1prefix2_000000"],
        outbox: ["q1prefix1_000000", ...q2],
      }),
    );

    // iterAvailable over outbox, saving each entry back into outbox: each is visited once,
    // in name order, with its data, and none is visited again although each reappears.
    const reader = new QueueReader(spool, "outbox");
    try {
      const seen: string[] = [];
      const n = await reader.iterAvailable(async (m, file) => {
        seen.push(`${m.note} ${(await file.read()).toString()}`);
        return [{ kind: "save", queue: "outbox", metadata: m }, undefined];
      });
      expect(n).toBe(4);
      expect(seen).toEqual([
        `Hello, world 1! ${data(1000000, "Hello, world 1!")}`,
        `Hello, world 4! ${data(2000001, "Hello, world 4!")}`,
        `Hello, world 6! ${data(4444444, "Hello, world 6!")}`,
        `Hello, world 5! ${data(2000002, "Hello, world 5!")}`,
      ]);
      expect((await spool.list("outbox")).map((e) => e.name)).toEqual(["q1prefix1_000000", ...q2]);

      // withEntry within one queue: new metadata, same queue, same name, data untouched.
      const replaced = await spool.withEntry(
        spool.entry("outbox", "q2prefix1_000000"),
        async (m) => [{ kind: "save", queue: "outbox", metadata: { id: 42 } }, m.note],
      );
      expect(replaced).toBe("Hello, world 4!");
      const again: Array<string | number> = [];
      await reader.iterAvailable(async (m) => {
        again.push(m.note ?? m.id);
        return [{ kind: "save", queue: "outbox", metadata: m }, undefined];
      });
      expect(again).toEqual(["Hello, world 1!", 42, "Hello, world 6!", "Hello, world 5!"]);
      const kept = spool.entry("outbox", "q2prefix1_000000");
      expect(await kept.direct.read()).toEqual({ metadata: { id: 42 }, attempts: 0 });
      expect((await kept.dataFile().read()).toString()).toBe(data(2000001, "Hello, world 4!"));
    } finally {
      await reader.close();
    }
  });
});

describe("Multispool's feature tests: waiting readers", () => {
  /**
   * Multispool's dequeue_and_move: a reader started on an empty inbox takes entries as
   * they come and saves each into outbox, until `iterations` or `stopped`.
   */
  async function dequeueAndMove(
    spool: Spool<Widget, WidgetQueue>,
    iterations: number,
    signal: AbortSignal,
    onMoved: (i: number) => void = () => undefined,
  ): Promise<{ moved: number[]; stopped: boolean }> {
    const reader = new QueueReader(spool, "inbox");
    const moved: number[] = [];
    try {
      while (moved.length < iterations) {
        const r = await reader.dequeue(signal);
        if (r.kind === "stopped") return { moved, stopped: true };
        moved.push(r.entry.contents.id);
        expect(await r.entry.save("outbox")).toEqual({ kind: "done" });
        onMoved(moved.length);
      }
      return { moved, stopped: false };
    } finally {
      await reader.close();
    }
  }

  async function enqueueCogs(spool: Spool<Widget, WidgetQueue>, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      await spool.enqueue("inbox", { id: i }, data(i, "Amalgamated Consolidated"));
    }
  }

  it("Dequeue Interrupt: a waiting dequeue stopped by its signal returns stopped and takes nothing", async () => {
    const spool = await newSpool(lexicographicTimeNames());
    const ac = new AbortController();
    let fourMoved!: () => void;
    const four = new Promise<void>((r) => {
      fourMoved = r;
    });
    const pipeline = dequeueAndMove(spool, 5, ac.signal, (n) => n === 4 && fourMoved());
    await enqueueCogs(spool, 4);
    await four;
    ac.abort();
    expect(await pipeline).toEqual({ moved: [0, 1, 2, 3], stopped: true });
    // The stopped reader took nothing more: what arrives now stays in the queue.
    const late = await spool.enqueue("inbox", { id: 4 }, "late");
    expect((await spool.list("inbox")).map((e) => e.name)).toEqual([late.name]);
    expect(await spool.listCheckedOutNames("inbox")).toEqual([]);
  });

  it("Queue Iteration: entries enqueued while a reader waits are moved in order", async () => {
    const spool = await newSpool(lexicographicTimeNames());
    const pipeline = dequeueAndMove(spool, 10, new AbortController().signal);
    await enqueueCogs(spool, 10);
    const ids = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    expect(await pipeline).toEqual({ moved: ids, stopped: false });
    const contents = await Promise.all(
      (await spool.list("outbox")).map(async (e) => (await e.direct.contents()).id),
    );
    expect(contents).toEqual(ids);
  });

  it("QueueReader.iter handles entries as they come until its signal aborts", async () => {
    const spool = await newSpool(lexicographicTimeNames());
    const reader = new QueueReader(spool, "inbox");
    const ac = new AbortController();
    const handled: number[] = [];
    try {
      const running = reader.iter(async (m) => {
        handled.push(m.id);
        if (handled.length === 6) ac.abort();
        return [{ kind: "save", queue: "outbox" }, undefined];
      }, ac.signal);
      await enqueueCogs(spool, 6);
      await running;
      expect(handled).toEqual([0, 1, 2, 3, 4, 5]);
      expect(await spool.list("inbox")).toEqual([]);
      expect(await spool.list("outbox")).toHaveLength(6);
      // Stopped: a later entry is left alone.
      await spool.enqueue("inbox", { id: 6 }, "late");
      await reader.iter(async () => {
        throw new Error("an aborted iter must not handle anything");
      }, ac.signal);
      expect(await spool.list("inbox")).toHaveLength(1);
    } finally {
      await reader.close();
    }
  });
});
