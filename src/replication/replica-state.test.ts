import { describe, expect, it } from "vitest";
import { compareLsn } from "./apply-stream.js";
import type { EntryState } from "./fold.js";
import {
  type Placed,
  payloadDigest,
  sameState,
  satisfies,
  targetOf,
  transitionRows,
} from "./replica-state.js";

const payload = Buffer.from(`{"sha256":"${"a".repeat(64)}","size":3,"at":1}\nuser`);
const digest = payloadDigest(payload);
const queued = (queue: string, attempts = 0): Placed => ({
  queue,
  checkedOut: false,
  leaseUntil: null,
  attempts,
  payloadSha256: digest,
});
const held = (queue: string, leaseUntil: number, attempts = 0): Placed => ({
  queue,
  checkedOut: true,
  leaseUntil,
  attempts,
  payloadSha256: digest,
});
const dataOf = () => ({ sha256: "a".repeat(64), size: 3 });

describe("replica state", () => {
  it("compares placements, with a second of slack on lease deadlines", () => {
    expect(sameState(null, null)).toBe(true);
    expect(sameState(queued("inbox"), null)).toBe(false);
    expect(sameState(queued("inbox"), queued("outbox"))).toBe(false);
    expect(sameState(queued("inbox"), queued("inbox", 1))).toBe(false);
    expect(sameState(held("inbox", 10_000), held("inbox", 10_900))).toBe(true);
    expect(sameState(held("inbox", 10_000), held("inbox", 12_000))).toBe(false);
    expect(sameState(held("inbox", 10_000), queued("inbox"))).toBe(false);
  });

  it("a pending entry asks nothing of the applier but is not a recorded local entry", () => {
    const pending = targetOf({ kind: "pending" });
    expect(satisfies(queued("inbox"), pending)).toBe(true);
    expect(satisfies(queued("inbox"), pending, false)).toBe(false);
    expect(satisfies(null, pending, false)).toBe(true);
    const removed = targetOf({ kind: "removed" });
    expect(satisfies(queued("inbox"), removed)).toBe(false);
    expect(satisfies(null, removed)).toBe(true);
  });

  it("targets a queued or checked-out fold with its payload digest", () => {
    const state: EntryState = {
      kind: "checked_out",
      queue: "inbox",
      metadata: payload,
      dataSha256: "a".repeat(64),
      dataSize: 3,
      attempts: 2,
      enqueuedAt: 1,
      holder: "n1",
      leaseUntil: 50_000,
    };
    const t = targetOf(state);
    expect(t.kind).toBe("placed");
    expect(satisfies(held("inbox", 50_000, 2), t)).toBe(true);
    expect(satisfies(queued("inbox", 2), t)).toBe(false);
  });

  it("turns each local transition into the journal rows that record it", () => {
    const ops = (from: Placed | null, to: Placed | null) => {
      const rows = transitionRows("e1", from, to, to === null ? null : payload, dataOf);
      if ("problem" in rows) throw new Error(rows.problem);
      return rows.map((r) => `${r.op}:${r.queue}:${r.attempts}`);
    };
    expect(ops(null, queued("inbox"))).toEqual(["enqueue:inbox:0"]);
    expect(ops(null, held("inbox", 9_000))).toEqual(["enqueue:inbox:0", "checkout:inbox:0"]);
    expect(ops(queued("inbox"), held("inbox", 9_000))).toEqual(["checkout:inbox:0"]);
    expect(ops(held("inbox", 9_000), queued("outbox"))).toEqual(["move:outbox:0"]);
    expect(ops(held("inbox", 9_000), queued("inbox", 1))).toEqual(["release:inbox:1"]);
    expect(ops(held("inbox", 9_000), held("inbox", 20_000))).toEqual(["checkout:inbox:0"]);
    expect(ops(queued("inbox"), null)).toEqual(["remove:inbox:0"]);
    expect(ops(null, null)).toEqual([]);
  });

  it("refuses to journal a new entry whose metadata does not name its data", () => {
    const rows = transitionRows("e1", null, queued("inbox"), payload, () => undefined);
    expect(rows).toEqual({ problem: expect.stringContaining("digest") });
  });

  it("orders LSNs numerically", () => {
    expect(compareLsn("0/A", "0/9")).toBe(1);
    expect(compareLsn("1/0", "0/FFFFFFFF")).toBe(1);
    expect(compareLsn("2/10", "2/10")).toBe(0);
  });
});
