import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type EntryState, FoldState, foldEntry } from "./fold.js";
import { makeHlc } from "./hlc.js";
import { JOURNAL_OPS, type JournalOp, type JournalRow, validateRow } from "./journal-row.js";

const T0 = 1_700_000_000_000;
const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

interface RowSpec {
  origin?: string;
  seq?: bigint;
  hlc?: bigint;
  entry?: string;
  op: JournalOp;
  queue?: string;
  metadata?: Buffer | null;
  dataSha256?: string;
  dataSize?: number;
  leaseUntil?: number;
  attempts?: number;
}

let autoSeq = 1000n;

/** A well-formed row of the given op; fields the op does not carry are null. */
function row(spec: RowSpec): JournalRow {
  const base = {
    origin: spec.origin ?? "a",
    seq: spec.seq ?? autoSeq++,
    hlc: spec.hlc ?? makeHlc(T0),
    entry: spec.entry ?? "e1",
    queue: spec.queue ?? "q1",
    attempts: spec.attempts ?? 0,
    dataSha256: null,
    dataSize: null,
    leaseUntil: null,
  };
  const metadata = spec.metadata === undefined ? null : spec.metadata;
  switch (spec.op) {
    case "enqueue":
      return {
        ...base,
        op: "enqueue",
        metadata: metadata ?? Buffer.from("m0"),
        dataSha256: spec.dataSha256 ?? SHA_A,
        dataSize: spec.dataSize ?? 10,
      };
    case "move":
      return { ...base, op: "move", metadata: metadata ?? Buffer.from("moved") };
    case "checkout":
      return { ...base, op: "checkout", metadata, leaseUntil: spec.leaseUntil ?? T0 + 60_000 };
    case "release":
      return { ...base, op: "release", metadata };
    case "remove":
      return { ...base, op: "remove", metadata };
  }
}

// --- generators: few origins, queues and hlc values, so ties and collisions are common ---

const NOW = T0 + 1000;

function rowArb(entries: readonly string[]): fc.Arbitrary<JournalRow> {
  return fc
    .record({
      origin: fc.constantFrom("a", "b", "c"),
      seq: fc.bigInt({ min: 1n, max: 8n }),
      hlc: fc.integer({ min: 0, max: 12 }).map((i) => makeHlc(T0 + Math.floor(i / 3), i % 3)),
      entry: fc.constantFrom(...entries),
      op: fc.constantFrom<JournalOp>(...JOURNAL_OPS),
      queue: fc.constantFrom("q1", "q2", "dead"),
      metadata: fc.option(
        fc.uint8Array({ maxLength: 3 }).map((b) => Buffer.from(b)),
        {
          nil: null,
        },
      ),
      dataSha256: fc.constantFrom(SHA_A, SHA_B),
      dataSize: fc.nat({ max: 100 }),
      leaseUntil: fc.integer({ min: NOW - 5, max: NOW + 5 }),
      attempts: fc.nat({ max: 5 }),
    })
    .map((r) => row(r));
}

/** Rows with distinct (origin, seq) keys, as the journal's primary key guarantees. */
function rowsArb(entries: readonly string[], maxLength = 12): fc.Arbitrary<JournalRow[]> {
  return fc.uniqueArray(rowArb(entries), {
    minLength: 1,
    maxLength,
    selector: (r) => `${r.origin}/${r.seq}`,
  });
}

/** The same rows shuffled, with some of them repeated. */
function arrivalsArb(rows: JournalRow[]): fc.Arbitrary<JournalRow[]> {
  return fc
    .tuple(
      fc.shuffledSubarray(rows, { minLength: rows.length, maxLength: rows.length }),
      fc.array(fc.constantFrom(...rows), { maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 6 }),
    )
    .map(([shuffled, dups, positions]) => {
      const out = [...shuffled];
      dups.forEach((d, i) => {
        out.splice((positions[i] ?? 0) % (out.length + 1), 0, d);
      });
      return out;
    });
}

const nowArb = fc.integer({ min: NOW - 6, max: NOW + 6 });

function foldState(rows: readonly JournalRow[]): FoldState {
  const s = new FoldState();
  for (const r of rows) s.add(r);
  return s;
}

function byEntry(rows: readonly JournalRow[]): Map<string, JournalRow[]> {
  const m = new Map<string, JournalRow[]>();
  for (const r of rows) m.set(r.entry, [...(m.get(r.entry) ?? []), r]);
  return m;
}

/** The last row by (hlc, origin, seq), computed without compareRows. */
function lastByKey(rows: readonly JournalRow[]): JournalRow {
  const key = (r: JournalRow) =>
    `${r.hlc.toString().padStart(20, "0")} ${r.origin} ${r.seq.toString().padStart(20, "0")}`;
  return rows.reduce((best, r) => (key(r) > key(best) ? r : best));
}

const RUNS = { numRuns: 300 };

describe("foldEntry", () => {
  it("gives the same state for any arrival order and any duplication (property)", () => {
    fc.assert(
      fc.property(
        rowsArb(["e1"]).chain((rows) => fc.tuple(fc.constant(rows), arrivalsArb(rows))),
        nowArb,
        ([rows, arrivals], now) => {
          expect(foldEntry(arrivals, now)).toEqual(foldEntry(rows, now));
        },
      ),
      RUNS,
    );
  });

  it("is last-writer-wins by (hlc, origin, seq) when nothing is removed (property)", () => {
    const noRemove = rowsArb(["e1"]).map((rows) => rows.filter((r) => r.op !== "remove"));
    fc.assert(
      fc.property(noRemove, nowArb, (rows, now) => {
        const state = foldEntry(rows, now);
        if (!rows.some((r) => r.op === "enqueue")) {
          expect(state).toEqual({ kind: "pending" });
          return;
        }
        const last = lastByKey(rows);
        expect(state).toMatchObject({ queue: last.queue, attempts: last.attempts });
        const held = last.op === "checkout" && last.leaseUntil > now;
        expect(state.kind).toBe(held ? "checked_out" : "queued");
        if (held) expect(state).toMatchObject({ holder: last.origin });
      }),
      RUNS,
    );
  });

  it("never resurrects a removed entry, whatever comes after the remove (property)", () => {
    fc.assert(
      fc.property(rowsArb(["e1"]), rowsArb(["e1"]), nowArb, (before, after, now) => {
        const remove = row({ op: "remove", seq: 99n, origin: "z", hlc: makeHlc(T0 - 1) });
        const later = after.map((r) => ({ ...r, hlc: r.hlc + makeHlc(1000) }));
        expect(foldEntry([...before, remove, ...later], now)).toEqual({ kind: "removed" });
        const s = new FoldState();
        for (const r of [...before, remove]) s.add(r);
        for (const r of later) {
          s.add(r);
          expect(s.state("e1", now)).toEqual({ kind: "removed" });
        }
      }),
      RUNS,
    );
  });

  it("breaks hlc ties by origin, then by seq", () => {
    const h = makeHlc(T0, 5);
    const enq = row({ op: "enqueue", origin: "a", seq: 1n, hlc: makeHlc(T0) });
    const byB = row({ op: "move", origin: "b", seq: 1n, hlc: h, queue: "from-b" });
    const byA = row({ op: "move", origin: "a", seq: 9n, hlc: h, queue: "from-a" });
    expect(foldEntry([enq, byB, byA], NOW)).toMatchObject({ queue: "from-b" });
    expect(foldEntry([byA, enq, byB], NOW)).toMatchObject({ queue: "from-b" });
    const a2 = row({ op: "move", origin: "a", seq: 2n, hlc: h, queue: "seq-2" });
    const a3 = row({ op: "move", origin: "a", seq: 3n, hlc: h, queue: "seq-3" });
    expect(foldEntry([enq, a3, a2], NOW)).toMatchObject({ queue: "seq-3" });
  });

  it("folds the full life of an entry", () => {
    const meta1 = Buffer.from("first");
    const meta2 = Buffer.from("second");
    const enq = row({
      op: "enqueue",
      hlc: makeHlc(T0, 0),
      metadata: meta1,
      dataSha256: SHA_B,
      dataSize: 77,
    });
    const co = row({ op: "checkout", origin: "b", hlc: makeHlc(T0 + 10), leaseUntil: T0 + 500 });
    const mv = row({
      op: "move",
      origin: "b",
      hlc: makeHlc(T0 + 20),
      queue: "q2",
      metadata: meta2,
    });
    const co2 = row({ op: "checkout", origin: "c", hlc: makeHlc(T0 + 30), queue: "q2" });
    const rel = row({
      op: "release",
      origin: "c",
      hlc: makeHlc(T0 + 40),
      queue: "q2",
      attempts: 1,
    });
    const fields = { metadata: meta1, dataSha256: SHA_B, dataSize: 77, enqueuedAt: T0 };
    expect(foldEntry([enq], T0)).toEqual({ kind: "queued", queue: "q1", attempts: 0, ...fields });
    expect(foldEntry([co, enq], T0 + 10)).toEqual({
      kind: "checked_out",
      queue: "q1",
      attempts: 0,
      holder: "b",
      leaseUntil: T0 + 500,
      ...fields,
    });
    expect(foldEntry([enq, mv, co], T0 + 20)).toEqual({
      kind: "queued",
      queue: "q2",
      attempts: 0,
      ...fields,
      metadata: meta2,
    });
    // Checkout and release carry no metadata: the move's metadata stays.
    expect(foldEntry([rel, co2, mv, co, enq], T0 + 40)).toEqual({
      kind: "queued",
      queue: "q2",
      attempts: 1,
      ...fields,
      metadata: meta2,
    });
    const rm = row({ op: "remove", origin: "a", hlc: makeHlc(T0 + 50), queue: "q2" });
    expect(foldEntry([rel, rm, enq], T0 + 50)).toEqual({ kind: "removed" });
  });

  it("takes metadata from the last row that carries any", () => {
    const enq = row({ op: "enqueue", hlc: makeHlc(T0), metadata: Buffer.from("e") });
    const mv = row({ op: "move", hlc: makeHlc(T0 + 1), metadata: Buffer.from("m") });
    const rel = row({ op: "release", hlc: makeHlc(T0 + 2), metadata: Buffer.from("r") });
    const co = row({ op: "checkout", hlc: makeHlc(T0 + 3), leaseUntil: T0 });
    expect(foldEntry([co, rel, mv, enq], NOW)).toMatchObject({
      kind: "queued",
      metadata: Buffer.from("r"),
    });
  });

  it("takes digest, size and enqueuedAt from the first enqueue row in order", () => {
    const first = row({ op: "enqueue", hlc: makeHlc(T0, 1), dataSha256: SHA_A, dataSize: 1 });
    const again = row({ op: "enqueue", hlc: makeHlc(T0 + 9), dataSha256: SHA_B, dataSize: 2 });
    for (const rows of [
      [first, again],
      [again, first],
    ]) {
      expect(foldEntry(rows, NOW)).toMatchObject({
        dataSha256: SHA_A,
        dataSize: 1,
        enqueuedAt: T0,
      });
    }
  });

  it("an expired checkout folds to queued in its queue, the same way everywhere", () => {
    const enq = row({ op: "enqueue", origin: "a", hlc: makeHlc(T0) });
    const co = row({
      op: "checkout",
      origin: "b",
      hlc: makeHlc(T0 + 1),
      queue: "q1",
      leaseUntil: T0 + 100,
      attempts: 2,
    });
    const nodeA = foldState([enq, co]);
    const nodeB = foldState([co, enq]);
    for (const node of [nodeA, nodeB]) {
      expect(node.state("e1", T0 + 99)).toMatchObject({ kind: "checked_out", holder: "b" });
      expect(node.state("e1", T0 + 100)).toMatchObject({
        kind: "queued",
        queue: "q1",
        attempts: 2,
      });
    }
    expect(foldEntry([co, enq], T0 + 100)).toEqual(nodeA.state("e1", T0 + 100));
  });

  it("rejects rows of several entries", () => {
    const a = row({ op: "enqueue", entry: "x" });
    const b = row({ op: "enqueue", entry: "y" });
    expect(() => foldEntry([a, b], NOW)).toThrow(RangeError);
    expect(foldEntry([], NOW)).toEqual({ kind: "pending" });
  });
});

describe("FoldState", () => {
  it("equals foldEntry over all rows, for any arrival order with duplicates (property)", () => {
    const entries = ["e1", "e2", "e3"];
    fc.assert(
      fc.property(
        rowsArb(entries, 25).chain((rows) => fc.tuple(fc.constant(rows), arrivalsArb(rows))),
        nowArb,
        ([rows, arrivals], now) => {
          const s = foldState(arrivals);
          const groups = byEntry(rows);
          expect(new Set(s.entries())).toEqual(new Set(groups.keys()));
          expect(s.size).toBe(groups.size);
          for (const [entry, group] of groups) {
            expect(s.has(entry)).toBe(true);
            expect(s.state(entry, now)).toEqual(foldEntry(group, now));
          }
          // Adding any row again changes nothing and says so.
          for (const r of rows) expect(s.add(r)).toBe(false);
        },
      ),
      RUNS,
    );
  });

  it("matches foldEntry after every single row (property)", () => {
    fc.assert(
      fc.property(rowsArb(["e1"]), nowArb, (rows, now) => {
        const s = new FoldState();
        const seen: JournalRow[] = [];
        for (const r of rows) {
          const before: EntryState = s.state("e1", now);
          const changed = s.add(r);
          seen.push(r);
          const after = s.state("e1", now);
          expect(after).toEqual(foldEntry(seen, now));
          if (!changed) expect(after).toEqual(before);
        }
      }),
      RUNS,
    );
  });

  it("shows a move that arrived before its enqueue only once the enqueue arrives", () => {
    const s = new FoldState();
    const enq = row({ op: "enqueue", origin: "a", hlc: makeHlc(T0), dataSize: 5 });
    const mv = row({
      op: "move",
      origin: "b",
      hlc: makeHlc(T0 + 1),
      queue: "q2",
      metadata: Buffer.from("saved"),
      attempts: 1,
    });
    expect(s.add(mv)).toBe(true);
    expect(s.state("e1", NOW)).toEqual({ kind: "pending" });
    expect(s.add(enq)).toBe(true);
    expect(s.state("e1", NOW)).toEqual({
      kind: "queued",
      queue: "q2",
      metadata: Buffer.from("saved"),
      dataSha256: SHA_A,
      dataSize: 5,
      attempts: 1,
      enqueuedAt: T0,
    });
  });

  it("knows nothing of entries it has no rows for", () => {
    const s = new FoldState();
    expect(s.has("nope")).toBe(false);
    expect(s.state("nope", NOW)).toEqual({ kind: "pending" });
    expect([...s.entries()]).toEqual([]);
  });
});

describe("validateRow", () => {
  const date = new Date(T0 + 60_000);
  /** A row as node-postgres decodes it: snake_case, int8 as text, bytea Buffer, Date. */
  const pgRow = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    origin: "eu-1",
    seq: "17",
    hlc: makeHlc(T0, 3).toString(),
    entry: "0001-eu-1-abc",
    op: "enqueue",
    queue: "inbox",
    metadata: Buffer.from("meta"),
    data_sha256: SHA_A,
    data_size: "42",
    lease_until: null,
    attempts: 0,
    recorded_at: new Date(T0),
    ...over,
  });

  it("accepts a row as node-postgres decodes it", () => {
    expect(validateRow(pgRow())).toEqual({
      ok: true,
      row: {
        origin: "eu-1",
        seq: 17n,
        hlc: makeHlc(T0, 3),
        entry: "0001-eu-1-abc",
        op: "enqueue",
        queue: "inbox",
        metadata: Buffer.from("meta"),
        dataSha256: SHA_A,
        dataSize: 42,
        leaseUntil: null,
        attempts: 0,
      },
    });
    const checkout = pgRow({ op: "checkout", data_sha256: null, data_size: null, metadata: null });
    expect(validateRow({ ...checkout, lease_until: date })).toMatchObject({
      ok: true,
      row: { op: "checkout", leaseUntil: date.getTime(), metadata: null },
    });
    expect(validateRow({ ...checkout, lease_until: date.toISOString() })).toMatchObject({
      ok: true,
      row: { leaseUntil: date.getTime() },
    });
    const bytes = validateRow(pgRow({ metadata: new Uint8Array([1, 2]) }));
    expect(bytes.ok && Buffer.isBuffer(bytes.row.metadata)).toBe(true);
  });

  it("accepts every well-formed row unchanged (property)", () => {
    fc.assert(
      fc.property(rowArb(["e1", "x:y@z"]), (r) => {
        expect(validateRow(r)).toEqual({ ok: true, row: r });
      }),
      RUNS,
    );
  });

  const bad: [string, Record<string, unknown> | unknown, string][] = [
    ["null", null, "row is null, not an object"],
    ["an array", [1], "row is an array, not an object"],
    ["a string", "row", "row is a string, not an object"],
    ["no origin", pgRow({ origin: undefined }), "row: origin is missing"],
    ["origin with a slash", pgRow({ origin: "a/b" }), 'origin "a/b" contains a path separator'],
    ["origin not a string", pgRow({ origin: 5 }), "origin 5 is not a string"],
    ["entry escaping", pgRow({ entry: "../etc" }), 'entry "../etc" contains a path separator'],
    ["empty entry", pgRow({ entry: "" }), 'entry "" is empty'],
    ["hidden queue", pgRow({ queue: ".checkout" }), 'queue ".checkout" starts with a dot'],
    ["queue with ~", pgRow({ queue: "q~1" }), 'queue "q~1" contains a character outside'],
    ["long entry", pgRow({ entry: "e".repeat(201) }), "is longer than 200 characters"],
    ["unknown op", pgRow({ op: "frobnicate" }), 'op "frobnicate" is not one of enqueue'],
    ["op not a string", pgRow({ op: 3 }), "op 3 is not one of"],
    ["negative seq", pgRow({ seq: "-3" }), "row: seq -3 is not in 1..9223372036854775807"],
    ["zero seq", pgRow({ seq: 0 }), "seq 0 is not in 1..9223372036854775807"],
    ["seq too big", pgRow({ seq: (1n << 63n).toString() }), "seq 9223372036854775808 is not in"],
    ["seq not a number", pgRow({ seq: "abc" }), 'seq "abc" is not an integer'],
    ["seq fractional", pgRow({ seq: 1.5 }), "seq 1.5 is not an integer"],
    ["seq unsafe number", pgRow({ seq: 2 ** 60 }), "is not an integer"],
    ["negative hlc", pgRow({ hlc: -1n }), "hlc -1 is not in 0..9223372036854775807"],
    ["hlc as garbage", pgRow({ hlc: "12e3" }), 'hlc "12e3" is not an integer'],
    ["negative attempts", pgRow({ attempts: -1 }), "attempts -1 is not in 0..2147483647"],
    ["fractional attempts", pgRow({ attempts: 0.5 }), "attempts 0.5 is not an integer"],
    ["no attempts", pgRow({ attempts: undefined }), "attempts is missing"],
    ["metadata as text", pgRow({ metadata: "meta" }), "metadata is a string, not bytes"],
    ["enqueue without metadata", pgRow({ metadata: null }), "an enqueue has no metadata"],
    ["enqueue without digest", pgRow({ data_sha256: null }), "an enqueue has no data_sha256"],
    ["enqueue without size", pgRow({ data_size: null }), "an enqueue has no data_size"],
    ["short digest", pgRow({ data_sha256: "abc" }), 'data_sha256 "abc" is not 64 lowercase'],
    ["uppercase digest", pgRow({ data_sha256: "A".repeat(64) }), "is not 64 lowercase hex"],
    ["non-hex digest", pgRow({ data_sha256: "g".repeat(64) }), "is not 64 lowercase hex"],
    ["negative size", pgRow({ data_size: "-1" }), "data_size -1 is not in 0..9007199254740991"],
    ["huge size", pgRow({ data_size: "9007199254740992" }), "data_size 9007199254740992 is not"],
    ["size as text", pgRow({ data_size: "ten" }), 'data_size "ten" is not an integer'],
    ["enqueue with lease", pgRow({ lease_until: date }), "an enqueue has a lease_until"],
    [
      "checkout without lease",
      pgRow({ op: "checkout", data_sha256: null, data_size: null }),
      "a checkout has no lease_until",
    ],
    [
      "bad lease timestamp",
      pgRow({ op: "checkout", data_sha256: null, data_size: null, lease_until: "soon" }),
      'lease_until "soon" is not a valid timestamp',
    ],
    [
      "invalid Date lease",
      pgRow({ op: "checkout", data_sha256: null, data_size: null, lease_until: new Date("x") }),
      "lease_until Invalid Date is not a valid timestamp",
    ],
    [
      "lease as boolean",
      pgRow({ op: "checkout", data_sha256: null, data_size: null, lease_until: true }),
      "lease_until true is not a valid timestamp",
    ],
    ["move with digest", pgRow({ op: "move", data_size: null }), "a move has a data_sha256"],
    ["move with size", pgRow({ op: "move", data_sha256: null }), "a move has a data_size"],
    [
      "move without metadata",
      pgRow({ op: "move", data_sha256: null, data_size: null, metadata: null }),
      "a move has no metadata",
    ],
    [
      "release with lease",
      pgRow({ op: "release", data_sha256: null, data_size: null, lease_until: date }),
      "a release has a lease_until",
    ],
    ["remove with digest", pgRow({ op: "remove", data_size: null }), "a remove has a data_sha256"],
    ["both spellings", pgRow({ dataSize: 42 }), "has both dataSize and data_size"],
    ["missing column", pgRow({ lease_until: undefined }), "lease_until is missing"],
  ];

  it.each(bad)("rejects %s with a one-line problem", (_what, raw, expected) => {
    const result = validateRow(raw);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problem).toContain(expected);
    expect(result.problem).not.toMatch(/[\r\n]/);
  });

  it("names the row in the problem once its key is known", () => {
    expect(validateRow(pgRow({ op: "nope" }))).toEqual({
      ok: false,
      problem: 'row eu-1/17: op "nope" is not one of enqueue, move, checkout, release, remove',
    });
  });

  it("keeps a problem on one line even for values with newlines", () => {
    const result = validateRow(pgRow({ op: "a\nb\u2028c" }));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problem).not.toMatch(/[\r\n\u2028]/);
  });

  it("never throws, whatever it is given (property)", () => {
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error("boom\nline two");
        },
      },
    );
    const r = validateRow(hostile);
    expect(r).toEqual({ ok: false, problem: "row: could not be read (boom line two)" });
    const fields = Object.keys(pgRow());
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.tuple(fc.constantFrom(...fields), fc.anything()).map(([k, v]) => pgRow({ [k]: v })),
        ),
        (raw) => {
          const result = validateRow(raw);
          if (!result.ok) expect(result.problem).not.toMatch(/[\r\n]/);
        },
      ),
      { numRuns: 500 },
    );
  });
});
