/**
 * The job both sides carry: about 100 bytes of JSON metadata (the shape of
 * bench/lib/spool-payload.ts `benchMetadata`, plus the enqueue start time) and 1 KiB of data.
 * The data is printable ASCII so that pg-boss, whose job data is JSON, stores exactly the
 * same 1,024 bytes as geospool does (no base64 inflation on one side only).
 */
import { randomInt } from "node:crypto";
import { type BenchMetadata, benchMetadata, DATA_BYTES } from "./spool-payload.js";

export interface GrpcBenchMetadata extends BenchMetadata {
  /** performance.now() in the bench process when the enqueue started. */
  t0: number;
}

export function jobMetadata(id: number, t0: number): GrpcBenchMetadata {
  return { ...benchMetadata(id), t0 };
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** 1 KiB of random letters and digits. */
export const jobData: string = Array.from(
  { length: DATA_BYTES },
  () => ALPHABET[randomInt(ALPHABET.length)],
).join("");
export const jobDataBytes: Buffer = Buffer.from(jobData, "ascii");

/** Size of the metadata JSON of a typical job (for the report). */
export function metadataBytes(): number {
  return Buffer.byteLength(JSON.stringify(jobMetadata(123_456, performance.now())));
}
