import { randomBytes } from "node:crypto";

/** The metadata of every benchmark entry: JSON of about 100 bytes. */
export interface BenchMetadata {
  id: number;
  kind: string;
  queuedAt: string;
  owner: string;
  tags: string[];
}

export function benchMetadata(id: number): BenchMetadata {
  return {
    id,
    kind: "bench-entry",
    queuedAt: "2026-01-01T00:00:00.000Z",
    owner: "bench",
    tags: ["small", "1k"],
  };
}

/** The data of every benchmark entry: 1 KiB. */
export const DATA_BYTES = 1024;
export const benchData: Buffer = randomBytes(DATA_BYTES);

let counter = 0;

/**
 * The baseline's entry names, made exactly as the spool's default `timeSortableNames()`
 * makes them (ms since epoch in hex, a per-process counter, a node id, 48 random bits),
 * so both sides pay the same for naming and sort the same way.
 */
export function rawName(attempt: number, nodeId = "local"): string {
  counter = (counter + 1) >>> 0;
  const time = Date.now().toString(16).padStart(12, "0");
  const count = counter.toString(16).padStart(8, "0");
  const rand = randomBytes(6).toString("hex");
  const suffix = attempt > 0 ? `-${attempt}` : "";
  return `${time}-${count}-${nodeId}-${rand}${suffix}`;
}
