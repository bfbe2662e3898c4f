import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fixturePath, NIX_XZ, NIX_ZSTD, readFixture } from "../../test/helpers/cache-fixtures.js";
import { CacheError } from "./errors.js";
import { isNix32, nix32Decode, nix32Encode, nix32Length } from "./nix32.js";

describe("nix32", () => {
  it("matches Nix on known digests (nix hash to-base32)", () => {
    const empty = createHash("sha256").update("").digest();
    expect(nix32Encode(empty)).toBe("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
    const sha1 = Buffer.from("0123456789abcdef0123456789abcdef01234567", "hex");
    expect(nix32Encode(sha1)).toBe("cx2j60ggrnmqjrs54c0yzkdbi5kla8q1");
  });

  it("names each nar of the Nix 2.8 caches by the nix32 sha256 of its bytes", () => {
    for (const cache of [NIX_XZ, NIX_ZSTD]) {
      const nars = readdirSync(fixturePath(cache, "nar"));
      expect(nars).toHaveLength(3);
      for (const nar of nars) {
        const digest = createHash("sha256")
          .update(readFixture(cache, "nar", nar))
          .digest();
        expect(nar.split(".")[0]).toBe(nix32Encode(digest));
      }
    }
  });

  it("round-trips any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const text = nix32Encode(bytes);
        expect(text).toHaveLength(nix32Length(bytes.length));
        expect(isNix32(text)).toBe(true);
        expect(nix32Decode(text, bytes.length)).toEqual(bytes);
      }),
    );
  });

  it("refuses bad characters, lengths and bits past the end with invalid_nix32", () => {
    const good = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    for (const [text, why] of [
      [`e${good.slice(1)}`, /"e" is not a nix32 character/],
      [`${good.slice(0, 51)}u`, /"u" is not a nix32 character/],
      [good.slice(1), /bad length 51/],
      [`${good}0`, /bad length 53/],
      [`z${good.slice(1)}`, /bits past the last byte/],
    ] as const) {
      const err = (() => {
        try {
          nix32Decode(text, 32);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(CacheError);
      expect((err as CacheError).code).toBe("invalid_nix32");
      expect((err as CacheError).message).toMatch(why);
    }
    expect(isNix32("e")).toBe(false);
    expect(isNix32("0mdqa9w1p6cmli6976v4wi0sw9r4p5pr")).toBe(true);
  });
});
