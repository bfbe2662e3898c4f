import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import type { Logger } from "pino";
import {
  type CheckedOutEntry,
  leaseTokensEqual,
  QueueReader,
  type Spool,
  SpoolError,
  SpoolErrorCode,
  validateName,
} from "../../spool/index.js";
import type { EntryInfo } from "../entry-info.js";
import type { NodeEntryMeta } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode, toServiceError } from "./errors.js";
import type { IdempotencyStore, KeyScope } from "./idempotency-store.js";
import { unlinkRegistryIfUnused } from "./name-reservation.js";
import { type Transition, TransitionBus } from "./transitions.js";

export type NodeSpool = Spool<NodeEntryMeta, string>;


export interface EnqueueHeader {
  queue: string;
  metadata: Buffer;
  idempotencyKey?: string;
  /** Who enqueues: idempotency keys are scoped to it (and the queue). */
  principal?: string;
  dataSize?: number;
  dataSha256?: string;
}

export type CompleteAction =
  | { kind: "save"; queue: string; metadata?: Buffer }
  | { kind: "remove" };

/** An idempotency claim: ours, or held by an earlier entry (returned as the duplicate). */
type KeyClaim = { kind: "claimed" } | { kind: "duplicate"; entry: EntryInfo };

/** What one call may ask of the service (config `limits.*`). */
export interface ServiceLimits {
  /** Largest entry data (bytes). */
  entryDataSize: number;
  /** Largest client metadata (bytes). */
  metadataSize: number;
  /** Enqueues under way at once. */
  maxConcurrentUploads: number;
  /** Most bytes of entries in one List page (a page holds at least one). */
  listPageBytes: number;
}

export const DEFAULT_LIMITS: ServiceLimits = {
  entryDataSize: 8 * 1024 ** 3,
  metadataSize: 256 * 1024,
  maxConcurrentUploads: 64,
  listPageBytes: 512 * 1024,
};

export interface SpoolServiceOptions {
  spool: NodeSpool;
  nodeId: string;
  logger: Logger;
  idempotency?: IdempotencyStore;
  /** Longest a Dequeue may wait (ms). */
  maxDequeueWaitMs?: number;
  limits?: Partial<ServiceLimits>;
  clock?: () => number;
  /** Called after each operation, for metrics. */
  onOperation?: (op: string, queue: string, outcome: string, seconds: number) => void;
}

const MAX_KEY_LENGTH = 200;
const MAX_REMEMBERED_CHECKOUTS = 100_000;
/** How long a finished Complete/Release is remembered for retries of it. */
const FINISH_MEMORY_MS = 5 * 60_000;
const READ_CHUNK = 64 * 1024;

/**
 * The operations a node offers its clients (over gRPC), on its local spool. Transport
 * independent: inputs are plain values, failures are ServiceErrors, and "nothing there"
 * is a value.
 */
export class SpoolService {
  readonly bus = new TransitionBus();
  private readonly spool: NodeSpool;
  private readonly readers = new Map<string, QueueReader<NodeEntryMeta, string>>();
  private readonly log: Logger;
  private readonly maxWaitMs: number;
  private readonly clock: () => number;
  private readonly stopping = new AbortController();
  private readonly limits: ServiceLimits;
  /** Enqueues under way. */
  private uploads = 0;
  /** Checkouts handed out by this process, by queue/name: Complete need not re-read them. */
  private readonly finished = new Map<string, { at: number; result: Promise<unknown> }>();
  private readonly held = new Map<
    string,
    { co: CheckedOutEntry<NodeEntryMeta, string>; token: string }
  >();

  constructor(private readonly opts: SpoolServiceOptions) {
    this.spool = opts.spool;
    this.log = opts.logger;
    this.maxWaitMs = opts.maxDequeueWaitMs ?? 60_000;
    this.clock = opts.clock ?? Date.now;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
  }

  get queues(): readonly string[] {
    return this.spool.queues;
  }

  /** Fail with invalid_argument unless `queue` is one of the spool's queues. */
  checkQueue(queue: string): void {
    if (!this.spool.queues.includes(queue)) {
      validateName("queue", queue);
      throw new ServiceError(ServiceErrorCode.NotFound, `no queue ${JSON.stringify(queue)}`);
    }
  }

  private publish(t: Omit<Transition, "at">): void {
    this.bus.publish({ ...t, at: this.clock() });
  }

  private async timed<T>(op: string, queue: string, f: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    let outcome = "ok";
    try {
      return await f();
    } catch (err) {
      const e = toServiceError(err);
      outcome = e.code;
      throw e;
    } finally {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.opts.onOperation?.(op, queue, outcome, seconds);
    }
  }

  // ---- Enqueue -------------------------------------------------------------------------

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
    return this.timed("enqueue", header.queue, async () => {
      this.checkQueue(header.queue);
      if (this.uploads >= this.limits.maxConcurrentUploads) {
        throw new ServiceError(
          ServiceErrorCode.ResourceExhausted,
          `this node takes ${this.limits.maxConcurrentUploads} uploads at once (limits.maxConcurrentUploads); retry later`,
        );
      }
      this.uploads++;
      try {
        return await this.enqueueCounted(header, chunks);
      } finally {
        this.uploads--;
      }
    });
  }

  private async enqueueCounted(
    header: EnqueueHeader,
    chunks: AsyncIterable<Uint8Array>,
  ): Promise<{ entry: EntryInfo; deduplicated: boolean }> {
    this.checkMetadata(header.metadata);
    const maxData = this.limits.entryDataSize;
    if (header.dataSize !== undefined && header.dataSize > maxData) {
      throw tooMuchData(maxData);
    }
    const key = header.idempotencyKey || undefined;
    if (key !== undefined && (key.length > MAX_KEY_LENGTH || key.includes("\0"))) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        `idempotency key must be 1..${MAX_KEY_LENGTH} characters without NUL`,
      );
    }
    if (header.dataSha256 !== undefined && !/^[0-9a-f]{64}$/.test(header.dataSha256)) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        "data_sha256 must be 64 lowercase hex digits",
      );
    }
    const principal = header.principal ?? "";
    const scope: KeyScope | undefined =
      key === undefined ? undefined : { principal, queue: header.queue, key };
    const name = await this.spool.reserveName();
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
        throw err;
      }
    }
    let entryMeta: NodeEntryMeta | undefined;
    try {
      await this.spool.enqueueDeferred(
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
            throw refuse(
              new ServiceError(
                ServiceErrorCode.DataMismatch,
                `data ended after ${written} of the announced ${expected.dataSize} bytes`,
              ),
            );
          }
          if (expected.dataSha256 !== undefined && sha256 !== expected.dataSha256) {
            throw refuse(
              new ServiceError(
                ServiceErrorCode.DataMismatch,
                `data sha256 ${sha256} does not match the announced ${expected.dataSha256}`,
              ),
            );
          }
          entryMeta = { user: header.metadata, sha256, size: written, enqueuedAt: this.clock() };
          if (key !== undefined) {
            entryMeta.idempotencyKey = key;
            entryMeta.principal = principal;
          }
          return entryMeta;
        },
        {
          name,
          onVisible: () => this.publish({ kind: "enqueued", name, queue: header.queue }),
        },
      );
    } catch (err) {
      if (duplicate) return { entry: duplicate, deduplicated: true };
      if (scope !== undefined && claim) {
        // Only a claim we hold is ours to abandon.
        const held = await claim.then(
          (c) => c.kind === "claimed",
          () => false,
        );
        if (held) await this.opts.idempotency?.abandon(scope, name).catch(() => undefined);
      }
      throw refused ?? err;
    }
    // Marking the key complete is not on the reply's path: if it is lost, a retry still
    // finds the entry by its name.
    if (scope !== undefined) {
      this.opts.idempotency?.complete(scope, name).catch((err) => {
        this.log.warn({ err, key }, "could not mark an idempotency key complete");
      });
    }
    const meta = entryMeta as NodeEntryMeta;
    return { entry: toInfo(name, header.queue, meta, 0), deduplicated: false };
  }

  /** Refuse client metadata over limits.metadataSize. */
  private checkMetadata(metadata: Buffer): void {
    if (metadata.length > this.limits.metadataSize) {
      throw new ServiceError(
        ServiceErrorCode.ResourceExhausted,
        `metadata of ${metadata.length} bytes is over the ${this.limits.metadataSize} bytes of limits.metadataSize`,
      );
    }
  }

  /** Claim `scope` for `name`, or find the earlier entry that holds it. */
  private async claimKey(scope: KeyScope, name: string): Promise<KeyClaim> {
    const store = this.opts.idempotency;
    if (!store) {
      await unlinkRegistryIfUnused(this.spool, name);
      throw new ServiceError(
        ServiceErrorCode.Unavailable,
        "idempotency keys need the node's database",
      );
    }
    const claim = await store.claim(scope, name).catch(async (err) => {
      await unlinkRegistryIfUnused(this.spool, name);
      throw new ServiceError(ServiceErrorCode.Unavailable, "idempotency store unavailable", {
        cause: err,
      });
    });
    if (claim.kind === "claimed") return claim;
    const found = await this.findInfo(claim.name);
    if (found || claim.completed) {
      await unlinkRegistryIfUnused(this.spool, name);
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
    if (await this.spool.core.throttle.run(() => registryExists(this.spool, claim.name))) {
      await unlinkRegistryIfUnused(this.spool, name);
      throw new ServiceError(
        ServiceErrorCode.InProgress,
        `an enqueue with idempotency key ${JSON.stringify(scope.key)} is in progress; retry`,
      );
    }
    if (await store.takeOver(scope, claim.name, name)) return { kind: "claimed" };
    await unlinkRegistryIfUnused(this.spool, name);
    throw new ServiceError(ServiceErrorCode.InProgress, "idempotency key changed hands; retry");
  }

  // ---- Dequeue -------------------------------------------------------------------------

  private reader(queue: string): QueueReader<NodeEntryMeta, string> {
    let r = this.readers.get(queue);
    if (!r) {
      // Leases are reaped by the node's reaper, not by each waiting call.
      r = new QueueReader(this.spool, queue, { reapEveryMs: 0 });
      this.readers.set(queue, r);
    }
    return r;
  }

  /** Check out the next entry, waiting up to `waitMs` for one; undefined when none came. */
  dequeue(req: {
    queue: string;
    leaseMs?: number;
    waitMs?: number;
    signal?: AbortSignal;
  }): Promise<{ entry: EntryInfo; leaseToken: string } | undefined> {
    return this.timed("dequeue", req.queue, async () => {
      this.checkQueue(req.queue);
      if (req.leaseMs !== undefined && !(req.leaseMs > 0)) {
        throw new ServiceError(
          ServiceErrorCode.InvalidArgument,
          `lease must be a positive duration (absent for the default), got ${req.leaseMs} ms`,
        );
      }
      if (req.waitMs !== undefined && !(req.waitMs >= 0)) {
        throw new ServiceError(
          ServiceErrorCode.InvalidArgument,
          `wait must not be negative (0 or absent: do not wait), got ${req.waitMs} ms`,
        );
      }
      const waitMs = Math.min(req.waitMs ?? 0, this.maxWaitMs);
      const leaseMs = req.leaseMs;
      const options = leaseMs === undefined ? {} : { leaseMs };
      const reader = this.reader(req.queue);
      for (;;) {
        let co: CheckedOutEntry<NodeEntryMeta, string> | undefined;
        try {
          if (waitMs === 0) {
            const r = await reader.dequeueAvailable(options);
            co = r.kind === "checked_out" ? r.entry : undefined;
          } else {
            const wait = this.waitSignal(waitMs, req.signal);
            const r = await reader.dequeue(wait.signal, options).finally(wait.done);
            co = r.kind === "checked_out" ? r.entry : undefined;
          }
        } catch (err) {
          // Undecodable metadata: the entry stays checked out until its lease ends and is
          // dead-lettered after maxAttempts. Log it and move on to the next entry.
          if (err instanceof SpoolError && err.code === SpoolErrorCode.MetadataDecode) {
            this.log.error({ err, queue: req.queue }, "skipping entry with undecodable metadata");
            continue;
          }
          throw err;
        }
        if (!co) return undefined;
        this.publish({ kind: "checked_out", name: co.name, queue: req.queue });
        return {
          entry: toInfo(co.name, co.queue, co.contents, co.attempts, co.leaseUntil),
          leaseToken: this.remember(co),
        };
      }
    });
  }

  /** Keep a checkout handed out by this process; returns its lease token. */
  private remember(co: CheckedOutEntry<NodeEntryMeta, string>): string {
    const token = leaseToken(co);
    if (this.held.size >= MAX_REMEMBERED_CHECKOUTS) {
      // Forget the oldest; a forgotten checkout is found on disk when needed.
      const oldest = this.held.keys().next().value;
      if (oldest !== undefined) this.held.delete(oldest);
    }
    this.held.set(`${co.queue}/${co.name}`, { co, token });
    return token;
  }

  /**
   * A signal that aborts after `ms`, when `outer` aborts or when the node stops; `done`
   * removes its timer and listeners (nothing stays attached to the long-lived signals).
   */
  private waitSignal(ms: number, outer?: AbortSignal): { signal: AbortSignal; done: () => void } {
    const ac = new AbortController();
    const abort = () => ac.abort();
    const timer = setTimeout(abort, ms);
    const sources = [this.stopping.signal, ...(outer ? [outer] : [])];
    for (const s of sources) {
      if (s.aborted) ac.abort();
      else s.addEventListener("abort", abort, { once: true });
    }
    return {
      signal: ac.signal,
      done: () => {
        clearTimeout(timer);
        for (const s of sources) s.removeEventListener("abort", abort);
      },
    };
  }

  /** Find a checkout by queue, name and lease token; lease_lost if it is not ours. */
  private async holder(queue: string, name: string, token: string) {
    this.checkQueue(queue);
    validateName("entry", name);
    const mine = this.held.get(`${queue}/${name}`);
    // The lease itself is checked again (deadline, inode) by every spool operation.
    if (mine && leaseTokensEqual(mine.token, token)) return mine.co;
    const co = await this.spool.checkedOutUnsafe(queue, name);
    if (!co) {
      const where = await this.spool.locate(name);
      if (!where) throw new ServiceError(ServiceErrorCode.NotFound, `no entry ${name}`);
      throw new ServiceError(
        ServiceErrorCode.LeaseLost,
        `entry ${name} is not checked out of ${queue}`,
      );
    }
    if (!leaseTokensEqual(co.leaseToken, token)) {
      throw new ServiceError(
        ServiceErrorCode.LeaseLost,
        `lease token does not match entry ${name}'s checkout`,
      );
    }
    return co;
  }

  complete(req: {
    queue: string;
    name: string;
    leaseToken: string;
    action: CompleteAction;
  }): Promise<EntryInfo | undefined> {
    // Keyed by token, action and destination: a retry of this very request, nothing else.
    const to = req.action.kind === "save" ? `save:${req.action.queue}` : "remove";
    const key = `complete/${to}/${req.queue}/${req.name}/${req.leaseToken}`;
    return this.once(key, () =>
      this.timed("complete", req.queue, async () => {
        if (req.action.kind === "save") {
          this.checkQueue(req.action.queue);
          if (req.action.metadata !== undefined) this.checkMetadata(req.action.metadata);
        }
        const co = await this.holder(req.queue, req.name, req.leaseToken);
        if (req.action.kind === "remove") {
          const r = await co.remove();
          this.held.delete(`${req.queue}/${req.name}`);
          if (r.kind === "lease_lost") throw leaseLost(req.name);
          this.publish({ kind: "removed", name: req.name, queue: req.queue });
          return undefined;
        }
        const { metadata, queue: to } = req.action;
        if (metadata !== undefined) co.update((m) => ({ ...m, user: metadata }));
        const r = await co.save(to);
        this.held.delete(`${req.queue}/${req.name}`);
        if (r.kind === "lease_lost") throw leaseLost(req.name);
        this.publish({ kind: "saved", name: req.name, queue: to, fromQueue: req.queue });
        return toInfo(req.name, to, co.contents, co.attempts);
      }),
    );
  }

  /**
   * Run a finishing operation at most once per key: a retry that arrives while it runs, or
   * shortly after it succeeded (its reply lost), gets the same answer instead of a
   * "lease lost" for a lease its own first attempt used up.
   */
  private once<T>(key: string, f: () => Promise<T>): Promise<T> {
    const now = this.clock();
    const known = this.finished.get(key);
    if (known && now - known.at < FINISH_MEMORY_MS) return known.result as Promise<T>;
    const result = f();
    this.finished.set(key, { at: now, result });
    result.catch(() => this.finished.delete(key));
    if (this.finished.size > MAX_REMEMBERED_CHECKOUTS) {
      for (const [k, v] of this.finished) {
        if (now - v.at < FINISH_MEMORY_MS && this.finished.size <= MAX_REMEMBERED_CHECKOUTS) break;
        this.finished.delete(k);
      }
    }
    return result;
  }

  /** Return a checkout to its queue untouched (the client that asked for it is gone). */
  async putBack(queue: string, name: string, leaseToken: string): Promise<void> {
    const co = await this.holder(queue, name, leaseToken);
    await co.save(queue);
    this.held.delete(`${queue}/${name}`);
  }

  release(req: {
    queue: string;
    name: string;
    leaseToken: string;
  }): Promise<{ queue: string; attempts: number }> {
    const key = `release/${req.queue}/${req.name}/${req.leaseToken}`;
    return this.once(key, () =>
      this.timed("release", req.queue, async () => {
        const co = await this.holder(req.queue, req.name, req.leaseToken);
        const r = await co.release();
        this.held.delete(`${req.queue}/${req.name}`);
        if (r.kind === "lease_lost" || r.to === undefined) throw leaseLost(req.name);
        this.publish({ kind: "released", name: req.name, queue: r.to, fromQueue: req.queue });
        return { queue: r.to, attempts: co.attempts + 1 };
      }),
    );
  }

  extendLease(req: {
    queue: string;
    name: string;
    leaseToken: string;
    leaseMs: number;
  }): Promise<number> {
    return this.timed("extend_lease", req.queue, async () => {
      if (!(req.leaseMs > 0)) {
        throw new ServiceError(
          ServiceErrorCode.InvalidArgument,
          "lease must be a positive duration",
        );
      }
      const co = await this.holder(req.queue, req.name, req.leaseToken);
      const r = await co.extendLease(req.leaseMs);
      if (r.kind === "lease_lost") throw leaseLost(req.name);
      return co.leaseUntil;
    });
  }

  // ---- Reading -------------------------------------------------------------------------

  /** A page of a queue (or of its checkouts), in name order, after `pageToken`. */
  list(req: {
    queue: string;
    checkedOut?: boolean;
    pageSize?: number;
    pageToken?: string;
  }): Promise<{
    entries: EntryInfo[];
    nextPageToken: string;
  }> {
    return this.timed("list", req.queue, async () => {
      this.checkQueue(req.queue);
      const size = Math.min(Math.max(req.pageSize || 100, 1), 1000);
      let after = "";
      if (req.pageToken) {
        after = Buffer.from(req.pageToken, "base64url").toString("utf8");
        validateName("entry", after);
      }
      const names = req.checkedOut
        ? await this.spool.core.listCheckedOut(req.queue)
        : await this.spool.core.list(req.queue);
      const entries: EntryInfo[] = [];
      let last = "";
      let more = false;
      let bytes = 0;
      for (const name of names) {
        if (name <= after) continue;
        if (entries.length === size) {
          more = true;
          break;
        }
        const info = await this.readInfo(req.queue, name, req.checkedOut ?? false);
        if (info) {
          // Bounded by bytes too (limits.listPageBytes), so a page fits in one message.
          const b = pageBytes(info);
          if (entries.length > 0 && bytes + b > this.limits.listPageBytes) {
            more = true;
            break;
          }
          bytes += b;
          entries.push(info);
        }
        last = name;
      }
      return { entries, nextPageToken: more ? Buffer.from(last).toString("base64url") : "" };
    });
  }

  private async readInfo(
    queue: string,
    name: string,
    checkedOut: boolean,
  ): Promise<EntryInfo | undefined> {
    try {
      if (checkedOut) {
        const co = await this.spool.checkedOutUnsafe(queue, name);
        return co && toInfo(name, queue, co.contents, co.attempts, co.leaseUntil);
      }
      const { metadata, attempts } = await this.spool.entry(queue, name).direct.read();
      return toInfo(name, queue, metadata, attempts);
    } catch (err) {
      if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) return undefined;
      throw err;
    }
  }

  private async findInfo(name: string): Promise<EntryInfo | undefined> {
    const where = await this.spool.locate(name);
    if (!where) return undefined;
    return this.readInfo(where.queue, name, where.state === "checked_out");
  }

  /**
   * Where `name` is and what it holds, looking only in `queues` (the queues the caller may
   * read; default all). An entry elsewhere, an absent entry and an unknown `queue` all
   * answer the same not_found, so a caller learns nothing about queues it may not read.
   */
  stat(req: {
    name: string;
    queue?: string;
    queues?: readonly string[];
  }): Promise<{ entry: EntryInfo; state: "queued" | "checked_out" }> {
    return this.timed("stat", req.queue ?? "", async () => {
      validateName("entry", req.name);
      const found = await this.visibleEntry(req.name, req.queues, req.queue);
      if (!found) throw noEntry(req.name);
      return found;
    });
  }

  private async visibleEntry(
    name: string,
    queues: readonly string[] | undefined,
    first?: string,
  ): Promise<{ entry: EntryInfo; state: "queued" | "checked_out" } | undefined> {
    const visible = queues
      ? this.spool.queues.filter((q) => queues.includes(q))
      : this.spool.queues;
    if (first && !visible.includes(first)) return undefined;
    const order = first ? [first, ...visible.filter((q) => q !== first)] : visible;
    const where = await this.spool.locate(name, order);
    const info = where && (await this.readInfo(where.queue, name, where.state === "checked_out"));
    return where && info ? { entry: info, state: where.state } : undefined;
  }

  /**
   * Stream an entry's data from `offset` (at most `limit` bytes), if it is in one of
   * `queues` (default all; not_found otherwise, as for `stat`). When the whole data is
   * read, the last chunk carries its sha256.
   */
  async *readData(req: {
    name: string;
    offset?: number;
    limit?: number;
    queues?: readonly string[];
  }): AsyncGenerator<{
    offset: number;
    chunk: Buffer;
    sha256?: string;
  }> {
    validateName("entry", req.name);
    const offset = req.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        "offset must be a non-negative integer",
      );
    }
    if (!(await this.visibleEntry(req.name, req.queues))) throw noEntry(req.name);
    const file = this.spool.dataFile(req.name);
    let size: number;
    try {
      size = (await file.stat()).size;
    } catch {
      throw noEntry(req.name);
    }
    if (offset > size) {
      throw new ServiceError(
        ServiceErrorCode.OutOfRange,
        `offset ${offset} is past the end (${size} bytes)`,
      );
    }
    const end =
      req.limit !== undefined && req.limit > 0 ? Math.min(size, offset + req.limit) : size;
    const whole = offset === 0 && end === size;
    const hash = whole ? createHash("sha256") : undefined;
    if (end === offset) {
      yield { offset, chunk: Buffer.alloc(0), ...(hash ? { sha256: hash.digest("hex") } : {}) };
      return;
    }
    const stream = file.createReadStream({
      start: offset,
      end: end - 1,
      highWaterMark: READ_CHUNK,
    });
    let pos = offset;
    let pending: Buffer | undefined;
    try {
      for await (const c of stream) {
        const chunk = c as Buffer;
        hash?.update(chunk);
        if (pending) yield { offset: pos - pending.length, chunk: pending };
        pending = chunk;
        pos += chunk.length;
      }
    } finally {
      stream.destroy();
    }
    if (pending) {
      yield {
        offset: pos - pending.length,
        chunk: pending,
        ...(hash ? { sha256: hash.digest("hex") } : {}),
      };
    }
  }

  watch(queues: readonly string[], signal: AbortSignal): AsyncGenerator<Transition> {
    for (const q of queues) this.checkQueue(q);
    return this.bus.watch(queues, AbortSignal.any([signal, this.stopping.signal]));
  }

  /** Call `listener` with every transition this service makes; returns the unsubscribe. */
  onTransition(listener: (t: Transition) => void): () => void {
    return this.bus.subscribe(listener);
  }

  async queueDepths(): Promise<Array<{ queue: string; queued: number; checkedOut: number }>> {
    const out = [];
    for (const queue of this.spool.queues) {
      out.push({
        queue,
        queued: (await this.spool.core.list(queue)).length,
        checkedOut: (await this.spool.core.listCheckedOut(queue)).length,
      });
    }
    return out;
  }

  /** Announce a lease the reaper took back (for Watch). */
  leaseExpired(name: string, fromQueue: string, to: string): void {
    this.held.delete(`${fromQueue}/${name}`);
    this.publish({ kind: "lease_expired", name, queue: to, fromQueue });
  }

  /** End waiting dequeues (they return nothing) and watches, so a drain can finish. */
  beginShutdown(): void {
    this.stopping.abort();
  }

  async close(): Promise<void> {
    this.beginShutdown();
    for (const r of this.readers.values()) await r.close();
    this.readers.clear();
  }
}

function toInfo(
  name: string,
  queue: string,
  m: NodeEntryMeta,
  attempts: number,
  leaseUntil?: number,
): EntryInfo {
  const info: EntryInfo = {
    name,
    queue,
    metadata: m.user,
    attempts,
    dataSize: m.size,
    dataSha256: m.sha256,
    enqueuedAt: m.enqueuedAt,
  };
  if (leaseUntil !== undefined) info.leaseUntil = leaseUntil;
  return info;
}

function tooMuchData(max: number): ServiceError {
  return new ServiceError(
    ServiceErrorCode.ResourceExhausted,
    `data is over the ${max} bytes of limits.entryDataSize; nothing was stored`,
  );
}

/** What an entry adds to a List page: its variable fields and room for the fixed ones. */
function pageBytes(e: EntryInfo): number {
  return e.metadata.length + e.name.length + e.queue.length + e.dataSha256.length + 64;
}

function noEntry(name: string): ServiceError {
  return new ServiceError(ServiceErrorCode.NotFound, `no entry ${name}`);
}

function leaseLost(name: string): ServiceError {
  return new ServiceError(ServiceErrorCode.LeaseLost, `lease on entry ${name} is gone`);
}

/** The checkout's random lease token, kept by the spool (empty matches nothing). */
function leaseToken(co: CheckedOutEntry<NodeEntryMeta, string>): string {
  return co.leaseToken ?? "";
}

async function registryExists(spool: NodeSpool, name: string): Promise<boolean> {
  return stat(spool.core.layout.registryFile(name)).then(
    () => true,
    () => false,
  );
}
