import { createHash } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { CacheError, CacheErrorCode } from "./errors.js";
import type { Narinfo } from "./narinfo.js";
import {
  atomText,
  findAllSexp,
  findSexp,
  parseSexp,
  type Sexp,
  sexpValue,
  toAdvancedSexp,
} from "./sexp.js";

/**
 * Guix's narinfo signatures. `guix publish` signs with libgcrypt: the `Signature:` line is
 * `<version>;<host>;<base64 of an s-expression>` holding the sha256 of the narinfo's bytes
 * before `Signature:` (what a Guix client hashes: the text up to the first "Signature:"),
 * the signature `(sig-val (ecdsa (r ..) (s ..)))` and the signer's public key
 * `(public-key (ecc (curve Ed25519) (q ..)))`. It is ECDSA on the Ed25519 curve (not
 * EdDSA): e = the digest as an integer shifted right by 3 bits (libgcrypt truncates it to
 * the 253-bit order n), R = (e/s)·G + (r/s)·Q in Edwards coordinates, and the signature
 * holds when R's affine x mod n equals r. Lines after `Signature:` are not covered.
 */
export interface GuixPublicKey {
  /** The EdDSA encoding of the point Q (32 bytes). */
  readonly q: Uint8Array;
}

export interface GuixSignature {
  readonly version: number;
  readonly host: string;
  /** The sha256 the signature covers, as the signature states it. */
  readonly digest: Uint8Array;
  readonly r: bigint;
  readonly s: bigint;
  readonly publicKey: GuixPublicKey;
}

const Point = ed25519.Point;
const N = Point.Fn.ORDER;

function bad(why: string): CacheError {
  return new CacheError(CacheErrorCode.InvalidSignature, `Guix signature: ${why}`);
}

function keyFromSexp(key: Sexp[]): GuixPublicKey {
  const curve = atomText(sexpValue(key, "curve"));
  if (curve !== "Ed25519") {
    throw new CacheError(
      CacheErrorCode.InvalidKey,
      `Guix public key: curve ${JSON.stringify(curve ?? null)}, expected Ed25519`,
    );
  }
  let q = sexpValue(key, "q");
  if (q?.length === 33 && q[0] === 0x40) q = q.subarray(1); // libgcrypt's "compact" prefix
  if (q?.length !== 32)
    throw new CacheError(CacheErrorCode.InvalidKey, "Guix public key: q must be 32 bytes");
  return { q: Uint8Array.from(q) };
}

/**
 * Every `(public-key (ecc (curve Ed25519) (q #..#)))` in `text`: a `signing-key.pub` file,
 * or an ACL (`/etc/guix/acl`) holding several.
 */
export function parseGuixPublicKeys(text: string | Uint8Array): GuixPublicKey[] {
  let sexp: Sexp[];
  try {
    sexp = parseSexp(text);
  } catch (err) {
    throw new CacheError(CacheErrorCode.InvalidKey, `Guix public key: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const keys = findAllSexp(sexp, "public-key").map(keyFromSexp);
  if (keys.length === 0)
    throw new CacheError(CacheErrorCode.InvalidKey, "Guix public key: no (public-key ...) found");
  return keys;
}

/** One key, as `guix archive --generate-key` writes it (advanced form). */
export function formatGuixPublicKey(key: GuixPublicKey): string {
  const q = toAdvancedSexp(key.q);
  return `(public-key \n (ecc \n  (curve Ed25519)\n  (q ${q})\n  )\n )\n`;
}

function bigintOf(bytes: Uint8Array | undefined, what: string): bigint {
  if (bytes === undefined || bytes.length === 0 || bytes.length > 64)
    throw bad(`missing or bad ${what}`);
  return BigInt(`0x${Buffer.from(bytes).toString("hex")}`);
}

/** Parse a `Signature:` value. Throws `invalid_signature` naming what is wrong. */
export function parseGuixSignature(value: string): GuixSignature {
  const parts = value.split(";");
  if (parts.length !== 3) throw bad("expected <version>;<host>;<base64 s-expression>");
  const [versionText, host, body] = parts as [string, string, string];
  if (!/^[0-9]{1,6}$/.test(versionText) || Number(versionText) < 1) {
    throw bad(`version ${JSON.stringify(versionText)} is not a number of at least 1`);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) throw bad("not base64");
  let sexp: Sexp[];
  try {
    sexp = parseSexp(Buffer.from(body, "base64"));
  } catch (err) {
    throw new CacheError(
      CacheErrorCode.InvalidSignature,
      `Guix signature: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (atomText(sexp[0]) !== "signature") throw bad("not a (signature ...) expression");
  const hash = findSexp(findSexp(sexp, "data") ?? [], "hash");
  if (
    atomText(hash?.[1]) !== "sha256" ||
    !(hash?.[2] instanceof Uint8Array) ||
    hash[2].length !== 32
  ) {
    throw bad("missing (data (hash sha256 #..#))");
  }
  const ecdsa = findSexp(findSexp(sexp, "sig-val") ?? [], "ecdsa");
  if (ecdsa === undefined) throw bad("missing (sig-val (ecdsa ...))");
  const key = findSexp(sexp, "public-key");
  if (key === undefined) throw bad("missing (public-key ...)");
  let publicKey: GuixPublicKey;
  try {
    publicKey = keyFromSexp(key);
  } catch (err) {
    throw new CacheError(
      CacheErrorCode.InvalidSignature,
      `Guix signature: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return {
    version: Number(versionText),
    host,
    digest: Uint8Array.from(hash[2]),
    r: bigintOf(sexpValue(ecdsa, "r"), "r"),
    s: bigintOf(sexpValue(ecdsa, "s"), "s"),
    publicKey,
  };
}

/** libgcrypt's ECDSA verification on the Ed25519 curve (see the top of this file). */
export function verifyGuixEcdsa(
  digest: Uint8Array,
  r: bigint,
  s: bigint,
  key: GuixPublicKey,
): boolean {
  if (r <= 0n || r >= N || s <= 0n || s >= N) return false;
  let q: InstanceType<typeof Point>;
  try {
    q = Point.fromBytes(key.q);
  } catch {
    return false;
  }
  const e = BigInt(`0x${Buffer.from(digest).toString("hex")}`) >> BigInt(digest.length * 8 - 253);
  const w = Point.Fn.inv(s);
  const u1 = Point.Fn.create(e * w);
  const u2 = Point.Fn.create(r * w);
  const point = Point.BASE.multiplyUnsafe(u1).add(q.multiplyUnsafe(u2));
  if (point.is0()) return false;
  return Point.Fn.create(point.toAffine().x) === r;
}

/** The bytes a Guix client hashes: everything before the first "Signature:". */
export function guixSignedBytes(raw: Uint8Array): Uint8Array | undefined {
  const at = Buffer.from(raw).indexOf("Signature:");
  return at < 0 ? undefined : raw.subarray(0, at);
}

/** How a narinfo's Guix signature fares, in the terms of Guix's `signature-case`. */
export type GuixSigCheck =
  | { kind: "valid"; host: string }
  | { kind: "absent" }
  | { kind: "malformed"; reason: string }
  /** The signing key is not among the trusted ones. */
  | { kind: "untrusted"; host: string; key: GuixPublicKey }
  /** The signature covers other bytes than the narinfo's. */
  | { kind: "hash_mismatch"; host: string }
  | { kind: "invalid"; host: string };

export function checkGuixNarinfo(info: Narinfo, trusted: readonly GuixPublicKey[]): GuixSigCheck {
  if (info.guixSignature === undefined) return { kind: "absent" };
  let sig: GuixSignature;
  try {
    sig = parseGuixSignature(info.guixSignature);
  } catch (err) {
    return { kind: "malformed", reason: (err as Error).message };
  }
  const { host, publicKey } = sig;
  if (!trusted.some((k) => Buffer.from(k.q).equals(publicKey.q)))
    return { kind: "untrusted", host, key: publicKey };
  const signed = guixSignedBytes(info.raw);
  const digest = signed === undefined ? undefined : createHash("sha256").update(signed).digest();
  if (digest === undefined || !digest.equals(sig.digest)) return { kind: "hash_mismatch", host };
  return verifyGuixEcdsa(sig.digest, sig.r, sig.s, publicKey)
    ? { kind: "valid", host }
    : { kind: "invalid", host };
}
