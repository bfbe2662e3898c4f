import { sign, verify } from "node:crypto";
import { CacheError, CacheErrorCode } from "./errors.js";
import { formatHash, type Hash } from "./hash.js";
import type { Narinfo } from "./narinfo.js";
import { type NixPublicKey, type NixSecretKey, splitNamed } from "./nix-key.js";
import { formatStorePath, type StorePath, storePathBaseName } from "./store-path.js";

/** What a Nix signature covers. */
export interface FingerprintInput {
  storeDir: string;
  storePath: StorePath;
  narHash: Hash;
  narSize: number;
  references: readonly StorePath[];
}

/**
 * `1;<storePath>;<narHash>;<narSize>;<references>`: the store path and references as full
 * paths, the references as Nix holds them (a sorted set, so sorted and without duplicates)
 * joined by ",", the NarHash as `sha256:<nix32>`.
 */
export function fingerprint(input: FingerprintInput): string {
  if (input.narHash.algorithm !== "sha256") {
    throw new CacheError(
      CacheErrorCode.InvalidHash,
      `fingerprint: NarHash must be sha256, not ${input.narHash.algorithm}`,
    );
  }
  const refs = [...new Set(input.references.map(storePathBaseName))].sort();
  return [
    "1",
    formatStorePath(input.storePath, input.storeDir),
    formatHash(input.narHash),
    String(input.narSize),
    refs.map((r) => `${input.storeDir}/${r}`).join(","),
  ].join(";");
}

export function narinfoFingerprint(info: Narinfo): string {
  return fingerprint(info);
}

/** A `Sig:` value, `<key name>:<base64 of 64 bytes>`. */
export interface NixSignature {
  readonly keyName: string;
  readonly signature: Uint8Array;
}

export function parseNixSignature(text: string): NixSignature {
  const parts = splitNamed(text, 64);
  if (typeof parts === "string") {
    throw new CacheError(
      CacheErrorCode.InvalidSignature,
      `signature ${JSON.stringify(text)}: ${parts}`,
    );
  }
  return { keyName: parts.name, signature: parts.bytes };
}

/** Sign a fingerprint: the `Sig:` value (Ed25519 is deterministic: same key, same Sig). */
export function signFingerprint(fp: string, key: NixSecretKey): string {
  const signature = sign(null, Buffer.from(fp, "utf8"), key.keyObject);
  return `${key.name}:${signature.toString("base64")}`;
}

export function signNarinfo(info: Narinfo, key: NixSecretKey): string {
  return signFingerprint(narinfoFingerprint(info), key);
}

/** How one `Sig:` value fares against a set of trusted keys. */
export type SigCheck =
  | { kind: "valid"; keyName: string }
  /** No trusted key has this name. */
  | { kind: "untrusted"; keyName: string }
  /** A trusted key has this name, and the signature does not verify with it. */
  | { kind: "invalid"; keyName: string }
  | { kind: "malformed"; reason: string };

export function checkSignature(
  fp: string,
  sig: string,
  trusted: readonly NixPublicKey[],
): SigCheck {
  let parsed: NixSignature;
  try {
    parsed = parseNixSignature(sig);
  } catch (err) {
    return { kind: "malformed", reason: (err as Error).message };
  }
  const keys = trusted.filter((k) => k.name === parsed.keyName);
  if (keys.length === 0) return { kind: "untrusted", keyName: parsed.keyName };
  const data = Buffer.from(fp, "utf8");
  const ok = keys.some((k) => verify(null, data, k.keyObject, parsed.signature));
  return { kind: ok ? "valid" : "invalid", keyName: parsed.keyName };
}

/** Each of the narinfo's `Sig:` lines, checked against `trusted`. */
export function checkNarinfoSignatures(
  info: Narinfo,
  trusted: readonly NixPublicKey[],
): SigCheck[] {
  const fp = narinfoFingerprint(info);
  return info.sigs.map((s) => checkSignature(fp, s, trusted));
}

/** True when at least one `Sig:` line verifies with a trusted key (Nix's require-sigs rule). */
export function hasTrustedSignature(info: Narinfo, trusted: readonly NixPublicKey[]): boolean {
  return checkNarinfoSignatures(info, trusted).some((c) => c.kind === "valid");
}
