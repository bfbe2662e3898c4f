import { jsonCodec, Spool, SpoolError, SpoolErrorCode } from "../spool/index.js";
import type { RejectedUpload } from "./cache-writer.js";

/** The one queue of a rejection log's spool. */
export const REJECTED_QUEUE = "rejected";

/** A kept rejection: its entry's metadata (the entry's data is the narinfo as uploaded). */
export interface KeptRejection {
  readonly v: 1;
  readonly hashPart: string;
  readonly storePath?: string;
  readonly reason: RejectedUpload["reason"];
  readonly message: string;
  /** The uploader (the token's name). */
  readonly by: string;
  /** ms since the epoch. */
  readonly at: number;
}

export interface RejectionBounds {
  /** The most rejections kept; the oldest go first. */
  readonly maxEntries: number;
  /** Rejections older than this are dropped (ms). */
  readonly maxAgeMs: number;
}

type RejectionSpool = Spool<KeptRejection, typeof REJECTED_QUEUE>;

/**
 * Rejected uploads, kept on the node that refused them with their reason: one entry per
 * rejection in a small spool of their own (node-local: never replicated, never served),
 * so each survives a crash once `keep` returns. Bounded by count and age; `keep` drops
 * what falls outside the bounds, oldest first (names sort by time).
 */
export class RejectionLog {
  private pruning: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly spool: RejectionSpool,
    private readonly bounds: RejectionBounds,
    private readonly clock: () => number,
  ) {}

  /** Open the log in `dir`, made when missing. */
  static async open(
    dir: string,
    bounds: RejectionBounds,
    clock: () => number = Date.now,
  ): Promise<RejectionLog> {
    const spool = await Spool.load(dir, spoolable(), { createIfMissing: true });
    return new RejectionLog(spool, bounds, clock);
  }

  /** The rejections kept in `dir`, oldest first; none when there is no log there. */
  static async read(dir: string): Promise<Array<KeptRejection & { entry: string }>> {
    let spool: RejectionSpool;
    try {
      spool = await Spool.load(dir, spoolable());
    } catch (err) {
      if (err instanceof SpoolError && err.code === SpoolErrorCode.MissingDirectory) return [];
      throw err;
    }
    return readAll(spool);
  }

  /** The uploaded narinfo of a kept rejection (empty when the body was not kept). */
  static async narinfo(dir: string, entry: string): Promise<Buffer> {
    const spool = Spool.loadUnsafe(dir, spoolable());
    return spool.entry(REJECTED_QUEUE, entry).dataFile().read();
  }

  async keep(rejection: RejectedUpload): Promise<void> {
    const kept: KeptRejection = {
      v: 1,
      hashPart: rejection.hashPart,
      ...(rejection.storePath === undefined ? {} : { storePath: rejection.storePath }),
      reason: rejection.reason,
      message: rejection.message,
      by: rejection.by,
      at: rejection.at,
    };
    await this.spool.enqueue(REJECTED_QUEUE, kept, rejection.narinfo ?? Buffer.alloc(0));
    // One pruning at a time: a burst of rejections lists the queue once each, in turn.
    const pruned = this.pruning.then(() => this.prune());
    this.pruning = pruned.catch(() => undefined);
    await pruned;
  }

  async list(): Promise<Array<KeptRejection & { entry: string }>> {
    return readAll(this.spool);
  }

  /** Drop rejections past the count bound, then those older than the age bound. */
  async prune(): Promise<number> {
    const entries = await this.spool.list(REJECTED_QUEUE);
    const overflow = Math.max(0, entries.length - this.bounds.maxEntries);
    let dropped = 0;
    for (const entry of entries.slice(0, overflow)) dropped += await this.remove(entry);
    const oldest = this.clock() - this.bounds.maxAgeMs;
    for (const entry of entries.slice(overflow)) {
      const kept = await entry.direct.contents().catch(notFound);
      if (kept !== undefined && kept.at >= oldest) break;
      if (kept !== undefined) dropped += await this.remove(entry);
    }
    return dropped;
  }

  private async remove(entry: Awaited<ReturnType<RejectionSpool["list"]>>[number]) {
    const r = await this.spool.withEntryIfPresent(entry, async () => [{ kind: "remove" }, 1]);
    return r.kind === "ok" ? r.value : 0;
  }
}

function spoolable() {
  return { metadata: jsonCodec<KeptRejection>(), queues: [REJECTED_QUEUE] as const };
}

async function readAll(spool: RejectionSpool): Promise<Array<KeptRejection & { entry: string }>> {
  const out: Array<KeptRejection & { entry: string }> = [];
  for (const entry of await spool.list(REJECTED_QUEUE)) {
    const kept = await entry.direct.contents().catch(notFound);
    if (kept !== undefined) out.push({ ...kept, entry: entry.name });
  }
  return out;
}

function notFound(err: unknown): undefined {
  if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) return undefined;
  throw err;
}
