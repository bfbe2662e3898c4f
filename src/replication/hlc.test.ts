import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  formatHlc,
  HlcError,
  HlcErrorCode,
  HybridLogicalClock,
  hlcLogical,
  hlcPhysicalMs,
  MAX_HLC,
  makeHlc,
} from "./hlc.js";

/** A wall clock the test sets by hand. */
function manualClock(start: number): { now: () => number; set(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    set(ms: number) {
      t = ms;
    },
  };
}

const T0 = 1_700_000_000_000;

describe("hlc values", () => {
  it("splits into physical ms and logical part and formats both", () => {
    const h = makeHlc(T0, 7);
    expect(h).toBe(BigInt(T0) * 65536n + 7n);
    expect(hlcPhysicalMs(h)).toBe(T0);
    expect(hlcLogical(h)).toBe(7);
    expect(formatHlc(h)).toBe(`${new Date(T0).toISOString()}+7`);
    expect(formatHlc(-1n)).toBe("invalid-hlc(-1)");
  });
});

describe("HybridLogicalClock", () => {
  it("follows the wall clock and ticks the logical part within one millisecond", () => {
    const wall = manualClock(T0);
    const clock = new HybridLogicalClock(wall.now);
    expect(clock.now()).toBe(makeHlc(T0, 0));
    expect(clock.now()).toBe(makeHlc(T0, 1));
    wall.set(T0 + 5);
    expect(clock.now()).toBe(makeHlc(T0 + 5, 0));
    expect(clock.last).toBe(makeHlc(T0 + 5, 0));
  });

  it("stays monotonic when the wall clock steps back", () => {
    const wall = manualClock(T0);
    const clock = new HybridLogicalClock(wall.now);
    const a = clock.now();
    wall.set(T0 - 60_000);
    const b = clock.now();
    expect(b).toBe(a + 1n);
    expect(hlcPhysicalMs(b)).toBe(T0);
  });

  it("carries a logical overflow into the physical part", () => {
    const wall = manualClock(T0);
    const clock = new HybridLogicalClock(wall.now);
    let prev = -1n;
    let increasing = true;
    for (let i = 0; i < 65_536 + 3; i++) {
      const h = clock.now();
      increasing &&= h > prev;
      prev = h;
    }
    expect(increasing).toBe(true);
    expect(hlcPhysicalMs(prev)).toBe(T0 + 1);
    expect(hlcLogical(prev)).toBe(2);
    // The wall clock catches up: back to logical 0 at the next millisecond it shows.
    wall.set(T0 + 2);
    expect(clock.now()).toBe(makeHlc(T0 + 2, 0));
  });

  it("starts past its initial value and ignores unusable wall clock readings", () => {
    const wall = manualClock(Number.NaN);
    const clock = new HybridLogicalClock(wall.now, makeHlc(T0, 3));
    expect(clock.now()).toBe(makeHlc(T0, 4));
    wall.set(-5);
    expect(clock.now()).toBe(makeHlc(T0, 5));
  });

  it("observe advances past a remote value and reports how far ahead it is", () => {
    const wall = manualClock(T0);
    const clock = new HybridLogicalClock(wall.now);
    expect(clock.observe(makeHlc(T0 - 1000, 9))).toBe(0);
    expect(clock.last).toBe(makeHlc(T0 - 1000, 9));
    const future = makeHlc(T0 + 3_600_000, 42);
    expect(clock.observe(future)).toBe(3_600_000);
    expect(clock.last).toBe(future);
    expect(clock.now()).toBe(future + 1n);
    // An older remote value does not move the clock back.
    expect(clock.observe(makeHlc(T0, 0))).toBe(0);
    expect(clock.last).toBe(future + 1n);
  });

  it("rejects values outside the bigint column and refuses to pass the top", () => {
    const clock = new HybridLogicalClock(() => T0);
    for (const bad of [-1n, MAX_HLC + 1n]) {
      const err = (() => {
        try {
          clock.observe(bad);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(HlcError);
      expect((err as HlcError).code).toBe(HlcErrorCode.InvalidValue);
    }
    expect(() => new HybridLogicalClock(() => T0, -2n)).toThrow(HlcError);
    clock.observe(MAX_HLC);
    expect(() => clock.now()).toThrow(expect.objectContaining({ code: HlcErrorCode.Exhausted }));
  });

  it("is strictly monotonic under any wall clock and any observed values (property)", () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant("wall" as const), ms: fc.integer({ min: -1, max: 2000 }) }),
      fc.record({ kind: fc.constant("now" as const) }),
      fc.record({
        kind: fc.constant("observe" as const),
        ms: fc.integer({ min: 0, max: 2000 }),
        logical: fc.integer({ min: 0, max: 65535 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
        const wall = manualClock(T0);
        const clock = new HybridLogicalClock(wall.now);
        let maxSeen = 0n;
        for (const s of steps) {
          if (s.kind === "wall") wall.set(s.ms < 0 ? Number.NaN : T0 + s.ms - 1000);
          else if (s.kind === "observe") {
            const remote = makeHlc(T0 + s.ms - 1000, s.logical);
            clock.observe(remote);
            if (remote > maxSeen) maxSeen = remote;
            expect(clock.last).toBe(maxSeen);
          } else {
            const h = clock.now();
            expect(h > maxSeen).toBe(true);
            expect(h >= makeHlc(Math.max(0, wall.now() || 0))).toBe(true);
            maxSeen = h;
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("two clocks exchanging rows order every causally related pair (property)", () => {
    // Events on nodes A and B: local writes, and deliveries of the other node's latest write.
    // Vector clocks give the happens-before relation; the hlc order must extend it.
    const step = fc.record({
      node: fc.integer({ min: 0, max: 1 }),
      kind: fc.constantFrom("write", "deliver", "tick"),
      ms: fc.integer({ min: -50, max: 50 }),
    });
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 150 }),
        fc.integer({ min: 0, max: 5000 }),
        (steps, skew) => {
          // B's wall clock runs `skew` ms ahead of A's; both wander back and forth.
          const walls = [manualClock(T0), manualClock(T0 + skew)];
          const clocks = walls.map((w) => new HybridLogicalClock(w.now));
          const vector: [number, number][] = [
            [0, 0],
            [0, 0],
          ];
          const written: { hlc: bigint; vc: [number, number] }[] = [];
          const latest: ({ hlc: bigint; vc: [number, number] } | undefined)[] = [
            undefined,
            undefined,
          ];
          for (const s of steps) {
            const n = s.node;
            const wall = walls[n]!;
            if (s.kind === "tick") wall.set(wall.now() + s.ms);
            else if (s.kind === "write") {
              const vc = vector[n]!;
              vc[n] = (vc[n] ?? 0) + 1;
              const event = { hlc: clocks[n]!.now(), vc: [vc[0], vc[1]] as [number, number] };
              written.push(event);
              latest[n] = event;
            } else {
              const from = latest[1 - n];
              if (from === undefined) continue;
              clocks[n]!.observe(from.hlc);
              const vc = vector[n]!;
              vc[0] = Math.max(vc[0], from.vc[0]);
              vc[1] = Math.max(vc[1], from.vc[1]);
            }
          }
          for (const a of written) {
            for (const b of written) {
              const before = a !== b && a.vc[0] <= b.vc[0] && a.vc[1] <= b.vc[1];
              if (before) expect(a.hlc < b.hlc).toBe(true);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
