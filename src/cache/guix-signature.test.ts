import { createPublicKey, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { GUIX, narinfoFixtures } from "../../test/helpers/cache-fixtures.js";
import {
  checkGuixNarinfo,
  formatGuixPublicKey,
  type GuixPublicKey,
  guixSignedBytes,
  parseGuixPublicKeys,
  parseGuixSignature,
  verifyGuixEcdsa,
} from "./guix-signature.js";
import { parseNarinfo } from "./narinfo.js";
import { parseSexp, toAdvancedSexp } from "./sexp.js";

/** The key of the `guix publish` that wrote the fixtures (host "vm"), as an operator gives it. */
const VM_KEY_TEXT = `(public-key
 (ecc
  (curve Ed25519)
  (q #239E994B9C3302A466FD5034D7FF90FEA287312BA1093E72DD195D036100C1FC#)
  )
 )
`;
const [VM_KEY] = parseGuixPublicKeys(VM_KEY_TEXT) as [GuixPublicKey];
const OTHER_KEY = parseGuixPublicKeys(
  "(public-key (ecc (curve Ed25519) (q #0A4C5A4F4D9B9D1C8B0E5F3A2D8C4E6F1B7A9C0D2E4F6A8B0C1D3E5F7A9B1C3D#)))",
)[0]!;
const FIXTURES = narinfoFixtures(GUIX);

/** A fixture's Signature with its sexp rewritten by `edit`. */
function resign(text: string, edit: (sexp: string) => string): string {
  return text.replace(/^(Signature: 1;vm;)(.*)$/m, (_, head: string, b64: string) => {
    const sexp = toAdvancedSexp(parseSexp(Buffer.from(b64, "base64")));
    return head + Buffer.from(edit(sexp)).toString("base64");
  });
}

describe("Guix signatures", () => {
  it("verifies every narinfo guix publish 1.5 signed, with the signer's key trusted", () => {
    for (const [file, bytes] of FIXTURES) {
      const info = parseNarinfo(bytes);
      expect(checkGuixNarinfo(info, [OTHER_KEY, VM_KEY]), file).toEqual({
        kind: "valid",
        host: "vm",
      });
      const signed = Buffer.from(guixSignedBytes(info.raw)!).toString();
      expect(
        signed.endsWith(`References: ${/^References: (.*)$/m.exec(bytes.toString())![1]}\n`),
      ).toBe(true);
    }
  });

  it("is ECDSA on Ed25519, not EdDSA: node:crypto's Ed25519 verify refuses it", () => {
    const info = parseNarinfo(FIXTURES[0]![1]);
    const sig = parseGuixSignature(info.guixSignature!);
    const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), sig.publicKey.q]);
    const rs = Buffer.from(
      sig.r.toString(16).padStart(64, "0") + sig.s.toString(16).padStart(64, "0"),
      "hex",
    );
    const key = createPublicKey({ key: spki, format: "der", type: "spki" });
    expect(verify(null, Buffer.from(guixSignedBytes(info.raw)!), key, rs)).toBe(false);
    expect(verifyGuixEcdsa(sig.digest, sig.r, sig.s, sig.publicKey)).toBe(true);
  });

  it("ignores the unsigned lines after Signature and catches changes before it", () => {
    const text = FIXTURES[0]![1].toString();
    const moved = parseNarinfo(
      text.replace("FileSize: 148", "FileSize: 149").replace(/URL: nar\/zstd/, "URL: nar/zstd2"),
    );
    expect(checkGuixNarinfo(moved, [VM_KEY]).kind).toBe("valid");
    const changed = parseNarinfo(text.replace("NarSize: 184", "NarSize: 185"));
    expect(checkGuixNarinfo(changed, [VM_KEY])).toEqual({ kind: "hash_mismatch", host: "vm" });
  });

  it("tells an untrusted key, a forged r or s, and a missing or malformed signature apart", () => {
    const text = FIXTURES[0]![1].toString();
    const info = parseNarinfo(text);
    expect(checkGuixNarinfo(info, [OTHER_KEY])).toMatchObject({ kind: "untrusted", host: "vm" });
    const sig = parseGuixSignature(info.guixSignature!);
    const rHex = sig.r.toString(16).toUpperCase().padStart(64, "0");
    const forged = parseNarinfo(
      resign(text, (s) =>
        s.replace(rHex, (sig.r + 1n).toString(16).toUpperCase().padStart(64, "0")),
      ),
    );
    expect(checkGuixNarinfo(forged, [VM_KEY])).toEqual({ kind: "invalid", host: "vm" });
    expect(verifyGuixEcdsa(sig.digest, sig.r, 0n, VM_KEY)).toBe(false);
    expect(verifyGuixEcdsa(sig.digest, sig.r, sig.s + 1n, VM_KEY)).toBe(false);
    expect(checkGuixNarinfo(parseNarinfo(text.replace(/^Signature: .*\n/m, "")), [VM_KEY])).toEqual(
      { kind: "absent" },
    );
    for (const [value, why] of [
      ["1;vm", /expected <version>;<host>;<base64/],
      ["0;vm;KA==", /version "0"/],
      ["1;vm;!!!!", /not base64/],
      [`1;vm;${Buffer.from("(data)").toString("base64")}`, /not a \(signature/],
      [
        `1;vm;${Buffer.from("(signature (data (hash sha256 #00#)))").toString("base64")}`,
        /missing \(data \(hash sha256/,
      ],
    ] as const) {
      expect(() => parseGuixSignature(value)).toThrow(why);
      const bad = parseNarinfo(text.replace(/^Signature: .*$/m, `Signature: ${value}`));
      expect(checkGuixNarinfo(bad, [VM_KEY]).kind).toBe("malformed");
    }
  });

  it("reads keys from a signing-key.pub or an ACL, and writes them back", () => {
    expect(parseGuixPublicKeys(formatGuixPublicKey(VM_KEY))).toEqual([VM_KEY]);
    const acl = `(acl (entry ${VM_KEY_TEXT} (tag (guix import))) (entry ${formatGuixPublicKey(OTHER_KEY)} (tag (guix import))))`;
    expect(parseGuixPublicKeys(acl)).toEqual([VM_KEY, OTHER_KEY]);
    expect(() => parseGuixPublicKeys("(acl)")).toThrow(/no \(public-key/);
    expect(() => parseGuixPublicKeys("(public-key (ecc (curve NIST-P256) (q #00#)))")).toThrow(
      /curve "NIST-P256"/,
    );
    expect(() => parseGuixPublicKeys("(public-key (ecc (curve Ed25519) (q #00#)))")).toThrow(
      /q must be 32 bytes/,
    );
  });
});
