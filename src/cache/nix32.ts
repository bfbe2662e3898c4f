import { CacheError, CacheErrorCode } from "./errors.js";

/**
 * Nix's base-32 ("nix32"): the alphabet omits e, o, u and t, and the bytes are read from
 * the end, so a 20-byte store path hash is 32 characters and a sha256 digest is 52.
 */
export const NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz";

const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < NIX32_ALPHABET.length; i++) DIGIT[NIX32_ALPHABET.charCodeAt(i)] = i;

/** Length in characters of `bytes` bytes in nix32. */
export function nix32Length(bytes: number): number {
  return Math.ceil((bytes * 8) / 5);
}

export function nix32Encode(bytes: Uint8Array): string {
  const len = nix32Length(bytes.length);
  let out = "";
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const lo = bytes[i]! >> j;
    const hi = i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0;
    out += NIX32_ALPHABET[(lo | hi) & 0x1f];
  }
  return out;
}

/** True when `text` is nix32 of some byte length (alphabet and length only). */
export function isNix32(text: string): boolean {
  return nix32ByteLength(text) !== undefined && /^[0-9a-df-np-sv-z]*$/.test(text);
}

function nix32ByteLength(text: string): number | undefined {
  const bytes = Math.floor((text.length * 5) / 8);
  return nix32Length(bytes) === text.length ? bytes : undefined;
}

/**
 * Decode nix32. Throws `invalid_nix32` naming the bad character, a length that is no
 * byte count's encoding (or not `expectBytes`), or set bits past the last byte.
 */
export function nix32Decode(text: string, expectBytes?: number): Uint8Array {
  const size = nix32ByteLength(text);
  if (size === undefined || (expectBytes !== undefined && size !== expectBytes)) {
    const want = expectBytes === undefined ? "" : ` (want ${nix32Length(expectBytes)})`;
    throw new CacheError(
      CacheErrorCode.InvalidNix32,
      `nix32 ${JSON.stringify(text)}: bad length ${text.length}${want}`,
    );
  }
  const out = new Uint8Array(size);
  for (let n = 0; n < text.length; n++) {
    const ch = text.charCodeAt(text.length - n - 1);
    const digit = ch < 128 ? DIGIT[ch]! : -1;
    if (digit < 0) {
      throw new CacheError(
        CacheErrorCode.InvalidNix32,
        `nix32 ${JSON.stringify(text)}: ${JSON.stringify(text[text.length - n - 1])} is not a nix32 character`,
      );
    }
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < size) out[i + 1]! |= carry;
    else if (carry !== 0) {
      throw new CacheError(
        CacheErrorCode.InvalidNix32,
        `nix32 ${JSON.stringify(text)}: has bits past the last byte`,
      );
    }
  }
  return out;
}
