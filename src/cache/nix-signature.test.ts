import { describe, expect, it } from "vitest";
import {
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
  readFixture,
} from "../../test/helpers/cache-fixtures.js";
import { CacheError } from "./errors.js";
import { parseNarinfo } from "./narinfo.js";
import {
  formatNixPublicKey,
  formatNixSecretKey,
  generateNixKey,
  parseNixPublicKey,
  parseNixSecretKey,
} from "./nix-key.js";
import {
  checkNarinfoSignatures,
  checkSignature,
  hasTrustedSignature,
  narinfoFingerprint,
  signNarinfo,
} from "./nix-signature.js";

const SECRET = parseNixSecretKey(readFixture("nix-2.8-test-key.secret").toString());
const PUBLIC = parseNixPublicKey(readFixture("nix-2.8-test-key.public").toString());

function keyError(f: () => unknown): CacheError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CacheError);
    return err as CacheError;
  }
  throw new Error("no error");
}

describe("Nix signatures", () => {
  it("reads Nix's key files; the secret's public half is the public key", () => {
    expect(SECRET.name).toBe("geospool-testdata-1");
    expect(formatNixPublicKey(SECRET.publicKey)).toBe(formatNixPublicKey(PUBLIC));
    expect(formatNixSecretKey(SECRET)).toBe(
      readFixture("nix-2.8-test-key.secret").toString().trim(),
    );
  });

  it("reproduces every Sig that Nix 2.8 wrote, byte for byte, and verifies it", () => {
    for (const cache of [NIX_XZ, NIX_ZSTD]) {
      for (const [file, bytes] of narinfoFixtures(cache)) {
        const info = parseNarinfo(bytes);
        expect(signNarinfo(info, SECRET), file).toBe(info.sigs[0]);
        expect(checkNarinfoSignatures(info, [PUBLIC])).toEqual([
          { kind: "valid", keyName: "geospool-testdata-1" },
        ]);
      }
    }
    const app = parseNarinfo(narinfoFixtures(NIX_XZ)[2]![1]);
    expect(narinfoFingerprint(app)).toBe(
      "1;/nix/store/l493h11hsb577v1lhgwxzcmxh4q2m02w-geo-app;sha256:1xcn0q1cbdfxz8b8aa4sdbfvg4kfq12fl4291fg9hhmrksixmq7k;528;/nix/store/3wwj8mpk0lbnanhsfxw3m2birs5gl6xx-geo-lib",
    );
  });

  it("sorts references in the fingerprint as Nix's path set does", () => {
    const base = narinfoFixtures(NIX_XZ)[2]![1].toString();
    const refs = "zzzz8mpk0lbnanhsfxw3m2birs5gl6xx-z 3wwj8mpk0lbnanhsfxw3m2birs5gl6xx-geo-lib";
    const info = parseNarinfo(base.replace(/^References: .*$/m, `References: ${refs}`));
    expect(narinfoFingerprint(info).split(";")[4]).toBe(
      "/nix/store/3wwj8mpk0lbnanhsfxw3m2birs5gl6xx-geo-lib,/nix/store/zzzz8mpk0lbnanhsfxw3m2birs5gl6xx-z",
    );
  });

  it("rejects a tampered narinfo, an unknown key and a malformed Sig", () => {
    const [, bytes] = narinfoFixtures(NIX_XZ)[2]!;
    const text = bytes.toString();
    for (const tampered of [
      text.replace("NarSize: 528", "NarSize: 529"),
      text.replace("sha256:1xcn", "sha256:0xcn"),
      text.replace(/^References: .*$/m, "References: "),
      text.replace("-geo-app", "-geo-apq"),
    ]) {
      const info = parseNarinfo(tampered);
      expect(checkNarinfoSignatures(info, [PUBLIC])).toEqual([
        { kind: "invalid", keyName: "geospool-testdata-1" },
      ]);
      expect(hasTrustedSignature(info, [PUBLIC])).toBe(false);
    }
    const info = parseNarinfo(bytes);
    const other = generateNixKey("other-1");
    expect(checkNarinfoSignatures(info, [other.publicKey])).toEqual([
      { kind: "untrusted", keyName: "geospool-testdata-1" },
    ]);
    const impostor = generateNixKey("geospool-testdata-1");
    expect(hasTrustedSignature(info, [impostor.publicKey])).toBe(false);
    expect(hasTrustedSignature(info, [impostor.publicKey, PUBLIC])).toBe(true);
    const fp = narinfoFingerprint(info);
    expect(checkSignature(fp, "nocolon", [PUBLIC]).kind).toBe("malformed");
    expect(checkSignature(fp, "geospool-testdata-1:AAAA", [PUBLIC])).toMatchObject({
      kind: "malformed",
      reason: expect.stringMatching(/expected 64 bytes of base64, got 3/),
    });
  });

  it("generates keys that sign and verify, and round-trip through their text form", () => {
    const key = generateNixKey("cache.example.org-1");
    const again = parseNixSecretKey(`${formatNixSecretKey(key)}\n`);
    expect(formatNixPublicKey(again.publicKey)).toBe(formatNixPublicKey(key.publicKey));
    const info = parseNarinfo(narinfoFixtures(NIX_XZ)[0]![1]);
    const sig = signNarinfo(info, key);
    expect(sig).toMatch(/^cache\.example\.org-1:[A-Za-z0-9+/]{86}==$/);
    expect(
      checkSignature(narinfoFingerprint(info), sig, [
        parseNixPublicKey(formatNixPublicKey(key.publicKey)),
      ]).kind,
    ).toBe("valid");
  });

  it("refuses malformed keys with invalid_key and never prints a secret", () => {
    const secretText = formatNixSecretKey(SECRET);
    const [, body] = secretText.split(":") as [string, string];
    const otherPublic = Buffer.from(generateNixKey("x").publicKey.key).toString("base64");
    const mismatched = `k:${Buffer.concat([Buffer.from(SECRET.seed), Buffer.from(otherPublic, "base64")]).toString("base64")}`;
    for (const [f, why] of [
      [() => parseNixSecretKey(body), /expected <name>:<base64>/],
      [() => parseNixSecretKey(`:${body}`), /empty key name/],
      [() => parseNixSecretKey(`a b:${body}`), /printable ASCII/],
      [() => parseNixSecretKey(`k:${body.slice(4)}`), /expected 64 bytes/],
      [() => parseNixSecretKey(mismatched), /public half does not belong/],
      [() => parseNixPublicKey(secretText), /expected 32 bytes of base64, got 64/],
      [() => parseNixPublicKey("k:!!"), /not base64/],
      [() => generateNixKey(""), /empty key name/],
    ] as const) {
      const err = keyError(f);
      expect(err.code).toBe("invalid_key");
      expect(err.message).toMatch(why);
      expect(err.message).not.toContain(body.slice(0, 20));
      expect(err.message).not.toContain(body.slice(4, 24));
    }
  });
});
