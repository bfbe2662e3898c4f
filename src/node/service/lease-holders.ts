import { createHash } from "node:crypto";
import {
  type CheckedOutEntry,
  Expert,
  leaseTokensEqual,
  MAX_LEASE_MS,
  QueueReader,
  SpoolError,
  SpoolErrorCode,
  validateName,
} from "../../spool/index.js";
import type { EntryInfo } from "../entry-info.js";
import { toInfo } from "./entry-lookup.js";
import type { NodeEntryMeta } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode } from "./errors.js";
import type { ServiceContext } from "./service-context.js";

export type CompleteAction =
  | { kind: "save"; queue: string; metadata?: Buffer }
  | { kind: "remove" };

/** A save's new metadata as part of its retry key: its digest, or nothing if it keeps the old. */
function metadataKey(metadata: Buffer | undefined): string {
  return metadata === undefined
    ? ""
    : `/${createHash("sha256").update(metadata).digest("base64url")}`;
}

const MAX_REMEMBERED_CHECKOUTS = 100_000;
/**
 * The most data a Dequeue returns inline (`inlineDataMax` above it counts as this, or as a
 * node's lower `maxInlineDataBytes`). Read on the spool's one checkout thread, so kept small.
 */
export const MAX_INLINE_DATA = 256 * 1024;

/**
 * The most inline data whose reply fits in `maxMessageBytes` with room for two entries of
 * `metadataSize` bytes of metadata each (a Complete's saved entry and its next checkout)
 * and their other fields; 0 (no data inline) when none fits.
 */
export function inlineDataFitting(maxMessageBytes: number, metadataSize: number): number {
  const ENTRY_FIELDS = 2048;
  return Math.max(
    0,
    Math.min(MAX_INLINE_DATA, maxMessageBytes - 2 * (metadataSize + ENTRY_FIELDS)),
  );
}
/** How long a finished Complete/Release is remembered for retries of it. */
const FINISH_MEMORY_MS = 5 * 60_000;

/**
 * Checkouts and their holders: Dequeue hands out a checkout with its lease token; Complete,
 * Release and ExtendLease act on it only with that token. Checkouts handed out by this
 * process are kept (Complete need not re-read them); a finished Complete or Release is
 * remembered for a while, so a retry of it gets the same answer.
 */
export class LeaseHolders {
  private readonly readers = new Map<string, QueueReader<NodeEntryMeta, string>>();
  private readonly finished = new Map<string, { at: number; result: Promise<unknown> }>();
  private readonly held = new Map<string, CheckedOutEntry<NodeEntryMeta, string>>();
  /** The latest finish or extension asked for, per checkout (see `inTurn`). */
  private readonly turns = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: ServiceContext,
    /** Longest a Dequeue may wait (ms). */
    private readonly maxWaitMs: number,
    /** The most data a Dequeue returns inline (at most MAX_INLINE_DATA). */
    private readonly maxInlineData: number,
  ) {}

  private reader(queue: string): QueueReader<NodeEntryMeta, string> {
    let r = this.readers.get(queue);
    if (!r) {
      // Leases are reaped by the node's reaper, not by each waiting call.
      r = new QueueReader(this.ctx.spool, queue, { reapEveryMs: 0 });
      this.readers.set(queue, r);
    }
    return r;
  }

  /** Refuse a Dequeue of a queue that does not exist, or with a bad lease or wait. */
  checkDequeue(req: { queue: string; leaseMs?: number; waitMs?: number }): void {
    this.ctx.checkQueue(req.queue);
    // Checked here, not only when an entry is checked out, so a lease the spool cannot
    // take is refused whether or not the queue holds anything (and before a Complete's
    // finish, for its then_dequeue).
    if (req.leaseMs !== undefined && !(req.leaseMs > 0 && req.leaseMs <= MAX_LEASE_MS)) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        `lease must be a positive duration of at most a year (absent for the default), got ${req.leaseMs} ms`,
      );
    }
    if (req.waitMs !== undefined && !(req.waitMs >= 0)) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        `wait must not be negative (0 or absent: do not wait), got ${req.waitMs} ms`,
      );
    }
  }

  /**
   * Check out the next entry, waiting up to `waitMs` for one; undefined when none came.
   * With `inlineDataMax`, the entry's data comes too when it is at most that many bytes
   * (at most `maxInlineData`), read in the checkout's own step.
   */
  dequeue(req: {
    queue: string;
    leaseMs?: number;
    waitMs?: number;
    inlineDataMax?: number;
    signal?: AbortSignal;
  }): Promise<{ entry: EntryInfo; leaseToken: string; data?: Buffer } | undefined> {
    return this.ctx.timed("dequeue", req.queue, async () => {
      this.checkDequeue(req);
      const waitMs = Math.min(req.waitMs ?? 0, this.maxWaitMs);
      const leaseMs = req.leaseMs;
      const readDataUpTo = Math.min(Math.max(req.inlineDataMax ?? 0, 0), this.maxInlineData);
      const options = {
        ...(leaseMs === undefined ? {} : { leaseMs }),
        ...(readDataUpTo > 0 ? { readDataUpTo } : {}),
      };
      const reader = this.reader(req.queue);
      for (;;) {
        let co: CheckedOutEntry<NodeEntryMeta, string> | undefined;
        try {
          // What is there now first: the wait only bounds waiting for more, however long
          // listing the queue takes.
          const now = await reader.dequeueAvailable(options);
          co = now.kind === "checked_out" ? now.entry : undefined;
          if (!co && waitMs > 0) {
            const wait = this.waitSignal(waitMs, req.signal);
            const r = await reader.dequeue(wait.signal, options).finally(wait.done);
            co = r.kind === "checked_out" ? r.entry : undefined;
          }
        } catch (err) {
          // Undecodable metadata: the entry stays checked out until its lease ends and is
          // dead-lettered after maxAttempts. Log it and move on to the next entry.
          if (err instanceof SpoolError && err.code === SpoolErrorCode.MetadataDecode) {
            this.ctx.log.error(
              { err, queue: req.queue },
              "skipping entry with undecodable metadata",
            );
            continue;
          }
          throw err;
        }
        if (!co) return undefined;
        this.ctx.publish({ kind: "checked_out", name: co.name, queue: req.queue });
        const got = {
          entry: toInfo(co.name, co.queue, co.contents, co.attempts, co.leaseUntil),
          leaseToken: this.remember(co),
        };
        // Taken from the checkout, which this node keeps (`held`) but not its data.
        const data = co.takeData();
        return data === undefined ? got : { ...got, data };
      }
    });
  }

  /** Keep a checkout handed out by this process; returns its lease token. */
  private remember(co: CheckedOutEntry<NodeEntryMeta, string>): string {
    if (this.held.size >= MAX_REMEMBERED_CHECKOUTS) {
      // Forget the oldest; a forgotten checkout is found on disk when needed.
      const oldest = this.held.keys().next().value;
      if (oldest !== undefined) this.held.delete(oldest);
    }
    this.held.set(`${co.queue}/${co.name}`, co);
    // Empty for a checkout without a token: it matches nothing.
    return co.leaseToken ?? "";
  }

  /**
   * A signal that aborts after `ms`, when `outer` aborts or when the node stops; `done`
   * removes its timer and listeners (nothing stays attached to the long-lived signals).
   */
  private waitSignal(ms: number, outer?: AbortSignal): { signal: AbortSignal; done: () => void } {
    const ac = new AbortController();
    const abort = () => ac.abort();
    const timer = setTimeout(abort, ms);
    const sources = [this.ctx.stopping, ...(outer ? [outer] : [])];
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
    this.ctx.checkQueue(queue);
    validateName("entry", name);
    const mine = this.held.get(`${queue}/${name}`);
    // The lease itself is checked again (deadline, inode) by every spool operation.
    if (mine && leaseTokensEqual(mine.leaseToken, token)) return mine;
    const co = await Expert.checkedOutUnsafe(this.ctx.spool, queue, name);
    if (!co) {
      const where = await this.ctx.spool.locate(name);
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
    // Keyed by token, action, destination and new metadata: a retry of this very request,
    // nothing else. A second Complete of the checkout asking for other metadata is not a
    // retry: it gets "lease lost", never the first one's answer as if its metadata were kept.
    const to =
      req.action.kind === "save"
        ? `save:${req.action.queue}${metadataKey(req.action.metadata)}`
        : "remove";
    const key = `complete/${to}/${req.queue}/${req.name}/${req.leaseToken}`;
    return this.once(key, () =>
      this.ctx.timed("complete", req.queue, () =>
        this.inTurn(req.queue, req.name, async () => {
          if (req.action.kind === "save") {
            this.ctx.checkQueue(req.action.queue);
            if (req.action.metadata !== undefined) this.ctx.checkMetadata(req.action.metadata);
          }
          const co = await this.holder(req.queue, req.name, req.leaseToken);
          if (req.action.kind === "remove") {
            const r = await co.remove();
            this.held.delete(`${req.queue}/${req.name}`);
            if (r.kind === "lease_lost") throw leaseLost(req.name);
            this.ctx.publish({ kind: "removed", name: req.name, queue: req.queue });
            return undefined;
          }
          const { metadata, queue: to } = req.action;
          const before = co.contents;
          if (metadata !== undefined) co.update((m) => ({ ...m, user: metadata }));
          // A save that failed (not a lost lease: the disk) leaves the held checkout as it
          // was, so a later finish does not write this request's metadata.
          const r = await co.save(to).catch((err: unknown) => {
            co.update(() => before);
            throw err;
          });
          this.held.delete(`${req.queue}/${req.name}`);
          if (r.kind === "lease_lost") throw leaseLost(req.name);
          this.ctx.publish({ kind: "saved", name: req.name, queue: to, fromQueue: req.queue });
          return toInfo(req.name, to, co.contents, co.attempts);
        }),
      ),
    );
  }

  /**
   * Run a finishing operation at most once per key: a retry that arrives while it runs, or
   * shortly after it succeeded (its reply lost), gets the same answer instead of a
   * "lease lost" for a lease its own first attempt used up.
   */
  private once<T>(key: string, f: () => Promise<T>): Promise<T> {
    const now = this.ctx.clock();
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
  putBack(queue: string, name: string, leaseToken: string): Promise<void> {
    return this.inTurn(queue, name, async () => {
      const co = await this.holder(queue, name, leaseToken);
      await co.save(queue);
      this.held.delete(`${queue}/${name}`);
    });
  }

  release(req: {
    queue: string;
    name: string;
    leaseToken: string;
  }): Promise<{ queue: string; attempts: number }> {
    const key = `release/${req.queue}/${req.name}/${req.leaseToken}`;
    return this.once(key, () =>
      this.ctx.timed("release", req.queue, () =>
        this.inTurn(req.queue, req.name, async () => {
          const co = await this.holder(req.queue, req.name, req.leaseToken);
          const r = await co.release();
          this.held.delete(`${req.queue}/${req.name}`);
          if (r.kind === "lease_lost" || r.to === undefined) throw leaseLost(req.name);
          this.ctx.publish({ kind: "released", name: req.name, queue: r.to, fromQueue: req.queue });
          return { queue: r.to, attempts: co.attempts + 1 };
        }),
      ),
    );
  }

  extendLease(req: {
    queue: string;
    name: string;
    leaseToken: string;
    leaseMs: number;
  }): Promise<number> {
    return this.ctx.timed("extend_lease", req.queue, async () => {
      if (!(req.leaseMs > 0)) {
        throw new ServiceError(
          ServiceErrorCode.InvalidArgument,
          "lease must be a positive duration",
        );
      }
      return this.inTurn(req.queue, req.name, async () => {
        const co = await this.holder(req.queue, req.name, req.leaseToken);
        const r = await co.extendLease(req.leaseMs);
        if (r.kind === "lease_lost") throw leaseLost(req.name);
        return co.leaseUntil;
      });
    });
  }

  /**
   * Run `f` once no other finish or extension of the checkout `queue/name` is under way in
   * this process. They share one CheckedOutEntry: a Complete that loses a race must not
   * change the metadata the winner writes, and a sibling's moment with the checkout file
   * aside must not read as a lost lease. (Other processes are kept apart by the spool.)
   */
  private async inTurn<T>(queue: string, name: string, f: () => Promise<T>): Promise<T> {
    const key = `${queue}/${name}`;
    const before = this.turns.get(key);
    let done = () => {};
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.turns.set(key, mine);
    try {
      await before;
      return await f();
    } finally {
      done();
      if (this.turns.get(key) === mine) this.turns.delete(key);
    }
  }

  /** Forget a checkout taken back by the lease reaper. */
  forget(queue: string, name: string): void {
    this.held.delete(`${queue}/${name}`);
  }

  async close(): Promise<void> {
    for (const r of this.readers.values()) await r.close();
    this.readers.clear();
  }
}

function leaseLost(name: string): ServiceError {
  return new ServiceError(ServiceErrorCode.LeaseLost, `lease on entry ${name} is gone`);
}
