import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GUIX, NIX_XZ, narinfoFixtures } from "../../test/helpers/cache-fixtures.js";
import { CacheError } from "./errors.js";
import {
  checkStoreDir,
  formatStorePath,
  GUIX_STORE_DIR,
  parseHashPart,
  parseStorePath,
  parseStorePathBaseName,
  STORE_NAME_CHARS,
  splitStorePath,
  storePathBaseName,
} from "./store-path.js";

const HASH = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return err instanceof CacheError ? err.code : "not a CacheError";
  }
  return undefined;
}

describe("store paths", () => {
  it("parses every StorePath and Reference of the real caches, keyed by the file's hash part", () => {
    for (const [cache, dir] of [
      [NIX_XZ, "/nix/store"],
      [GUIX, GUIX_STORE_DIR],
    ] as const) {
      for (const [file, bytes] of narinfoFixtures(cache)) {
        const text = bytes.toString();
        const storePath = /^StorePath: (.*)$/m.exec(text)![1]!;
        const parsed = parseStorePath(storePath, dir);
        expect(`${parsed.hashPart}.narinfo`).toBe(file);
        expect(formatStorePath(parsed, dir)).toBe(storePath);
        expect(splitStorePath(storePath)).toEqual({ storeDir: dir, path: parsed });
        const refs = /^References: ?(.*)$/m.exec(text)![1]!;
        for (const ref of refs.split(" ").filter((r) => r !== "")) {
          expect(storePathBaseName(parseStorePathBaseName(ref))).toBe(ref);
        }
      }
    }
  });

  it("round-trips any valid name under any store directory", () => {
    const name = fc
      .string({ unit: fc.constantFrom(...STORE_NAME_CHARS), minLength: 1, maxLength: 211 })
      .filter((n) => n !== "." && n !== "..");
    fc.assert(
      fc.property(name, fc.constantFrom("/nix/store", "/gnu/store", "/a/b-c"), (n, dir) => {
        const text = `${dir}/${HASH}-${n}`;
        expect(formatStorePath(parseStorePath(text, dir), dir)).toBe(text);
      }),
    );
  });

  it("refuses bad store paths with invalid_store_path", () => {
    for (const text of [
      `/gnu/store/${HASH}-x`,
      `/nix/store/${HASH}`,
      `/nix/store/${HASH}-`,
      `/nix/store/${HASH}x`,
      `/nix/store/${HASH.slice(1)}-x`,
      `/nix/store/e${HASH.slice(1)}-x`,
      `/nix/store/${HASH}-a/b`,
      `/nix/store/${HASH}-a b`,
      `/nix/store/${HASH}-..`,
      `/nix/store/${HASH}-${"a".repeat(212)}`,
      `/nix/store/${HASH}-caf\u00e9`,
      `/nix/store/${HASH}-a\0`,
    ]) {
      expect(
        codeOf(() => parseStorePath(text)),
        text,
      ).toBe("invalid_store_path");
    }
    expect(parseStorePath(`/nix/store/${HASH}-${"a".repeat(211)}`).name).toHaveLength(211);
    expect(() => parseStorePath(`/nix/store/${HASH}-a/b`)).toThrow(/name has "\/"/);
  });

  it("takes hash parts only as 32 nix32 characters (the lookup key)", () => {
    expect(parseHashPart(HASH)).toBe(HASH);
    for (const text of [
      "",
      HASH.slice(1),
      `${HASH}0`,
      "../../../../../../etc/passwd.....",
      `e${HASH.slice(1)}`,
    ]) {
      expect(
        codeOf(() => parseHashPart(text)),
        text,
      ).toBe("invalid_store_path");
    }
  });

  it("accepts only clean absolute store directories", () => {
    expect(checkStoreDir("/gnu/store")).toBe("/gnu/store");
    for (const dir of ["", "/", "nix/store", "/nix/store/", "/nix//store", "/nix/../etc"]) {
      expect(
        codeOf(() => checkStoreDir(dir)),
        dir,
      ).toBe("invalid_store_path");
    }
  });
});
