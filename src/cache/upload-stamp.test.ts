import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HybridLogicalClock, makeHlc } from "../replication/hlc.js";
import { chooseServed } from "./served-rule.js";
import { formatStamp, parseStamp, recordStamp, stampMs, stampOfMs } from "./upload-stamp.js";

describe("upload stamps", () => {
  it("are the replication clock's values: a millisecond is its first value", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 }), (ms) => {
        expect(stampOfMs(ms)).toBe(makeHlc(ms));
        expect(stampMs(stampOfMs(ms))).toBe(ms);
      }),
    );
    const clock = new HybridLogicalClock(() => 1_700_000_000_000);
    const a = clock.now();
    const b = clock.now();
    expect(stampMs(b)).toBe(1_700_000_000_000);
    expect(b).toBe(a + 1n);
  });

  it("read from a record's stamp, or from its ms alone (records from before)", () => {
    const now = 1_700_000_000_123;
    const stamp = makeHlc(now, 7);
    expect(recordStamp({ hlc: now, stamp: formatStamp(stamp) })).toBe(stamp);
    expect(recordStamp({ hlc: now })).toBe(makeHlc(now));
    // A stamp that is not one makes the record unusable, not silently older.
    expect(recordStamp({ hlc: now, stamp: "12x" })).toBeUndefined();
    expect(recordStamp({ hlc: now, stamp: 5 })).toBeUndefined();
    expect(recordStamp({ hlc: -1 })).toBeUndefined();
    expect(recordStamp({ hlc: 1.5 })).toBeUndefined();
    expect(recordStamp({})).toBeUndefined();
    expect(parseStamp("9223372036854775807")).toBe((1n << 63n) - 1n);
    expect(parseStamp("9223372036854775808")).toBeUndefined();
    expect(parseStamp("007")).toBeUndefined();
  });

  it("order uploads exactly, beyond a double's precision; equal stamps go by origin", () => {
    const at = makeHlc(1_700_000_000_000);
    const c = (entry: string, origin: string, stamp: bigint) => ({
      entry,
      origin,
      stamp,
      trust: "trusted" as const,
    });
    expect(chooseServed([c("a", "eu-1", at + 1n), c("b", "us-1", at)])?.entry).toBe("b");
    expect(chooseServed([c("a", "us-1", at), c("b", "eu-1", at)])?.entry).toBe("b");
    // An old record's stamp (ms only) orders before any later value of that millisecond.
    const old = recordStamp({ hlc: 1_700_000_000_000 })!;
    expect(chooseServed([c("a", "us-1", at + 3n), c("b", "us-1", old)])?.entry).toBe("b");
  });
});
