import { randomUUID } from "node:crypto";
import type { geospool } from "../../proto/generated/spool.js";
import type { EntryInfo } from "../entry-info.js";

/** One small entry for `enqueueBatch`/`enqueueMany`: its whole data in memory. */
export interface BulkEntry {
  queue: string;
  data: Buffer | string;
  metadata?: Buffer | string;
  /** Made up when absent, so a retried batch never makes an entry twice. */
  idempotencyKey?: string;
}

/** What became of one entry: made (or found, `deduplicated`), or refused alone. */
export type BulkResult =
  | { ok: true; entry: EntryInfo; deduplicated: boolean }
  | { ok: false; code: number; message: string; serviceCode: string };

export interface EnqueueManyOptions {
  /** Entries per EnqueueBatch call (at most the node's limits.maxBatchEntries). Default 500. */
  batchEntries?: number;
  /** Bytes of data and metadata per call (at most limits.maxBatchBytes). Default 1MiB. */
  batchBytes?: number;
  /** Calls under way at once. Default 4. */
  concurrency?: number;
}

const asBuffer = (v: Buffer | string | undefined): Buffer =>
  v === undefined ? Buffer.alloc(0) : typeof v === "string" ? Buffer.from(v) : v;

/** The request entry of `e`, with a made-up key when it has none. */
export function toBatchEntry(e: BulkEntry): geospool.v1.BatchEntry.$Properties {
  return {
    queue: e.queue,
    data: asBuffer(e.data),
    metadata: asBuffer(e.metadata),
    idempotencyKey: e.idempotencyKey ?? randomUUID(),
  };
}

/**
 * Cut `entries` into batches of at most `batchEntries` entries and `batchBytes` bytes
 * (an entry larger than that alone is a batch of its own), send up to `concurrency` at
 * once with `send`, and yield every result in the order of `entries`.
 */
export async function* enqueueMany(
  entries: Iterable<BulkEntry> | AsyncIterable<BulkEntry>,
  send: (batch: geospool.v1.BatchEntry.$Properties[]) => Promise<BulkResult[]>,
  options: EnqueueManyOptions = {},
): AsyncGenerator<BulkResult> {
  const maxEntries = options.batchEntries ?? 500;
  const maxBytes = options.batchBytes ?? 1024 * 1024;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const inFlight: Promise<BulkResult[]>[] = [];
  let batch: geospool.v1.BatchEntry.$Properties[] = [];
  let bytes = 0;
  const flush = () => {
    const p = send(batch);
    p.catch(() => undefined); // awaited in order below
    inFlight.push(p);
    batch = [];
    bytes = 0;
  };
  for await (const e of entries) {
    const b = toBatchEntry(e);
    const size = (b.data as Buffer).length + (b.metadata as Buffer).length;
    if (batch.length > 0 && (batch.length >= maxEntries || bytes + size > maxBytes)) flush();
    batch.push(b);
    bytes += size;
    while (inFlight.length >= concurrency) yield* (await inFlight.shift()) as BulkResult[];
  }
  if (batch.length > 0) flush();
  while (inFlight.length > 0) yield* (await inFlight.shift()) as BulkResult[];
}
