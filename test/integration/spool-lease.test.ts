import { utimes } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Expert, Monitor, QueueReader, Spool } from "../../src/spool/index.js";
import {
  bundleSpoolWorker,
  killAll,
  readResult,
  WorkerProcess,
} from "../helpers/spool-processes.js";
import { fingerprintSpool } from "../helpers/spool-scan.js";
import type { ReapResult, SpoolRef } from "../helpers/spool-worker-config.js";
import { useSuiteTempDir, useTempDir } from "../helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../helpers/widget.js";

const LEASE_MS = 150;
/** Long enough past LEASE_MS that the lease has certainly ended (graceMs is 0). */
const PAST_LEASE_MS = LEASE_MS + 80;
const LEASES = { graceMs: 0, maxAttempts: 3, deadLetterQueue: "dead" as const };

const dir = useTempDir();
let spool: Spool<Widget, WidgetQueue>;

beforeEach(async () => {
  spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable({ leases: LEASES }));
});

const names = async (q: WidgetQueue) => (await spool.list(q)).map((e) => e.name);

describe("lease expiry", () => {
  it("expireLeases returns an expired checkout to its queue, counting the attempt", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    const co = await spool.checkout(e, { leaseMs: LEASE_MS });
    expect(co.attempts).toBe(0);
    expect(await spool.expireLeases()).toEqual([]);
    expect(await names("inbox")).toEqual([]);
    await sleep(PAST_LEASE_MS);
    const expired = await spool.expireLeases();
    expect(expired.map(({ name, queue, to, attempts }) => ({ name, queue, to, attempts }))).toEqual(
      [{ name: e.name, queue: "inbox", to: "inbox", attempts: 1 }],
    );
    expect(await names("inbox")).toEqual([e.name]);
    expect(await Expert.listCheckoutsUnsafe(spool, "inbox")).toEqual([]);
    expect(await e.direct.read()).toEqual({ metadata: { id: 1 }, attempts: 1 });
    const again = await spool.checkout(e, { leaseMs: 60_000 });
    expect(again.attempts).toBe(1);
    expect((await again.dataFile().read()).toString()).toBe("a");
    expect(await spool.expireLeases()).toEqual([]);
  });

  it("a waiting QueueReader reaps the expired lease and hands the entry out again", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await spool.checkout(e, { leaseMs: LEASE_MS });
    const reader = new QueueReader(spool, "inbox", { reapEveryMs: 25, leaseMs: 60_000 });
    try {
      const r = await reader.dequeue(AbortSignal.timeout(20_000));
      expect(r.kind).toBe("checked_out");
      if (r.kind !== "checked_out") return;
      expect(r.entry.name).toBe(e.name);
      expect(r.entry.attempts).toBe(1);
      expect(await r.entry.remove()).toEqual({ kind: "done" });
    } finally {
      await reader.close();
    }
  });

  it("after maxAttempts failed deliveries (expiries and releases) the entry is dead-lettered", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    // First failure: the lease expires.
    await spool.checkout(e, { leaseMs: LEASE_MS });
    await sleep(PAST_LEASE_MS);
    expect((await spool.expireLeases()).map((x) => [x.to, x.attempts])).toEqual([["inbox", 1]]);
    // Second: released by its holder.
    const co = await spool.checkout(e, { leaseMs: 60_000 });
    expect(await co.release()).toEqual({ kind: "done", to: "inbox" });
    expect(await e.direct.read()).toEqual({ metadata: { id: 1 }, attempts: 2 });
    // Third: expires again, and maxAttempts (3) is reached.
    await spool.checkout(e, { leaseMs: LEASE_MS });
    await sleep(PAST_LEASE_MS);
    expect((await spool.expireLeases()).map((x) => [x.queue, x.to, x.attempts])).toEqual([
      ["inbox", "dead", 3],
    ]);
    expect(await names("inbox")).toEqual([]);
    expect(await names("dead")).toEqual([e.name]);
    expect(await spool.entry("dead", e.name).direct.read()).toEqual({
      metadata: { id: 1 },
      attempts: 3,
    });
    expect((await spool.entry("dead", e.name).dataFile().read()).toString()).toBe("a");
  });

  it("extendLease keeps the entry past its first deadline", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    const co = await spool.checkout(e, { leaseMs: LEASE_MS });
    const first = co.leaseUntil;
    await sleep(LEASE_MS / 2);
    expect(await co.extendLease(3_000)).toEqual({ kind: "done" });
    expect(co.leaseUntil).toBeGreaterThan(first);
    await sleep(PAST_LEASE_MS);
    expect(await spool.expireLeases()).toEqual([]);
    expect(await co.held()).toBe(true);
    expect(await co.save("outbox")).toEqual({ kind: "done" });
    expect(await spool.entry("outbox", e.name).direct.read()).toEqual({
      metadata: { id: 1 },
      attempts: 0,
    });
  });

  it("a holder whose lease ended and was taken by another gets lease_lost and changes nothing", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    const first = await spool.checkout(e, { leaseMs: LEASE_MS });
    await sleep(PAST_LEASE_MS);
    expect(await spool.expireLeases()).toHaveLength(1);
    const second = await spool.checkout(e, { leaseMs: 60_000 });
    expect(second.attempts).toBe(1);
    const before = await fingerprintSpool(spool.dir);
    first.update((m) => ({ ...m, note: "stale holder" }));
    expect(await first.held()).toBe(false);
    expect(await first.save("outbox")).toEqual({ kind: "lease_lost" });
    expect(await first.remove()).toEqual({ kind: "lease_lost" });
    expect(await first.extendLease(60_000)).toEqual({ kind: "lease_lost" });
    expect(await first.release()).toEqual({ kind: "lease_lost" });
    expect(await fingerprintSpool(spool.dir)).toEqual(before);
    // The new holder is unaffected.
    expect(await second.held()).toBe(true);
    expect(second.contents).toEqual({ id: 1 });
    expect(await second.remove()).toEqual({ kind: "done" });
  });

  it("a holder past its deadline gets lease_lost even before anyone reaps it", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    const co = await spool.checkout(e, { leaseMs: LEASE_MS });
    await sleep(PAST_LEASE_MS);
    const before = await fingerprintSpool(spool.dir);
    expect(await co.save("outbox")).toEqual({ kind: "lease_lost" });
    expect(await co.remove()).toEqual({ kind: "lease_lost" });
    expect(await co.extendLease(60_000)).toEqual({ kind: "lease_lost" });
    expect(await fingerprintSpool(spool.dir)).toEqual(before);
    expect((await spool.expireLeases()).map((x) => x.attempts)).toEqual([1]);
  });
});

describe("a losing checkout attempt", () => {
  // BUG (src/spool/core.ts, SpoolCore.checkout): the registry file's mtime (the checkout
  // start time) is set *before* the rename that decides who wins, so every losing attempt
  // on an entry someone else holds resets that holder's checkout time. A reader retrying a
  // stale listing thus postpones the reaping of an expired lease by graceMs after each try,
  // and hides a stuck checkout from the monitor's too_old check. Flip to `it` once fixed.
  it("does not postpone the expiry of the winner's lease", async () => {
    const graced = await Spool.load(spool.dir, widgetSpoolable({ leases: { graceMs: 1_000 } }));
    const e = await graced.enqueue("inbox", { id: 1 }, "a");
    await graced.checkout(e, { leaseMs: LEASE_MS });
    await sleep(LEASE_MS + 1_100);
    expect(await graced.checkoutIfPresent(e)).toEqual({ kind: "not_found" });
    expect((await graced.expireLeases()).map((x) => x.name)).toEqual([e.name]);
  });

  it("does not hide a stuck checkout from the monitor", async () => {
    const e = await spool.enqueue("inbox", { id: 1 }, "a");
    await spool.checkout(e, { leaseMs: 2 * 3_600_000 });
    const hourAgo = (Date.now() - 3_600_000) / 1000;
    await utimes(join(spool.dir, ".registry", e.name), hourAgo, hourAgo);
    const monitor = new Monitor(spool, { maxCheckedOutAgeMs: 60_000 });
    expect((await monitor.fsck()).map((p) => p.kind)).toEqual(["too_old"]);
    expect(await spool.checkoutIfPresent(e)).toEqual({ kind: "not_found" });
    expect((await monitor.fsck()).map((p) => p.kind)).toEqual(["too_old"]);
  });
});

describe("concurrent reapers", () => {
  const bundleDir = useSuiteTempDir("geospool-worker-");
  let bundle: string;
  beforeAll(async () => {
    bundle = await bundleSpoolWorker(bundleDir.path);
  });

  const ENTRIES = 20;
  const ROUNDS = 8;
  const ROUND_LEASE_MS = 60;

  it("two processes reaping in a loop never move an entry twice: one attempt per expiry", async () => {
    // No dead-letter queue: every expiry goes back to inbox, however many rounds. Grace 0:
    // reapers race each other and the checkouts on every expiry (a checkout between its
    // rename and the setting of its deadline is protected by its ctime; see isExpired).
    const leases = { graceMs: 0 };
    const reaping = await Spool.load(spool.dir, widgetSpoolable({ leases }));
    const ref: SpoolRef = { dir: spool.dir, leases };
    const all: string[] = [];
    for (let i = 0; i < ENTRIES; i++)
      all.push((await reaping.enqueue("inbox", { id: i }, `d${i}`)).name);
    const reapers = [0, 1].map(
      (i) =>
        new WorkerProcess(bundle, {
          role: "reap",
          spool: ref,
          out: join(dir.path, `reaper-${i}.json`),
        }),
    );
    try {
      await Promise.all(reapers.map((r) => r.waitFor("ready")));
      for (let round = 1; round <= ROUNDS; round++) {
        for (const e of await reaping.list("inbox")) {
          const co = await reaping.checkout(e, { leaseMs: ROUND_LEASE_MS });
          expect(co.attempts, `${e.name} in round ${round}`).toBe(round - 1);
        }
        const deadline = Date.now() + 20_000;
        while ((await reaping.list("inbox")).length < ENTRIES && Date.now() < deadline) {
          await sleep(10);
        }
        expect((await reaping.list("inbox")).map((e) => e.name)).toEqual(all);
        expect(await Expert.listCheckoutsUnsafe(reaping, "inbox")).toEqual([]);
        for (const e of await reaping.list("inbox")) {
          expect((await e.direct.read()).attempts, `${e.name} after round ${round}`).toBe(round);
        }
      }
      for (const r of reapers) r.send({ kind: "stop" });
      await Promise.all(reapers.map((r) => r.succeeded()));
    } finally {
      await killAll(reapers);
    }
    const expiries = new Map<string, number[]>();
    for (let i = 0; i < 2; i++) {
      const res = await readResult<ReapResult>(join(dir.path, `reaper-${i}.json`));
      for (const x of res.expired) {
        expect(x.to).toBe("inbox");
        expiries.set(x.name, [...(expiries.get(x.name) ?? []), x.attempts]);
      }
    }
    const oneToRounds = Array.from({ length: ROUNDS }, (_, i) => i + 1);
    for (const name of all) {
      expect(
        [...(expiries.get(name) ?? [])].sort((a, b) => a - b),
        name,
      ).toEqual(oneToRounds);
    }
    expect(await new Monitor(reaping).fsck()).toEqual([]);
  });
});
