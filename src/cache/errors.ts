/**
 * Failures of the cache's formats and signatures. A bad narinfo, hash, store path, key or
 * signature is a `CacheError` whose `code` says which kind of input was wrong and whose
 * message names the offending part (the line, the field, the character). Branch on `code`,
 * never on the message. A signature that is well formed but does not verify is not an
 * error: `verify` returns false.
 */
export const CacheErrorCode = {
  /** A string that is not valid nix32 (Nix's base-32) of the expected length. */
  InvalidNix32: "invalid_nix32",
  /** A hash that is not `<algo>:<digest>` (nix32, base16 or base64) or `<algo>-<base64>`. */
  InvalidHash: "invalid_hash",
  /** A store path or hash part that is not `<storeDir>/<32 nix32 chars>-<name>`. */
  InvalidStorePath: "invalid_store_path",
  /** A narinfo that cannot be parsed or lacks a required field; the message names the line. */
  InvalidNarinfo: "invalid_narinfo",
  /** A nix-cache-info that cannot be parsed. */
  InvalidCacheInfo: "invalid_cache_info",
  /** A key that is not `name:base64` of the right length. */
  InvalidKey: "invalid_key",
  /** A signature that is not well formed (`name:base64`, or Guix's `1;host;base64 sexp`). */
  InvalidSignature: "invalid_signature",
  /** An s-expression that cannot be read. */
  InvalidSexp: "invalid_sexp",
} as const;

export type CacheErrorCode = (typeof CacheErrorCode)[keyof typeof CacheErrorCode];

export class CacheError extends Error {
  readonly code: CacheErrorCode;

  constructor(code: CacheErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CacheError";
    this.code = code;
  }
}
