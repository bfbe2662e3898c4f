import { createHash, type Hash as NodeHash } from "node:crypto";
import { CacheError, CacheErrorCode } from "./errors.js";
import { nix32Decode, nix32Encode, nix32Length } from "./nix32.js";

/** The algorithms Nix names in narinfos and store paths, with their digest sizes. */
export const HASH_SIZES = { md5: 16, sha1: 20, sha256: 32, sha512: 64 } as const;
export type HashAlgorithm = keyof typeof HASH_SIZES;

/** A digest and its algorithm. `sha256:<nix32>` is how narinfos write it. */
export interface Hash {
  readonly algorithm: HashAlgorithm;
  readonly digest: Uint8Array;
}

export type HashEncoding = "nix32" | "base16" | "base64" | "sri";

function isAlgorithm(name: string): name is HashAlgorithm {
  return Object.hasOwn(HASH_SIZES, name);
}

function bad(text: string, why: string): CacheError {
  return new CacheError(CacheErrorCode.InvalidHash, `hash ${JSON.stringify(text)}: ${why}`);
}

/**
 * Parse `<algo>:<digest>` with the digest in nix32, base16 or base64 (told apart by length,
 * as Nix does), or SRI `<algo>-<base64>`. Throws `invalid_hash` naming what is wrong.
 */
export function parseHash(text: string): Hash {
  const m = /^([a-z0-9]+)([:-])(.*)$/s.exec(text);
  if (m === null) throw bad(text, "expected <algorithm>:<digest>");
  const [, name, sep, body] = m as unknown as [string, string, string, string];
  if (!isAlgorithm(name)) throw bad(text, `unknown algorithm ${JSON.stringify(name)}`);
  const size = HASH_SIZES[name];
  if (sep === "-") return { algorithm: name, digest: decodeBase64(text, body, size) };
  if (body.length === nix32Length(size)) {
    try {
      return { algorithm: name, digest: nix32Decode(body, size) };
    } catch (err) {
      throw new CacheError(
        CacheErrorCode.InvalidHash,
        `hash ${JSON.stringify(text)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  if (body.length === size * 2) {
    if (!/^[0-9a-fA-F]*$/.test(body)) throw bad(text, "not base16");
    return { algorithm: name, digest: Uint8Array.from(Buffer.from(body, "hex")) };
  }
  if (body.length === Math.ceil(size / 3) * 4) {
    return { algorithm: name, digest: decodeBase64(text, body, size) };
  }
  throw bad(
    text,
    `digest of length ${body.length} is no ${name} digest in nix32, base16 or base64`,
  );
}

function decodeBase64(text: string, body: string, size: number): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw bad(text, "not base64");
  const digest = Buffer.from(body, "base64");
  if (digest.length !== size || digest.toString("base64") !== body) {
    throw bad(text, `base64 digest is not ${size} bytes`);
  }
  return Uint8Array.from(digest);
}

/** `sha256:<nix32>` by default, as narinfos write NarHash and FileHash. */
export function formatHash(hash: Hash, encoding: HashEncoding = "nix32"): string {
  const buf = Buffer.from(hash.digest);
  switch (encoding) {
    case "nix32":
      return `${hash.algorithm}:${nix32Encode(hash.digest)}`;
    case "base16":
      return `${hash.algorithm}:${buf.toString("hex")}`;
    case "base64":
      return `${hash.algorithm}:${buf.toString("base64")}`;
    case "sri":
      return `${hash.algorithm}-${buf.toString("base64")}`;
  }
}

export function hashEquals(a: Hash, b: Hash): boolean {
  return a.algorithm === b.algorithm && Buffer.from(a.digest).equals(b.digest);
}

export function hashOf(algorithm: HashAlgorithm, data: Uint8Array | string): Hash {
  return { algorithm, digest: Uint8Array.from(createHash(algorithm).update(data).digest()) };
}

/** An incremental hash that also counts bytes: feed it a nar as it streams past. */
export class HashSink {
  private readonly hash: NodeHash;
  size = 0;

  constructor(readonly algorithm: HashAlgorithm) {
    this.hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }

  finish(): { hash: Hash; size: number } {
    return {
      hash: { algorithm: this.algorithm, digest: Uint8Array.from(this.hash.digest()) },
      size: this.size,
    };
  }
}
