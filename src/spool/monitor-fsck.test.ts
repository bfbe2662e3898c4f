import { Dir, Stats } from "node:fs";
import { unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import { Monitor, type Problem, Spool } from "./index.js";

const dir = useTempDir();
const HOUR = 3_600_000;

/** The spool, and the same spool opened again with a throttle that sees every result. */
async function spools(onResult: (result: unknown) => Promise<void> | void = () => undefined) {
  const path = join(dir.path, "spool");
  const spool = await Spool.create(path, widgetSpoolable());
  const watched = await Spool.load<Widget, WidgetQueue>(path, {
    ...widgetSpoolable(),
    throttle: {
      async run<T>(op: () => Promise<T>): Promise<T> {
        const result = await op();
        await onResult(result);
        return result;
      },
    },
  });
  return { spool, watched };
}

const kinds = (ps: readonly Problem<WidgetQueue>[]) =>
  ps.map((p) => `${p.kind} ${"dir" in p ? p.dir.kind : "dirs"} ${p.file.filename}`).sort();

describe("fsck walks the spool without a record per file", () => {
  it("a healthy spool: names from listings only, files stat'ed only for checkouts", async () => {
    let stats = 0;
    const { spool, watched } = await spools((r) => {
      if (r instanceof Stats) stats++;
    });
    // More than one slice of the walk in inbox.
    const results = await spool.enqueueBatch(
      Array.from({ length: 700 }, (_, i) => ({
        queue: (i % 7 === 0 ? "outbox" : "inbox") as WidgetQueue,
        metadata: { id: i },
        data: `d${i}`,
      })),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    const first = results[0];
    if (!first?.ok) throw new Error("no entry");
    await spool.checkout(first.entry, { leaseMs: HOUR });
    expect(await new Monitor(watched).fsck()).toEqual([]);
    // The checkout file (deadline, change time) and its registry file (checkout time).
    expect(stats).toBe(2);
  });

  it("an entry enqueued after the registry was walked is looked for again, not reported", async () => {
    let late: Promise<void> | undefined;
    let listings = 0;
    const { spool, watched } = await spools(async (r) => {
      // The first listing is the registry's: enqueue right after it.
      if (Array.isArray(r) && ++listings === 1) {
        late = spool.enqueue("inbox", { id: 1 }, "late").then(() => undefined);
        await late;
      }
    });
    await spool.enqueue("outbox", { id: 0 }, "early");
    expect(await new Monitor(watched).fsck()).toEqual([]);
    expect(late).toBeDefined();
  });

  it("what is wrong is still found: data, queue and tmp files without registry, duplicates, missing data", async () => {
    const { spool, watched } = await spools();
    const a = await spool.enqueue("inbox", { id: 1 }, "a");
    const b = await spool.enqueue("inbox", { id: 2 }, "b");
    const c = await spool.enqueue("outbox", { id: 3 }, "c");
    const p = (...parts: string[]) => join(spool.dir, ...parts);
    await writeFile(p(".data", "stray"), "x");
    await writeFile(p(".tmp", "stray2~x"), "x");
    await utimes(p(".tmp", "stray2~x"), 0, 0);
    await writeFile(p("dead", b.name), "copy");
    await unlink(p(".registry", a.name));
    await unlink(p(".data", c.name));
    expect(kinds(await new Monitor(watched).fsck())).toEqual(
      [
        "orphaned data stray",
        "orphaned tmp stray2~x",
        "too_old tmp stray2~x",
        `orphaned data ${a.name}`,
        `orphaned queue ${a.name}`,
        `duplicated dirs ${b.name}`,
        `missing_data queue ${c.name}`,
      ].sort(),
    );
  });
});

describe("fsck of a still spool", () => {
  it("lists only what time can change, keeps what the listings showed, and lists all again after a change", async () => {
    const listed: string[] = [];
    const { spool, watched } = await spools((r) => {
      if (r instanceof Dir) listed.push(r.path.slice(spool.dir.length + 1));
    });
    const a = await spool.enqueue("inbox", { id: 1 }, "a");
    const b = await spool.enqueue("inbox", { id: 2 }, "b");
    const c = await spool.enqueue("outbox", { id: 3 }, "c");
    await spool.checkout(c, { leaseMs: HOUR });
    const p = (...parts: string[]) => join(spool.dir, ...parts);
    await writeFile(p(".data", "stray"), "x");
    await writeFile(p("dead", b.name), "copy");
    await unlink(p(".registry", a.name));
    const monitor = new Monitor(watched);
    const whole = kinds(await monitor.fsck());
    expect(whole).toEqual(
      [
        "orphaned data stray",
        `orphaned data ${a.name}`,
        `orphaned queue ${a.name}`,
        `duplicated dirs ${b.name}`,
      ].sort(),
    );
    expect(listed).toContain(".registry");
    // Directory stamps are trusted from a whole pass that began over a second after they
    // last moved (a change in the same clock tick would not move them): wait that long, as
    // a node's next cycle would, and take that pass.
    await new Promise((r) => setTimeout(r, 1_100));
    expect(kinds(await monitor.fsck())).toEqual(whole);

    listed.length = 0;
    expect(kinds(await monitor.fsck())).toEqual(whole);
    expect(listed.sort()).toEqual([
      ".tmp",
      "dead/.checkout",
      "inbox/.checkout",
      "outbox/.checkout",
    ]);

    // Time goes on, no directory changes: the checkout's lease has expired.
    listed.length = 0;
    expect(kinds(await monitor.fsck(Date.now() + 2 * HOUR))).toEqual(
      [...whole, `lease_expired checkout ${c.name}`, `too_old checkout ${c.name}`].sort(),
    );
    expect(listed).not.toContain(".registry");

    // A change: everything is listed again, and what it made is found.
    await unlink(p(".data", "stray"));
    listed.length = 0;
    expect(kinds(await monitor.fsck())).toEqual(whole.filter((k) => k !== "orphaned data stray"));
    expect(listed).toContain(".registry");
    expect(listed).toContain("inbox");
  });
});

describe("the daemon", () => {
  it("walks the spool once per cycle when its repair changed nothing, twice when it did", async () => {
    let walks = 0;
    const { spool, watched } = await spools((r) => {
      if (r instanceof Dir && r.path.endsWith(".registry")) walks++;
    });
    await spool.enqueue("inbox", { id: 1 }, "a");
    // Repaired at the first cycle only.
    await writeFile(join(spool.dir, ".tmp", "stale~x"), "x");
    await utimes(join(spool.dir, ".tmp", "stale~x"), 0, 0);
    const stop = new AbortController();
    let cycles = 0;
    const repaired: string[] = [];
    const errors: unknown[] = [];
    await new Monitor(watched).daemon({
      checkEveryMs: 1,
      repair: true,
      signal: stop.signal,
      onEvent: () => undefined,
      onRepair: (a) => repaired.push(a.action),
      onError: (err) => errors.push(err),
      onProblems: () => {
        if (++cycles === 3) stop.abort();
      },
    });
    expect(errors).toEqual([]);
    expect(repaired.length).toBeGreaterThan(0);
    expect(cycles).toBe(3);
    expect(walks).toBe(3 + 1);
  });
});
