import { createHash } from "node:crypto";
import type { EntryInfo } from "../entry-info.js";
import { findInfo, toInfo } from "./entry-lookup.js";
import type { NodeEntryMeta } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode } from "./errors.js";
import type { IdempotencyStore, KeyScope } from "./idempotency-store.js";
import type { ServiceContext } from "./service-context.js";

export interface EnqueueHeader {
  queue: string;
  metadata: Buffer;
  idempotencyKey?: string;
  /** Who enqueues: idempotency keys are scoped to it (and the queue). */
  principal?: string;
  dataSize?: number;
  dataSha256?: string;
}

/** An idempotency claim: ours, or held by an earlier entry (returned as the duplicate). */
export type KeyClaim = { kind: "claimed" } | { kind: "duplicate"; entry: EntryInfo };

const MAX_KEY_LENGTH = 200;
/**
 * A claim this young whose name is neither visible nor reserved may still be on its way
 * (EnqueueBatch claims before the batch writer reserves the name; `writing` sees that in
 * this process only, this covers another process serving the same spool and database): it
 * is in progress, not an enqueue that died. A retry after a crash waits this long at most.
 */
const FRESH_CLAIM_MS = 30_000;
/**
 * How many times `claimKey` reads a claim that changes before it can take it over (each
 * change is another enqueue's claim, completion or give-up) before it answers in progress.
 */
const CLAIM_LOOKS = 5;

/**
 * Enqueue with data verified as it streams, within the upload limits, and idempotency keys
 * scoped to (principal, queue, key): the key's claim (a PostgreSQL commit) runs while the
 * data is written, and the entry becomes visible only once the claim is known to be ours.
 */
export class IdempotentEnqueue {
  /** Enqueues under way. */
  private uploads = 0;
  /**
   * Names whose claim may be committed before their registry file exists (EnqueueBatch
   * claims its keys while the spool reserves and writes the names): such a claim is in
   * progress although the name is not reserved yet (see also FRESH_CLAIM_MS).
   */
  private readonly writing = new Set<string>();

  constructor(
    private readonly ctx: ServiceContext,
    private readonly store: IdempotencyStore | undefined,
  ) {}

  /**
   * Store an entry whose data arrives as `chunks`. Nothing becomes visible unless every
   * byte arrived and matched the announced size and digest. With an idempotency key that
   * the same principal used on the same queue within the window, the first entry is
   * returned (`deduplicated`) and no second is made.
   */
  enqueue(
    header: EnqueueHeader,
    chunks: AsyncIterable<Uint8Array>,
  ): Promise<{ entry: EntryInfo; deduplicated: boolean }> {
    return this.ctx.timed("enqueue", header.queue, async () => {
      this.ctx.checkQueue(header.queue);
      return this.counted(() => this.enqueueCounted(header, chunks));
    });
  }

  /** Run `f` as one of the uploads under way (limits.maxConcurrentUploads; an EnqueueBatch is one). */
  async counted<T>(f: () => Promise<T>): Promise<T> {
    const max = this.ctx.limits.maxConcurrentUploads;
    if (this.uploads >= max) {
      throw new ServiceError(
        ServiceErrorCode.ResourceExhausted,
        `this node takes ${max} uploads at once (limits.maxConcurrentUploads); retry later`,
      );
    }
    this.uploads++;
    try {
      return await f();
    } finally {
      this.uploads--;
    }
  }

  private async enqueueCounted(
    header: EnqueueHeader,
    chunks: AsyncIterable<Uint8Array>,
  ): Promise<{ entry: EntryInfo; deduplicated: boolean }> {
    this.ctx.checkMetadata(header.metadata);
    const maxData = this.ctx.limits.entryDataSize;
    if (header.dataSize !== undefined && header.dataSize > maxData) {
      throw tooMuchData(maxData);
    }
    const key = checkIdempotencyKey(header.idempotencyKey);
    if (header.dataSha256 !== undefined && !/^[0-9a-f]{64}$/.test(header.dataSha256)) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        "data_sha256 must be 64 lowercase hex digits",
      );
    }
    const principal = header.principal ?? "";
    const scope: KeyScope | undefined =
      key === undefined ? undefined : { principal, queue: header.queue, key };
    const name = await this.ctx.spool.reserveName();
    // Why the spool's enqueue was stopped, as values: the spool wraps what is thrown
    // through it, and these say what happened without digging in its error.
    let duplicate: EntryInfo | undefined;
    let refused: ServiceError | undefined;
    const refuse = (e: ServiceError) => {
      refused ??= e;
      return e;
    };
    // The idempotency claim (a PostgreSQL commit) runs while the data streams to disk;
    // the entry becomes visible only once the claim is known to be ours.
    const claim =
      scope === undefined
        ? undefined
        : this.claimKey(scope, name).catch((err: unknown) => {
            throw err instanceof ServiceError ? refuse(err) : err;
          });
    claim?.catch(() => undefined);
    // Give up the claim if we hold it (once). Only a claim we hold is ours to abandon.
    let abandoned: Promise<void> | undefined;
    const abandon = () => {
      abandoned ??= (async () => {
        if (scope === undefined || !claim) return;
        const held = await claim.then(
          (c) => c.kind === "claimed",
          () => false,
        );
        if (held) await this.store?.abandon(scope, name).catch(() => undefined);
      })();
      return abandoned;
    };
    const hash = createHash("sha256");
    let size = 0;
    const expected = header;
    async function* verified(): AsyncGenerator<Uint8Array> {
      try {
        for await (const chunk of chunks) {
          size += chunk.length;
          if (size > maxData) throw tooMuchData(maxData);
          if (expected.dataSize !== undefined && size > expected.dataSize) {
            throw new ServiceError(
              ServiceErrorCode.DataMismatch,
              `data is longer than the announced ${expected.dataSize} bytes`,
            );
          }
          hash.update(chunk);
          yield chunk;
        }
      } catch (err) {
        if (err instanceof ServiceError) refuse(err);
        // The upload failed (cut, idle, malformed, too long): give up the claim before the
        // spool gives up the name, so that no retry reads a claim of a name that is neither
        // reserved nor visible, which it could only call in progress (see claimKey).
        await abandon();
        throw err;
      }
    }
    let entryMeta: NodeEntryMeta | undefined;
    try {
      await this.ctx.spool.enqueueDeferred(
        header.queue,
        verified(),
        async ({ size: written }) => {
          const claimed = claim && (await claim);
          if (claimed?.kind === "duplicate") {
            duplicate = claimed.entry;
            throw new Error("idempotency key names an earlier entry; nothing stored");
          }
          const sha256 = hash.digest("hex");
          if (expected.dataSize !== undefined && written !== expected.dataSize) {
            // The claim goes before the spool gives up the name (see `verified`).
            await abandon();
            throw refuse(
              new ServiceError(
                ServiceErrorCode.DataMismatch,
                `data ended after ${written} of the announced ${expected.dataSize} bytes`,
              ),
            );
          }
          if (expected.dataSha256 !== undefined && sha256 !== expected.dataSha256) {
            await abandon();
            throw refuse(
              new ServiceError(
                ServiceErrorCode.DataMismatch,
                `data sha256 ${sha256} does not match the announced ${expected.dataSha256}`,
              ),
            );
          }
          entryMeta = {
            user: header.metadata,
            sha256,
            size: written,
            enqueuedAt: this.ctx.clock(),
          };
          if (key !== undefined) {
            entryMeta.idempotencyKey = key;
            entryMeta.principal = principal;
          }
          return entryMeta;
        },
        {
          name,
          onVisible: () => this.ctx.publish({ kind: "enqueued", name, queue: header.queue }),
        },
      );
    } catch (err) {
      if (duplicate) return { entry: duplicate, deduplicated: true };
      await abandon();
      // The spool gives back a name it was given only once it made the data file; a
      // failure before that (no space, an I/O error) would leave the reservation behind.
      await this.giveBack(name);
      throw refused ?? err;
    }
    // Marking the key complete is not on the reply's path: if it is lost, a retry still
    // finds the entry by its name.
    if (scope !== undefined) {
      this.store?.complete(scope, name).catch((err) => {
        this.ctx.log.warn({ err, key }, "could not mark an idempotency key complete");
      });
    }
    const meta = entryMeta as NodeEntryMeta;
    return { entry: toInfo(name, header.queue, meta, 0), deduplicated: false };
  }

  /** Give back the name reserved for an enqueue that will not run (best effort: logged). */
  async giveBack(name: string): Promise<void> {
    await this.ctx.spool.unreserveName(name).catch((err) => {
      this.ctx.log.warn({ err, name }, "could not give back a reserved name");
    });
  }

  /**
   * Mark `names` as being written beside their claims until `done` settles (see `writing`).
   */
  writingWhile(names: readonly string[], done: Promise<unknown>): void {
    for (const n of names) this.writing.add(n);
    const clear = () => {
      for (const n of names) this.writing.delete(n);
    };
    done.then(clear, clear);
  }

  /**
   * Claim `scope` for `name`, or find the earlier entry that holds it. Unless it is
   * claimed, `name` is given back (not with `giveBackName: false`: a name being written
   * beside the claim is the writer's to remove).
   */
  async claimKey(scope: KeyScope, name: string, giveBackName = true): Promise<KeyClaim> {
    const store = this.store;
    const giveBack = giveBackName ? (n: string) => this.giveBack(n) : async () => undefined;
    if (!store) {
      await giveBack(name);
      throw new ServiceError(
        ServiceErrorCode.Unavailable,
        "idempotency keys need the node's database",
      );
    }
    for (let look = 1; ; look++) {
      const claim = await store.claim(scope, name).catch(async (err) => {
        await giveBack(name);
        throw new ServiceError(ServiceErrorCode.Unavailable, "idempotency store unavailable", {
          cause: err,
        });
      });
      if (claim.kind === "claimed") return claim;
      const found = await findInfo(this.ctx.spool, claim.name);
      if (found || claim.completed) {
        await giveBack(name);
        const entry = found ?? {
          name: claim.name,
          queue: scope.queue,
          metadata: Buffer.alloc(0),
          attempts: 0,
          dataSize: 0,
          dataSha256: "",
          enqueuedAt: 0,
        };
        return { kind: "duplicate", entry };
      }
      // Not visible and not completed: either in progress, or its enqueue died.
      if (
        this.writing.has(claim.name) ||
        (await this.ctx.spool.isReserved(claim.name)) ||
        (await store.claimedWithin(scope, claim.name, FRESH_CLAIM_MS))
      ) {
        await giveBack(name);
        throw new ServiceError(
          ServiceErrorCode.InProgress,
          `an enqueue with idempotency key ${JSON.stringify(scope.key)} is in progress; retry`,
        );
      }
      if (await store.takeOver(scope, claim.name, name)) return { kind: "claimed" };
      // The claim changed since it was read. Most often its enqueue failed and gave it up:
      // `findInfo` waits while the name is reserved, so a retry that came while a cut
      // upload with the key lingered (until limits.uploadIdleTimeout) reads its claim
      // before it is given up and the rest after. Or it completed, or another enqueue took
      // it over. The key is not lost to this enqueue: look again from the start.
      if (look >= CLAIM_LOOKS) {
        await giveBack(name);
        throw new ServiceError(
          ServiceErrorCode.InProgress,
          `idempotency key ${JSON.stringify(scope.key)} changed hands ${look} times while it was claimed; retry`,
        );
      }
    }
  }
}

/** A client's idempotency key (empty is none), or invalid_argument. */
export function checkIdempotencyKey(key: string | undefined): string | undefined {
  if (!key) return undefined;
  if (key.length > MAX_KEY_LENGTH || key.includes("\0")) {
    throw new ServiceError(
      ServiceErrorCode.InvalidArgument,
      `idempotency key must be 1..${MAX_KEY_LENGTH} characters without NUL`,
    );
  }
  return key;
}

export function tooMuchData(max: number): ServiceError {
  return new ServiceError(
    ServiceErrorCode.ResourceExhausted,
    `data is over the ${max} bytes of limits.entryDataSize; nothing was stored`,
  );
}
