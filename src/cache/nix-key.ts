import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { CacheError, CacheErrorCode } from "./errors.js";

/**
 * Nix's signing keys: `<name>:<base64>`, where a secret key holds the 32-byte Ed25519
 * seed followed by the 32-byte public key (64 bytes, as `nix key generate-secret` and
 * `nix-store --generate-binary-cache-key` write it) and a public key the 32-byte public key.
 * The name travels in every signature (`<name>:<base64 signature>`) and picks the key that
 * checks it.
 */
export interface NixPublicKey {
  readonly name: string;
  readonly key: Uint8Array;
  readonly keyObject: KeyObject;
}

export interface NixSecretKey {
  readonly name: string;
  readonly seed: Uint8Array;
  readonly publicKey: NixPublicKey;
  readonly keyObject: KeyObject;
}

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

/** Never echo a key's base64: a secret pasted where a public key belongs must not leak. */
function bad(what: string, text: string, why: string): CacheError {
  const colon = text.indexOf(":");
  const named = colon > 0 && colon <= 64 ? ` named ${JSON.stringify(text.slice(0, colon))}` : "";
  const hint = what === "public key" && /got 64$/.test(why) ? " (is this a secret key?)" : "";
  return new CacheError(CacheErrorCode.InvalidKey, `${what}${named}: ${why}${hint}`);
}

/** A key or signature name: non-empty, printable, no colon or whitespace. */
export function checkKeyName(name: string): string | undefined {
  if (name.length === 0) return "empty key name";
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name))
    return "key name must be printable ASCII without ':' or spaces";
  return undefined;
}

/** Split `name:base64` into its name and exactly `size` bytes, or say (a string) why not. */
export function splitNamed(
  text: string,
  size: number,
): { name: string; bytes: Uint8Array } | string {
  const colon = text.indexOf(":");
  if (colon < 0) return "expected <name>:<base64>";
  const name = text.slice(0, colon);
  const problem = checkKeyName(name);
  if (problem !== undefined) return problem;
  const body = text.slice(colon + 1);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) return "not base64";
  const bytes = Buffer.from(body, "base64");
  if (bytes.length !== size || bytes.toString("base64") !== body) {
    return `expected ${size} bytes of base64, got ${bytes.length}`;
  }
  return { name, bytes: Uint8Array.from(bytes) };
}

export function publicKeyFromBytes(name: string, key: Uint8Array): NixPublicKey {
  const keyObject = createPublicKey({
    key: Buffer.concat([SPKI_ED25519, key]),
    format: "der",
    type: "spki",
  });
  return { name, key: Uint8Array.from(key), keyObject };
}

function secretKeyFromSeed(name: string, seed: Uint8Array): NixSecretKey {
  const keyObject = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: "der",
    type: "pkcs8",
  });
  const raw = createPublicKey(keyObject)
    .export({ format: "der", type: "spki" })
    .subarray(SPKI_ED25519.length);
  return { name, seed: Uint8Array.from(seed), publicKey: publicKeyFromBytes(name, raw), keyObject };
}

/** Parse a public key (`name:base64` of 32 bytes); surrounding whitespace is ignored. */
export function parseNixPublicKey(text: string): NixPublicKey {
  const trimmed = text.trim();
  const parts = splitNamed(trimmed, 32);
  if (typeof parts === "string") throw bad("public key", trimmed, parts);
  return publicKeyFromBytes(parts.name, parts.bytes);
}

/**
 * Parse a secret key (`name:base64` of seed + public key); surrounding whitespace is
 * ignored. The public half must be the seed's. Messages never show the secret.
 */
export function parseNixSecretKey(text: string): NixSecretKey {
  const trimmed = text.trim();
  const parts = splitNamed(trimmed, 64);
  if (typeof parts === "string") throw bad("secret key", trimmed, parts);
  const key = secretKeyFromSeed(parts.name, parts.bytes.subarray(0, 32));
  if (!Buffer.from(key.publicKey.key).equals(parts.bytes.subarray(32))) {
    throw bad("secret key", trimmed, "its public half does not belong to its seed");
  }
  return key;
}

export function formatNixPublicKey(key: NixPublicKey): string {
  return `${key.name}:${Buffer.from(key.key).toString("base64")}`;
}

export function formatNixSecretKey(key: NixSecretKey): string {
  return `${key.name}:${Buffer.concat([key.seed, key.publicKey.key]).toString("base64")}`;
}

/** A fresh key pair named `name` (like `nix key generate-secret --key-name NAME`). */
export function generateNixKey(name: string): NixSecretKey {
  const problem = checkKeyName(name);
  if (problem !== undefined)
    throw new CacheError(CacheErrorCode.InvalidKey, `key name ${JSON.stringify(name)}: ${problem}`);
  const { privateKey } = generateKeyPairSync("ed25519");
  const d = privateKey.export({ format: "jwk" }).d;
  if (d === undefined) throw new Error("node:crypto returned an Ed25519 key without its seed");
  return secretKeyFromSeed(name, Buffer.from(d, "base64url"));
}
