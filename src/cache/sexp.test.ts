import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GUIX, narinfoFixtures } from "../../test/helpers/cache-fixtures.js";
import { CacheError } from "./errors.js";
import {
  atomText,
  findSexp,
  parseSexp,
  type Sexp,
  sexpValue,
  toAdvancedSexp,
  toCanonicalSexp,
} from "./sexp.js";

const sexpTree: fc.Arbitrary<Sexp[]> = fc.letrec((tie) => ({
  atom: fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    fc
      .constantFrom("ecc", "q", "public-key", "a.b/c:d*e+f=g_h")
      .map((t) => Uint8Array.from(Buffer.from(t))),
  ),
  node: fc.oneof({ depthSize: "small" }, tie("atom"), tie("list")),
  list: fc.array(tie("node"), { maxLength: 5 }),
})).list as fc.Arbitrary<Sexp[]>;

describe("s-expressions", () => {
  it("reads the advanced form of a real Guix signature", () => {
    const [, bytes] = narinfoFixtures(GUIX)[0]!;
    const value = /^Signature: 1;vm;(.*)$/m.exec(bytes.toString())![1]!;
    const sexp = parseSexp(Buffer.from(value, "base64"));
    expect(atomText(sexp[0])).toBe("signature");
    expect(atomText(sexpValue(sexp, "flags"))).toBe("rfc6979");
    expect(findSexp(sexp, "hash")!.map((a) => toAdvancedSexp(a))).toEqual([
      "hash",
      "sha256",
      "#DFA5C8479F90DF65D6F068D8B18A549083EBC54143FD3E55AAFA83758BE7BEE7#",
    ]);
    expect(atomText(sexpValue(sexp, "curve"))).toBe("Ed25519");
    expect(sexpValue(sexp, "q")).toHaveLength(32);
  });

  it("reads quoted strings, base64, length-prefixed atoms and hex with spaces", () => {
    const sexp = parseSexp('(a "x\\ny\\"\\x41\\101" |aGk=| 3:a)b #0A 0b#)');
    expect(sexp.map((a) => Buffer.from(a as Uint8Array).toString("latin1"))).toEqual([
      "a",
      'x\ny"AA',
      "hi",
      "a)b",
      "\n\u000b",
    ]);
  });

  it("round-trips any tree through the canonical and the advanced form", () => {
    fc.assert(
      fc.property(sexpTree, (tree) => {
        expect(parseSexp(toCanonicalSexp(tree))).toEqual(tree);
        expect(parseSexp(toAdvancedSexp(tree))).toEqual(tree);
      }),
    );
  });

  it("refuses bad input with invalid_sexp and the offset, and never anything else", () => {
    for (const [text, why] of [
      ["", /offset 0: expected '\('/],
      ["(a", /unclosed list/],
      ["(a #0#)", /bad hex/],
      ["(a #00)", /unclosed #/],
      ["(a |!|)", /bad base64/],
      ['(a "x)', /unclosed string/],
      ["(9:ab)", /runs past the end/],
      ["(1 a)", /followed by ':'/],
      ["(a) b", /trailing data/],
      ["(a [hint]b)", /unexpected "\["/],
      [`${"(".repeat(40)}${")".repeat(40)}`, /nested deeper than 32/],
    ] as const) {
      expect(() => parseSexp(text), text).toThrow(CacheError);
      expect(() => parseSexp(text), text).toThrow(why);
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          parseSexp(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(CacheError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
