import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { makeHlc } from "./hlc.js";
import type { JournalRow } from "./journal-row.js";
import { findDivergences } from "./record-audit.js";
import { type Placed, payloadDigest } from "./replica-state.js";

const payload = Buffer.from("meta");
const dataSha256 = createHash("sha256").update("abc").digest("hex");
const T = 1_800_000_000_000;

function row(op: JournalRow["op"], seq: bigint, at: number, extra: object = {}): JournalRow {
  const base = { origin: "n2", seq, hlc: makeHlc(at), entry: "e1", queue: "inbox", attempts: 0 };
  switch (op) {
    case "enqueue":
      return {
        ...base,
        op,
        metadata: payload,
        dataSha256,
        dataSize: 3,
        leaseUntil: null,
      } as JournalRow;
    default:
      return {
        ...base,
        op,
        metadata: null,
        dataSha256: null,
        dataSize: null,
        leaseUntil: null,
        ...extra,
      } as JournalRow;
  }
}

const queued: Placed = {
  queue: "inbox",
  checkedOut: false,
  leaseUntil: null,
  attempts: 0,
  payloadSha256: payloadDigest(payload),
};

function find(rows: JournalRow[], rec: Placed | undefined, skip = false) {
  const recorded = new Map<string, Placed>(rec ? [["e1", rec]] : []);
  return findDivergences(new Map([["e1", rows]]), recorded, T, () => skip);
}

describe("the self-check's comparison of the record with the fold", () => {
  it("finds an entry the fold placed and the record lacks, unless left out", () => {
    expect(find([row("enqueue", 1n, T - 5_000)], undefined)).toEqual([
      { entry: "e1", expected: "inbox, attempts 0", recorded: "absent" },
    ]);
    expect(find([row("enqueue", 1n, T - 5_000)], undefined, true)).toEqual([]);
    expect(find([row("enqueue", 1n, T - 5_000)], queued)).toEqual([]);
  });

  it("finds a removed entry still recorded", () => {
    const rows = [row("enqueue", 1n, T - 5_000), row("remove", 2n, T - 4_000)];
    expect(find(rows, queued)).toEqual([
      { entry: "e1", expected: "absent", recorded: "inbox, attempts 0" },
    ]);
    expect(find(rows, undefined)).toEqual([]);
  });

  it("leaves an expired lease to the reaper, but not a release the record missed", () => {
    const until = T - 1_000;
    const rec: Placed = { ...queued, checkedOut: true, leaseUntil: until };
    const rows = [
      row("enqueue", 1n, T - 5_000),
      row("checkout", 2n, T - 4_000, { leaseUntil: until }),
    ];
    expect(find(rows, rec)).toEqual([]);
    const released = [...rows, row("release", 3n, T - 500, { attempts: 1 })];
    expect(find(released, rec)).toEqual([
      { entry: "e1", expected: "inbox, attempts 1", recorded: "inbox/checked_out, attempts 0" },
    ]);
  });

  it("asks nothing of an entry with no enqueue row yet", () => {
    expect(find([row("move", 1n, T - 5_000)], undefined)).toEqual([]);
  });

  it("compares the same way when the rows carry their metadata's digest instead", () => {
    const digest = (b: Buffer) => createHash("sha256").update(b).digest();
    const saved = Buffer.from("saved");
    const rows = [row("enqueue", 1n, T - 5_000), row("move", 2n, T - 4_000, { metadata: saved })];
    const asDigests = rows.map((r) => ({
      ...r,
      metadata: r.metadata === null ? null : digest(r.metadata),
    })) as JournalRow[];
    const withSave: Placed = { ...queued, payloadSha256: payloadDigest(saved) };
    const compare = (list: JournalRow[], rec: Placed, metadataDigests: boolean) =>
      findDivergences(new Map([["e1", list]]), new Map([["e1", rec]]), T, () => false, {
        metadataDigests,
      });
    // The record missed the save: found either way, and described alike.
    const missed = compare(rows, queued, false);
    expect(missed).toHaveLength(1);
    expect(compare(asDigests, queued, true)).toEqual(missed);
    // The record has it: nothing either way.
    expect(compare(rows, withSave, false)).toEqual([]);
    expect(compare(asDigests, withSave, true)).toEqual([]);
    // Digests taken for whole metadata would differ from every record.
    expect(compare(asDigests, withSave, false)).toHaveLength(1);
  });
});
