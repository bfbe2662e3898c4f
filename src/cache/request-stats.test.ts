import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type CountRow, HOUR_MS, OVERFLOW_KEY, RequestStats } from "./request-stats.js";

const A = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const B = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";
const T0 = Date.UTC(2026, 11, 6, 10, 0, 0);

function clockAt(t: number) {
  const c = { now: t, clock: () => c.now };
  return c;
}

const sorted = (rows: CountRow[]) =>
  [...rows].sort(
    (x, y) => x.bucket - y.bucket || x.kind.localeCompare(y.kind) || x.key.localeCompare(y.key),
  );

describe("RequestStats", () => {
  it("counts narinfo hits and misses and nar requests and bytes per key and hour", () => {
    const c = clockAt(T0 + 5 * 60_000);
    const s = new RequestStats({ clock: c.clock });
    s.narinfo(A, true);
    s.narinfo(A, true);
    s.narinfo(A, false);
    s.narinfo(B, false);
    s.nar("nar/x.nar.xz", true, 100);
    s.nar("nar/x.nar.xz", true, 50);
    s.nar("nar/y.nar", false, 0);
    c.now = T0 + HOUR_MS + 1;
    s.narinfo(A, true);
    expect(sorted(s.take())).toEqual([
      { bucket: T0, kind: "nar", key: "nar/x.nar.xz", hits: 2, misses: 0, bytes: 150 },
      { bucket: T0, kind: "nar", key: "nar/y.nar", hits: 0, misses: 1, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: B, hits: 0, misses: 1, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: A, hits: 2, misses: 1, bytes: 0 },
      { bucket: T0 + HOUR_MS, kind: "narinfo", key: A, hits: 1, misses: 0, bytes: 0 },
    ]);
    expect(s.take()).toEqual([]);
    expect(s.heldKeys).toBe(0);
    expect(s.totals).toEqual({
      narinfoHits: 3,
      narinfoMisses: 2,
      narHits: 2,
      narMisses: 1,
      narBytes: 150,
      overflowed: 0,
    });
  });

  it("holds at most maxKeys keys and counts the rest under the overflow key, totals exact", () => {
    const c = clockAt(T0);
    const s = new RequestStats({ clock: c.clock, maxKeys: 2 });
    s.narinfo(A, true);
    s.nar("nar/x.nar", true, 10);
    s.narinfo(B, false); // third key: unkeyed
    s.nar("nar/y.nar", true, 7); // fourth: unkeyed
    s.narinfo(A, true); // held already: still its own
    expect(s.totals.overflowed).toBe(2);
    expect(sorted(s.take())).toEqual([
      { bucket: T0, kind: "nar", key: OVERFLOW_KEY, hits: 1, misses: 0, bytes: 7 },
      { bucket: T0, kind: "nar", key: "nar/x.nar", hits: 1, misses: 0, bytes: 10 },
      { bucket: T0, kind: "narinfo", key: OVERFLOW_KEY, hits: 0, misses: 1, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: A, hits: 2, misses: 0, bytes: 0 },
    ]);
    // After a take the bound starts again.
    s.narinfo(B, false);
    expect(s.take()).toEqual([
      { bucket: T0, kind: "narinfo", key: B, hits: 0, misses: 1, bytes: 0 },
    ]);
  });

  it("puts back rows not written, added to what came since, within the bound", () => {
    const c = clockAt(T0);
    const s = new RequestStats({ clock: c.clock, maxKeys: 2 });
    s.narinfo(A, true);
    s.narinfo(B, true);
    const failed = s.take();
    s.narinfo(A, true);
    s.nar("nar/z.nar", true, 5);
    s.restore(failed);
    expect(sorted(s.take())).toEqual([
      { bucket: T0, kind: "nar", key: "nar/z.nar", hits: 1, misses: 0, bytes: 5 },
      { bucket: T0, kind: "narinfo", key: OVERFLOW_KEY, hits: 1, misses: 0, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: A, hits: 2, misses: 0, bytes: 0 },
    ]);
  });

  it("keeps only the totals when per-key counting is off", () => {
    const s = new RequestStats({ perKey: false });
    s.narinfo(A, true);
    s.nar("nar/x.nar", true, 3);
    expect(s.take()).toEqual([]);
    expect(s.totals).toMatchObject({ narinfoHits: 1, narHits: 1, narBytes: 3 });
  });

  it("loses no request and holds no more than the bound, whatever the order (property)", () => {
    const event = fc.record({
      dt: fc.integer({ min: -HOUR_MS, max: 3 * HOUR_MS }),
      nar: fc.boolean(),
      key: fc.constantFrom(A, B, "nar/a.nar", "nar/b.nar", "k5", "k6"),
      found: fc.boolean(),
      bytes: fc.nat(1000),
      take: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), fc.integer({ min: 0, max: 4 }), (es, max) => {
        const c = clockAt(T0);
        const s = new RequestStats({ clock: c.clock, maxKeys: max });
        const taken: CountRow[] = [];
        for (const e of es) {
          c.now = T0 + e.dt;
          if (e.nar) s.nar(e.key, e.found, e.bytes);
          else s.narinfo(e.key, e.found);
          // Each bucket may add one overflow key per kind past the bound.
          expect(s.heldKeys).toBeLessThanOrEqual(max + 2 * 5);
          if (e.take) taken.push(...s.take());
        }
        taken.push(...s.take());
        const sum = (kind: string, f: (r: CountRow) => number) =>
          taken.filter((r) => r.kind === kind).reduce((n, r) => n + f(r), 0);
        expect(sum("narinfo", (r) => r.hits)).toBe(s.totals.narinfoHits);
        expect(sum("narinfo", (r) => r.misses)).toBe(s.totals.narinfoMisses);
        expect(sum("nar", (r) => r.hits)).toBe(s.totals.narHits);
        expect(sum("nar", (r) => r.bytes)).toBe(s.totals.narBytes);
        for (const r of taken) expect(r.bucket % HOUR_MS).toBe(0);
      }),
    );
  });
});
