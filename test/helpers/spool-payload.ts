import { createHash, randomBytes } from "node:crypto";

/** sha256 of bytes, hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

const DIGEST_BYTES = 32;

/**
 * Self-verifying entry data: `size` random bytes followed by their sha256. Any data file
 * can then be checked whole without knowing what was written (a torn or truncated file,
 * or another entry's data, fails).
 */
export function makePayload(size: number): Buffer {
  const body = randomBytes(size);
  return Buffer.concat([body, createHash("sha256").update(body).digest()]);
}

export function payloadIsWhole(bytes: Buffer): boolean {
  if (bytes.length < DIGEST_BYTES) return false;
  const body = bytes.subarray(0, bytes.length - DIGEST_BYTES);
  const digest = bytes.subarray(bytes.length - DIGEST_BYTES);
  return createHash("sha256").update(body).digest().equals(digest);
}
