import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { foldEntry } from "./fold.js";
import type { StoredJournalRow } from "./journal-store.js";
import { type Placed, payloadDigest, targetOf } from "./replica-state.js";
import {
  applyPlan,
  decide,
  inFluxAction,
  mergeStreamed,
  needsFold,
  peerEnqueueOf,
  quarantineAll,
  stillOverridden,
  toLocal,
} from "./sync-decision.js";

const data = Buffer.from("abc");
const dataSha256 = createHash("sha256").update(data).digest("hex");
const payload = Buffer.from("meta");
const digest = payloadDigest(payload);
const queued = (queue: string, attempts = 0): Placed => ({
  queue,
  checkedOut: false,
  leaseUntil: null,
  attempts,
  payloadSha256: digest,
});
const held = (queue: string, leaseUntil: number): Placed => ({
  queue,
  checkedOut: true,
  leaseUntil,
  attempts: 0,
  payloadSha256: digest,
});

const base = { entry: "e1", queue: "inbox", attempts: 0, recordedAt: new Date(0) };
const enqueue = (origin: string, seq: bigint, hlc: bigint, inline?: Buffer): StoredJournalRow => ({
  ...base,
  origin,
  seq,
  hlc,
  op: "enqueue",
  metadata: payload,
  dataSha256,
  dataSize: data.length,
  leaseUntil: null,
  ...(inline === undefined ? {} : { inlineData: inline }),
});
const remove = (origin: string, seq: bigint, hlc: bigint): StoredJournalRow => ({
  ...base,
  origin,
  seq,
  hlc,
  op: "remove",
  metadata: null,
  dataSha256: null,
  dataSize: null,
  leaseUntil: null,
});
const checkout = (
  origin: string,
  seq: bigint,
  hlc: bigint,
  leaseUntil: number,
): StoredJournalRow => ({
  ...base,
  origin,
  seq,
  hlc,
  op: "checkout",
  metadata: null,
  dataSha256: null,
  dataSize: null,
  leaseUntil,
});
const fold = (rows: StoredJournalRow[]) => targetOf(foldEntry(rows, 1_000));

describe("the sync decision", () => {
  it("reads files as a replica state", () => {
    expect(toLocal({ kind: "absent" })).toBeNull();
    expect(toLocal({ kind: "in_flux" })).toBeNull();
    expect(
      toLocal({ kind: "present", queue: "inbox", checkedOut: false, attempts: 0, payload }),
    ).toEqual(queued("inbox"));
    expect(
      toLocal({
        kind: "present",
        queue: "inbox",
        checkedOut: true,
        leaseUntil: 5,
        attempts: 0,
        payload,
      }),
    ).toEqual(held("inbox", 5));
  });

  it("reads the fold for peer changes, unexplained differences and stalled placements only", () => {
    const seen = {
      kind: "present",
      queue: "inbox",
      checkedOut: false,
      attempts: 0,
      payload,
    } as const;
    const rec = queued("inbox");
    expect(needsFold(seen, { peer: true, service: false }, rec, false)).toBe(true);
    expect(needsFold(seen, { peer: false, service: false }, rec, false)).toBe(false);
    expect(needsFold(seen, { peer: false, service: false }, null, false)).toBe(true);
    // The service's own transition is journaled without reading the fold.
    expect(needsFold(seen, { peer: false, service: true }, null, false)).toBe(false);
    expect(needsFold({ kind: "in_flux" }, { peer: true, service: false }, null, false)).toBe(false);
    expect(needsFold({ kind: "in_flux" }, { peer: false, service: false }, null, true)).toBe(true);
  });

  it("waits for an entry in flux unless it is a peer's placement that died", () => {
    expect(inFluxAction(undefined, "n1")).toBe("retry");
    expect(inFluxAction({ rows: [enqueue("n1", 1n, 10n)], rejected: [] }, "n1")).toBe("retry");
    expect(inFluxAction({ rows: [enqueue("n2", 1n, 10n)], rejected: [] }, "n1")).toBe("resume");
  });

  it("tells a local transition, a peer's change and a crash remnant apart", () => {
    const target = fold([enqueue("n2", 1n, 10n)]);
    // No fold read: the files as recorded, or the service's transition.
    expect(decide(queued("inbox"), queued("inbox"), undefined)).toBe("nothing");
    expect(decide(null, queued("inbox"), undefined)).toBe("journal");
    // Files as the record and the fold: nothing; as the record, not the fold: apply.
    expect(decide(queued("inbox"), queued("inbox"), target)).toBe("nothing");
    expect(decide(null, null, target)).toBe("apply");
    // Files changed to what the fold asks (placed just before a crash): record only.
    expect(decide(queued("inbox"), null, target)).toBe("record");
    // Files changed to something else: a local transition.
    expect(decide(held("inbox", 9_000), queued("inbox"), target)).toBe("journal");
    // A removed entry stays removed: files still there but recorded gone is a transition.
    const removed = fold([enqueue("n2", 1n, 10n), remove("n2", 2n, 20n)]);
    expect(decide(queued("inbox"), queued("inbox"), removed)).toBe("apply");
  });

  it("names a peer's enqueue only for an entry not recorded here", () => {
    const rows = [enqueue("n2", 1n, 10n)];
    expect(peerEnqueueOf(rows, null, "n1")).toEqual({ queue: "inbox", payload });
    expect(peerEnqueueOf(rows, queued("inbox"), "n1")).toBeUndefined();
    expect(peerEnqueueOf(rows, null, "n2")).toBeUndefined();
  });

  it("syncs again when a peer's tombstone overrides the local transition", () => {
    const stamped = [{ ...checkout("x", 0n, 30n, 9_000) }].map(
      ({ origin, seq, recordedAt, ...r }) => r,
    );
    const rows = [enqueue("n2", 1n, 10n)];
    expect(stillOverridden(rows, stamped as never, "n1", held("inbox", 9_000), 1_000)).toBe(false);
    const tomb = [...rows, remove("n2", 2n, 20n)];
    expect(stillOverridden(tomb, stamped as never, "n1", held("inbox", 9_000), 1_000)).toBe(true);
  });

  it("plans a placement: drop, unknown queue, inline data, fetch, or none", () => {
    const has = (q: string) => q === "inbox";
    const removed = fold([enqueue("n2", 1n, 10n), remove("n2", 2n, 20n)]);
    expect(applyPlan(queued("inbox"), removed, [], has)).toEqual({ kind: "drop" });
    const rows = [enqueue("n2", 1n, 10n)];
    expect(applyPlan(null, fold(rows), rows, () => false)).toMatchObject({ kind: "unknown_queue" });
    expect(applyPlan(null, fold(rows), rows, has)).toEqual({
      kind: "place",
      placement: { queue: "inbox", checkedOut: false },
      data: { kind: "fetch", origin: "n2" },
    });
    const inline = [enqueue("n2", 1n, 10n, data)];
    expect(applyPlan(null, fold(inline), inline, has)).toMatchObject({
      data: { kind: "inline", bytes: data },
    });
    // Inline bytes that do not match the digest are not used.
    const bad = [enqueue("n2", 1n, 10n, Buffer.from("xyz"))];
    expect(applyPlan(null, fold(bad), bad, has)).toMatchObject({ data: { kind: "fetch" } });
    const co = [...rows, checkout("n2", 2n, 20n, 9_000)];
    expect(applyPlan(queued("inbox"), fold(co), co, has)).toEqual({
      kind: "place",
      placement: { queue: "inbox", checkedOut: true, leaseUntil: 9_000 },
      data: { kind: "none" },
    });
  });

  it("quarantines every row of an entry, rejected ones with their own problem", () => {
    const q = quarantineAll(
      [enqueue("n2", 1n, 10n)],
      [{ origin: "n3", seq: 4n, problem: "bad row" }],
      "no queue",
      [{ origin: "n4", seq: 1n, problem: "earlier" }],
    );
    expect(q.map((r) => `${r.origin}/${r.seq}:${r.problem}`)).toEqual([
      "n4/1:earlier",
      "n2/1:no queue",
      "n3/4:bad row",
    ]);
  });

  it("merges streamed rows the query missed, once each, in fold order", () => {
    const journal = { rows: [enqueue("n2", 1n, 10n)], rejected: [] as never[] };
    const raws: Record<string, unknown>[] = [
      {
        origin: "n2",
        seq: "1",
        hlc: "10",
        entry: "e1",
        op: "enqueue",
        queue: "inbox",
        attempts: 0,
        metadata: payload,
        data_sha256: dataSha256,
        data_size: "3",
      },
      {
        origin: "n3",
        seq: "1",
        hlc: "5",
        entry: "e1",
        op: "remove",
        queue: "inbox",
        attempts: 0,
        metadata: null,
        data_sha256: null,
        data_size: null,
        lease_until: null,
      },
      { origin: "n3", seq: "2", entry: "e1", op: "nonsense" },
    ];
    const forget = mergeStreamed(journal, raws);
    expect(journal.rows.map((r) => `${r.origin}/${r.seq}`)).toEqual(["n3/1", "n2/1"]);
    expect(journal.rejected).toHaveLength(1);
    // The row the query returned, and the one quarantined, need not be kept; the remove
    // the query did not show yet is kept for the next sync.
    expect([...forget]).toEqual([raws[0], raws[2]]);
  });
});
