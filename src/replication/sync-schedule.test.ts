import { describe, expect, it } from "vitest";
import { batchDelay, MAX_BATCH, SyncSchedule } from "./sync-schedule.js";

describe("SyncSchedule's stream rows", () => {
  it("keeps a stream row until a sync's query returned it, and syncs its entry meanwhile", () => {
    const s = new SyncSchedule(() => 0);
    const enqueue = { origin: "n2", seq: "7", entry: "e1", op: "enqueue" };
    const move = { origin: "n2", seq: "8", entry: "e1", op: "move" };
    s.streamRow("e1", enqueue);
    const first = s.takeBatch();
    expect(first.map(([e, d]) => [e, d.peer])).toEqual([["e1", true]]);
    expect(s.streamedRows("e1")).toEqual([enqueue]);
    // The move arrives during that sync, whose query returned the enqueue.
    s.streamRow("e1", move);
    s.forgetStreamed("e1", new Set([enqueue]));
    s.finishBatch(first);
    expect(s.streamedRows("e1")).toEqual([move]);
    // The next sync's query does not return the move yet: it is kept.
    const second = s.takeBatch();
    s.forgetStreamed("e1", new Set());
    s.finishBatch(second);
    expect(s.peerChangePending("e1")).toBe(true);
    // So the entry is synced again, as a peer change, until a query returns the move.
    s.releaseDueRetries();
    const third = s.takeBatch();
    expect(third.map(([e, d]) => [e, d.peer])).toEqual([["e1", true]]);
    s.forgetStreamed("e1", new Set([move]));
    s.finishBatch(third);
    expect(s.hasStreamed("e1")).toBe(false);
    s.releaseDueRetries();
    expect(s.takeBatch()).toEqual([]);
  });

  it("knows which peer rows the stream delivered, and the journal's rows at start", () => {
    const s = new SyncSchedule(() => 0);
    s.streamedAtStart(new Map([["n2", 10n]]));
    expect(s.streamedThrough("n2", 10n)).toBe(true);
    expect(s.streamedThrough("n2", 11n)).toBe(false);
    expect(s.streamedThrough("n3", 1n)).toBe(false);
    s.streamRow("e1", { origin: "n3", seq: "4", entry: "e1" });
    expect(s.streamedThrough("n3", 4n)).toBe(true);
    expect(s.knows("e1")).toBe(true);
    expect(s.knows("e2")).toBe(false);
  });
});

describe("batchDelay", () => {
  it("waits out the interval since the last batch began, and no longer", () => {
    expect(batchDelay(1_000, 1_004, 10, 1)).toBe(6);
    expect(batchDelay(1_000, 1_000, 10, 1)).toBe(10);
    // A clock that stepped back still waits at most one interval.
    expect(batchDelay(1_000, 990, 10, 1)).toBe(10);
  });

  it("syncs at once on a quiet node, when turned off, or when a whole batch is dirty", () => {
    expect(batchDelay(1_000, 1_010, 10, 1)).toBe(0);
    expect(batchDelay(Number.NEGATIVE_INFINITY, 5, 10, 1)).toBe(0);
    expect(batchDelay(1_000, 1_001, 0, 1)).toBe(0);
    expect(batchDelay(1_000, 1_001, 10, MAX_BATCH)).toBe(0);
    // A peer's row that woke an idle loop: someone may be waiting for it here.
    expect(batchDelay(1_000, 1_001, 10, 1, true)).toBe(0);
  });
});

describe("a peer's row that wakes an idle loop", () => {
  it("is told apart from this node's own marks, and only until the next batch", async () => {
    const s = new SyncSchedule(() => 0);
    // The loop waits; this node's own transition wakes it: the window applies.
    let woke = s.waitForWork();
    s.mark("local", "service");
    await woke;
    expect(s.peerWokeIdle).toBe(false);
    s.finishBatch(s.takeBatch());
    // The loop waits again; a peer's row wakes it: synced at once.
    woke = s.waitForWork();
    s.streamRow("remote", { origin: "n2", seq: "1", entry: "remote", op: "enqueue" });
    await woke;
    expect(s.peerWokeIdle).toBe(true);
    s.finishBatch(s.takeBatch());
    // Marks that came while that batch ran (the loop busy, not idle) wait for the window.
    s.streamRow("remote", { origin: "n2", seq: "2", entry: "remote", op: "remove" });
    expect(s.peerWokeIdle).toBe(false);
    expect(s.dirtyCount).toBe(1);
  });
});
