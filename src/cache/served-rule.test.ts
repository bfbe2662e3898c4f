import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { chooseServable, chooseServed, type ServedCandidate, servable } from "./served-rule.js";

const candidate = fc.record({
  entry: fc.string({ minLength: 1, maxLength: 6 }),
  origin: fc.constantFrom("eu-1", "us-1", "ap-1"),
  stamp: fc.bigInt({ min: 0n, max: 20n }),
  trust: fc.constantFrom("trusted", "node_signed", "unsigned" as const),
});
const candidates = fc.uniqueArray(candidate, { selector: (c) => c.entry, maxLength: 8 });

describe("which upload of a store path is served", () => {
  it("is the same whatever order the candidates arrived in", () => {
    fc.assert(
      fc.property(candidates, fc.infiniteStream(fc.nat()), (cs, seeds) => {
        const shuffled = [...cs];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = seeds.next().value % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        expect(chooseServed(shuffled)).toBe(chooseServed(cs));
      }),
    );
  });

  it("never changes when a later upload of no better trust arrives", () => {
    fc.assert(
      fc.property(candidates, candidate, (cs, late) => {
        const served = chooseServed(cs);
        fc.pre(served !== undefined && !cs.some((c) => c.entry === late.entry));
        const later = { ...late, stamp: served!.stamp + 1n + late.stamp, trust: served!.trust };
        expect(chooseServed([...cs, later])).toBe(served);
      }),
    );
  });

  it("prefers a trusted signature, then the first upload, then the origin and entry name", () => {
    const c = (entry: string, origin: string, stamp: number, trust: ServedCandidate["trust"]) => ({
      entry,
      origin,
      stamp: BigInt(stamp),
      trust,
    });
    expect(chooseServed([c("a", "eu-1", 1, "unsigned"), c("b", "us-1", 9, "trusted")])?.entry).toBe(
      "b",
    );
    expect(
      chooseServed([c("a", "eu-1", 1, "unsigned"), c("b", "us-1", 9, "node_signed")])?.entry,
    ).toBe("b");
    expect(chooseServed([c("a", "eu-1", 5, "trusted"), c("b", "us-1", 4, "trusted")])?.entry).toBe(
      "b",
    );
    expect(chooseServed([c("a", "us-1", 5, "trusted"), c("b", "eu-1", 5, "trusted")])?.entry).toBe(
      "b",
    );
    expect(chooseServed([c("b", "eu-1", 5, "trusted"), c("a", "eu-1", 5, "trusted")])?.entry).toBe(
      "a",
    );
    expect(chooseServed([])).toBeUndefined();
  });

  it("serves an upload of several nars only once every one of them is held", () => {
    const at = (entry: string, url: string, stamp: number, files?: string[]) => ({
      entry,
      url,
      stamp: BigInt(stamp),
      origin: "eu-1",
      trust: "trusted" as const,
      ...(files ? { files } : {}),
    });
    const both = ["nar/gzip/x", "nar/zstd/x"];
    const gzip = at("a", "nar/gzip/x", 1, both);
    const later = at("c", "nar/lzip/x", 5);
    expect(servable([gzip])).toEqual([]);
    expect(chooseServable([gzip, later])).toBe(later);
    const zstd = at("b", "nar/zstd/x", 1, both);
    expect(chooseServable([zstd, later, gzip])).toBe(gzip);
    expect(servable([zstd, gzip])).toEqual([zstd, gzip]);
  });
});
