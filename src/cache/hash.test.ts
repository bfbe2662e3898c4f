import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GUIX, narinfoFixtures, readFixture } from "../../test/helpers/cache-fixtures.js";
import { CacheError } from "./errors.js";
import {
  formatHash,
  HASH_SIZES,
  type HashAlgorithm,
  HashSink,
  hashEquals,
  hashOf,
  parseHash,
} from "./hash.js";

const EMPTY_NIX32 = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
const EMPTY_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

describe("hash", () => {
  it("reads and writes the forms Nix uses", () => {
    const h = hashOf("sha256", "");
    expect(formatHash(h)).toBe(EMPTY_NIX32);
    expect(formatHash(h, "base16")).toBe(`sha256:${EMPTY_HEX}`);
    expect(formatHash(h, "sri")).toBe("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    for (const text of [
      EMPTY_NIX32,
      `sha256:${EMPTY_HEX}`,
      "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
      "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    ]) {
      expect(hashEquals(parseHash(text), h)).toBe(true);
    }
  });

  it("round-trips every algorithm in every encoding", () => {
    const algos = Object.keys(HASH_SIZES) as HashAlgorithm[];
    fc.assert(
      fc.property(fc.constantFrom(...algos), fc.string(), (algo, data) => {
        const h = hashOf(algo, data);
        for (const enc of ["nix32", "base16", "base64", "sri"] as const) {
          expect(hashEquals(parseHash(formatHash(h, enc)), h)).toBe(true);
        }
      }),
    );
  });

  it("checks a Guix narinfo's NarHash and NarSize against its gzip nar", () => {
    for (const [file, bytes] of narinfoFixtures(GUIX)) {
      const text = bytes.toString();
      const narHash = /^NarHash: (.*)$/m.exec(text)![1]!;
      const narSize = Number(/^NarSize: (.*)$/m.exec(text)![1]);
      const url = /^URL: (nar\/gzip\/.*)$/m.exec(text)![1]!;
      const nar = gunzipSync(readFixture(GUIX, url));
      const sink = new HashSink("sha256");
      sink.update(nar.subarray(0, 7));
      sink.update(nar.subarray(7));
      const { hash, size } = sink.finish();
      expect(size, file).toBe(narSize);
      expect(formatHash(hash), file).toBe(narHash);
      expect(Buffer.from(hash.digest)).toEqual(createHash("sha256").update(nar).digest());
    }
  });

  it("refuses malformed hashes with invalid_hash naming the problem", () => {
    for (const [text, why] of [
      ["", /expected <algorithm>:<digest>/],
      ["sha256", /expected <algorithm>:<digest>/],
      ["sha3:abc", /unknown algorithm "sha3"/],
      ["sha256:abc", /digest of length 3/],
      [`sha256:${"g".repeat(64)}`, /not base16/],
      [`sha256:e${EMPTY_NIX32.slice(8)}`, /"e" is not a nix32 character/],
      ["sha256-AAAA", /not 32 bytes/],
      ["sha256-!!!!", /not base64/],
    ] as const) {
      expect(() => parseHash(text), text).toThrow(CacheError);
      expect(() => parseHash(text), text).toThrow(why);
    }
  });
});
