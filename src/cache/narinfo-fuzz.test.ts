import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GUIX, NIX_XZ, narinfoFixtures } from "../../test/helpers/cache-fixtures.js";
import { NarinfoParseError, parseNarinfo } from "./narinfo.js";

/** Parse, and fail the property on anything but a result or a typed parse error. */
function parsesOrRefuses(input: Uint8Array | string): void {
  try {
    parseNarinfo(input);
  } catch (err) {
    if (!(err instanceof NarinfoParseError)) throw err;
    expect(err.code).toBe("invalid_narinfo");
    if (err.line !== undefined) expect(err.message).toMatch(new RegExp(`^line ${err.line}: `));
  }
}

const REAL = [...narinfoFixtures(NIX_XZ), ...narinfoFixtures(GUIX)].map(([, b]) => b);
const KEYS = [
  "StorePath",
  "URL",
  "Compression",
  "FileHash",
  "FileSize",
  "NarHash",
  "NarSize",
  "References",
  "Deriver",
  "System",
  "Sig",
  "CA",
  "Signature",
  "X-Other",
  "",
  " ",
  "url",
];

const realLine = fc.constantFrom(...REAL).chain((b) =>
  fc.constantFrom(
    ...b
      .toString()
      .split("\n")
      .filter((l) => l !== ""),
  ),
);
const line = fc.oneof(
  realLine,
  fc
    .tuple(fc.constantFrom(...KEYS), fc.constantFrom(": ", ":", " : ", ""), fc.string())
    .map((p) => p.join("")),
  fc.string({ unit: "binary" }),
);

describe("narinfo parser under fuzzing", () => {
  it("answers any bytes with a narinfo or a typed parse error", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), parsesOrRefuses), { numRuns: 2000 });
  });

  it("answers any mix of real and made-up lines with a narinfo or a typed parse error", () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), fc.boolean(), (lines, newline) => {
        parsesOrRefuses(lines.join("\n") + (newline ? "\n" : ""));
      }),
      { numRuns: 2000 },
    );
  });

  it("answers real narinfos with flipped, cut or inserted bytes", () => {
    const mutated = fc
      .tuple(
        fc.constantFrom(...REAL),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom("flip", "cut", "insert"),
      )
      .map(([b, at, byte, how]) => {
        const i = at % b.length;
        if (how === "cut") return b.subarray(0, i);
        if (how === "insert")
          return Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)]);
        const copy = Buffer.from(b);
        copy[i] = byte;
        return copy;
      });
    fc.assert(fc.property(mutated, parsesOrRefuses), { numRuns: 3000 });
  });

  it("parses a narinfo of the largest allowed size in linear time", () => {
    const [, lib] = narinfoFixtures(NIX_XZ)[1]!;
    const ref = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx-geo-lib";
    const refs = Array.from({ length: 20_000 }, () => ref).join(" ");
    const urls = "URL: nar/x\nCompression: none\nFileSize: 1\n".repeat(5_000);
    const big = lib.toString().replace("References: ", `References: ${refs}`) + urls;
    expect(big.length).toBeGreaterThan(900_000);
    const started = performance.now();
    parsesOrRefuses(big.slice(0, 1024 * 1024));
    expect(parseNarinfo(big).references).toHaveLength(20_000);
    expect(parseNarinfo(big).files).toHaveLength(5_001);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(() => parseNarinfo(`${big}${"X: y\n".repeat(30_000)}`)).toThrow(/more than 1048576/);
  });
});
