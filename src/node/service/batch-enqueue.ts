import { createHash } from "node:crypto";
import type { EntryInfo } from "../entry-info.js";
import { toInfo } from "./entry-lookup.js";
import type { NodeEntryMeta } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode, toServiceError } from "./errors.js";
import type { IdempotencyStore, KeyScope } from "./idempotency-store.js";
import {
  checkIdempotencyKey,
  type IdempotentEnqueue,
  type KeyClaim,
  tooMuchData,
} from "./idempotent-enqueue.js";
import type { ServiceContext } from "./service-context.js";

/** One small entry of a batch: its whole data in memory. */
export interface BatchEntryInput {
  queue: string;
  metadata: Buffer;
  data: Buffer;
  idempotencyKey?: string;
}

/** What became of one entry of a batch. */
export type BatchOutcome =
  | { entry: EntryInfo; deduplicated: boolean; error?: undefined }
  | { error: ServiceError };

/** An entry that passed its checks, on its way to the spool. */
interface Pending {
  index: number;
  input: BatchEntryInput;
  scope?: KeyScope;
  name?: string;
  claim?: KeyClaim;
}

/**
 * EnqueueBatch: many small entries in one call, written by one spool `enqueueBatch` (each
 * whole or absent under the spool's promises, all made durable together); their names
 * reserved by the spool's batch writer as it writes them, their idempotency keys claimed
 * meanwhile in one PostgreSQL statement (an entry becomes visible only once its claim is
 * ours) and marked complete in one. One entry's failure is its own: the others go on.
 */
export class BatchEnqueue {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly store: IdempotencyStore | undefined,
    private readonly uploads: IdempotentEnqueue,
  ) {}

  /**
   * Enqueue `entries` for `principal`; `authorize(queue)` throws for a queue it may not
   * enqueue into. Resolves with one outcome per entry, in order; rejects (nothing made)
   * only when the batch as a whole is over the limits or the node is too busy.
   */
  async enqueueBatch(
    principal: string,
    entries: readonly BatchEntryInput[],
    authorize: (queue: string) => void = () => undefined,
  ): Promise<BatchOutcome[]> {
    // Counted under the first entry's queue: a batch is one operation.
    return this.ctx.timed("enqueue_batch", entries[0]?.queue ?? "", () =>
      this.uploads.counted(() => this.enqueueAll(principal, entries, authorize)),
    );
  }

  private async enqueueAll(
    principal: string,
    entries: readonly BatchEntryInput[],
    authorize: (queue: string) => void,
  ): Promise<BatchOutcome[]> {
    this.checkBatch(entries);
    const outcomes: (BatchOutcome | undefined)[] = new Array(entries.length);
    // Entries with a key another entry of this batch already has: index → first index.
    const followers = new Map<number, number>();
    const leaders = new Map<string, number>();
    const pending: Pending[] = [];
    entries.forEach((input, index) => {
      try {
        const key = this.checkEntry(input, authorize);
        const p: Pending = { index, input };
        if (key !== undefined) {
          p.scope = { principal, queue: input.queue, key };
          const id = JSON.stringify([input.queue, key]);
          const first = leaders.get(id);
          if (first !== undefined) {
            followers.set(index, first);
            return;
          }
          leaders.set(id, index);
        }
        pending.push(p);
      } catch (err) {
        outcomes[index] = { error: toServiceError(err) };
      }
    });
    // Fresh names, reserved by the spool's batch writer as it writes each entry; the keys
    // are claimed meanwhile (one PostgreSQL statement), and a keyed entry becomes visible
    // only once its claim is known to be ours (`visibleIf`): the claim's commit and the
    // name's reservation are off the reply's path, beside the write.
    const names = this.ctx.spool.newNames(pending.length);
    pending.forEach((p, i) => {
      p.name = names[i];
    });
    const keyed = pending.filter((p) => p.scope !== undefined);
    const claims = this.claimKeys(keyed, outcomes);
    const written = this.writeAll(pending, (p) =>
      claims.then(() => outcomes[p.index] === undefined && p.claim?.kind === "claimed"),
    );
    this.uploads.writingWhile(
      keyed.map((p) => p.name as string),
      written,
    );
    const [writes] = await Promise.all([written, claims]);
    const completed: { scope: KeyScope; name: string }[] = [];
    for (const [i, outcome] of writes.entries()) {
      const p = pending[i] as Pending;
      if (outcomes[p.index] !== undefined) continue; // the claim failed: withdrawn
      if (p.claim?.kind === "duplicate") {
        outcomes[p.index] = { entry: p.claim.entry, deduplicated: true };
        continue;
      }
      outcomes[p.index] = outcome;
      if (p.scope && outcome.error === undefined) {
        completed.push({ scope: p.scope, name: p.name as string });
      }
    }
    // As for Enqueue, marking keys complete is not on the reply's path: a retry still
    // finds each entry by its name.
    this.store?.completeMany(completed).catch((err) => {
      this.ctx.log.warn(
        { err, keys: completed.length },
        "could not mark idempotency keys complete",
      );
    });
    for (const [index, first] of followers) {
      const o = outcomes[first] as BatchOutcome;
      outcomes[index] = o.error ? o : { entry: o.entry, deduplicated: true };
    }
    return outcomes as BatchOutcome[];
  }

  /**
   * Refuse a batch over limits.maxBatchEntries or limits.maxBatchBytes, as a whole. A batch
   * of one entry is held to the entry's own limits only (metadataSize, entryDataSize), as
   * Enqueue is: it is how clients send a small entry, and refusing it would only send them
   * to the stream with the same bytes.
   */
  private checkBatch(entries: readonly BatchEntryInput[]): void {
    const { maxBatchEntries, maxBatchBytes } = this.ctx.limits;
    if (entries.length > maxBatchEntries) {
      throw new ServiceError(
        ServiceErrorCode.ResourceExhausted,
        `a batch of ${entries.length} entries is over the ${maxBatchEntries} of limits.maxBatchEntries; nothing was stored`,
      );
    }
    let bytes = 0;
    for (const e of entries) bytes += e.data.length + e.metadata.length;
    if (bytes > maxBatchBytes && entries.length > 1) {
      throw new ServiceError(
        ServiceErrorCode.ResourceExhausted,
        `a batch of ${bytes} bytes of data and metadata is over the ${maxBatchBytes} of limits.maxBatchBytes; nothing was stored`,
      );
    }
  }

  /** One entry's checks, as Enqueue makes them; returns its idempotency key. */
  private checkEntry(
    input: BatchEntryInput,
    authorize: (queue: string) => void,
  ): string | undefined {
    authorize(input.queue);
    this.ctx.checkQueue(input.queue);
    this.ctx.checkMetadata(input.metadata);
    const maxData = this.ctx.limits.entryDataSize;
    if (input.data.length > maxData) throw tooMuchData(maxData);
    return checkIdempotencyKey(input.idempotencyKey);
  }

  /**
   * Claim the keys of `keyed` (distinct scopes) in one statement; a key held already goes
   * through Enqueue's own claim (a duplicate, one in progress, or an expired claim taken
   * over). An entry whose key is not ours gets its outcome here; its name is left to the
   * spool, which withdraws the entry (see enqueueAll).
   */
  private async claimKeys(keyed: Pending[], outcomes: (BatchOutcome | undefined)[]) {
    if (keyed.length === 0) return;
    const store = this.store;
    let claimed: Set<number>;
    try {
      if (!store) {
        throw new ServiceError(
          ServiceErrorCode.Unavailable,
          "idempotency keys need the node's database",
        );
      }
      claimed = await store
        .claimMany(keyed.map((p) => ({ scope: p.scope as KeyScope, name: p.name as string })))
        .catch((err) => {
          throw new ServiceError(ServiceErrorCode.Unavailable, "idempotency store unavailable", {
            cause: err,
          });
        });
    } catch (err) {
      // Their names are the spool's to remove: the entries are withdrawn (see enqueueAll).
      for (const p of keyed) outcomes[p.index] = { error: toServiceError(err) };
      return;
    }
    await Promise.all(
      keyed.map(async (p, i) => {
        if (claimed.has(i)) {
          p.claim = { kind: "claimed" };
          return;
        }
        try {
          p.claim = await this.uploads.claimKey(p.scope as KeyScope, p.name as string, false);
        } catch (err) {
          outcomes[p.index] = { error: toServiceError(err) };
        }
      }),
    );
  }

  /**
   * Store the entries under their fresh names in one spool batch (made durable together);
   * a keyed entry becomes visible only if `claimed(p)` says yes. An entry that failed has
   * its claim given back if it held one (the spool removed its files).
   */
  private async writeAll(
    toWrite: Pending[],
    claimed: (p: Pending) => Promise<boolean>,
  ): Promise<BatchOutcome[]> {
    if (toWrite.length === 0) return [];
    const metas = toWrite.map(({ input, scope }) => {
      const meta: NodeEntryMeta = {
        user: input.metadata,
        sha256: createHash("sha256").update(input.data).digest("hex"),
        size: input.data.length,
        enqueuedAt: this.ctx.clock(),
      };
      if (scope) {
        meta.idempotencyKey = scope.key;
        meta.principal = scope.principal;
      }
      return meta;
    });
    const results = await this.ctx.spool.enqueueBatch(
      toWrite.map((p, i) => ({
        queue: p.input.queue,
        metadata: metas[i] as NodeEntryMeta,
        data: p.input.data,
        name: p.name as string,
        reserve: true,
        ...(p.scope ? { visibleIf: claimed(p) } : {}),
      })),
      {
        onVisible: (name, i) =>
          this.ctx.publish({ kind: "enqueued", name, queue: (toWrite[i] as Pending).input.queue }),
      },
    );
    return Promise.all(
      results.map(async (r, i): Promise<BatchOutcome> => {
        const p = toWrite[i] as Pending;
        const name = p.name as string;
        if (r.ok) {
          return {
            entry: toInfo(name, p.input.queue, metas[i] as NodeEntryMeta, 0),
            deduplicated: false,
          };
        }
        // A claim may still be on its way when a write fails early: wait for it. An entry
        // visible already keeps its claim (a retry finds it, if it survived).
        if (p.scope && !r.visible && (await claimed(p))) {
          await this.store?.abandon(p.scope, name).catch(() => undefined);
        }
        return { error: toServiceError(r.error) };
      }),
    );
  }
}
