import type { CheckedOutEntry } from "./checked-out-entry.js";
import { Doorbell, type DoorbellMode } from "./doorbell.js";
import type { Entry } from "./entry.js";
import {
  type CheckoutOptions,
  coreOf,
  type EntryHandler,
  runHandler,
  type Spool,
} from "./spool.js";

export type DequeueResult<M, Q extends string> =
  | { kind: "checked_out"; entry: CheckedOutEntry<M, Q> }
  | { kind: "stopped" };

export type DequeueAvailableResult<M, Q extends string> =
  | { kind: "checked_out"; entry: CheckedOutEntry<M, Q> }
  | { kind: "nothing_available" };

export interface QueueReaderOptions extends CheckoutOptions {
  /**
   * While waiting on an empty queue, take back expired leases of this queue this often
   * (default: 1 s). 0 turns it off (leave it to a reaper or the monitor).
   */
  reapEveryMs?: number;
  /**
   * How the reader learns that the queue changed: "inotify" (default; one fs.watch on the
   * queue directory, falling back to polling where the platform cannot watch) or "poll"
   * (polling the directory's stat, for filesystems whose events do not arrive, e.g. NFS).
   */
  watch?: DoorbellMode;
}

/**
 * Reads one queue in name order, waiting for entries when it is empty. Several readers, in
 * one process or many, never get the same entry: each candidate is taken by an atomic
 * checkout, and the loser moves on.
 */
export class QueueReader<M, Q extends string> {
  private cache: Entry<M, Q>[] = [];
  private next = 0;
  private listing: Promise<void> | undefined;
  private readonly doorbell: Doorbell;
  private readonly reapEveryMs: number;

  constructor(
    readonly spool: Spool<M, Q>,
    readonly queue: Q,
    private readonly options: QueueReaderOptions = {},
  ) {
    const core = coreOf(spool);
    this.doorbell = new Doorbell(
      core.layout.queue(core.dirname(queue)),
      options.watch ?? "inotify",
    );
    this.reapEveryMs = options.reapEveryMs ?? 1000;
  }

  /** Take the next entry, waiting for one to appear; `stopped` when the signal aborts. */
  async dequeue(signal?: AbortSignal, options?: CheckoutOptions): Promise<DequeueResult<M, Q>> {
    await this.doorbell.start();
    for (;;) {
      if (signal?.aborted) return { kind: "stopped" };
      const got = await this.takeFromCache(signal, options);
      if (got) return { kind: "checked_out", entry: got };
      if (signal?.aborted) return { kind: "stopped" };
      // The cache is spent: list again (relist clears the doorbell first).
      await this.relist();
      if (this.next < this.cache.length) {
        const next = await this.takeFromCache(signal, options);
        if (next) return { kind: "checked_out", entry: next };
      }
      // Nothing we could take: sleep until the directory changes (or a lease may be due).
      const timeout = this.reapEveryMs > 0 ? this.reapEveryMs : undefined;
      await this.doorbell.wait(signal, timeout);
      if (this.reapEveryMs > 0 && !signal?.aborted) {
        await this.spool.expireLeases([this.queue]);
      }
    }
  }

  /** Take the next entry if there is one now; never waits. */
  async dequeueAvailable(options?: CheckoutOptions): Promise<DequeueAvailableResult<M, Q>> {
    if (this.next >= this.cache.length) await this.relist();
    const got = await this.takeFromCache(undefined, options);
    if (got) return { kind: "checked_out", entry: got };
    // What we had cached may have been stale; one fresh listing decides.
    await this.relist();
    const again = await this.takeFromCache(undefined, options);
    return again ? { kind: "checked_out", entry: again } : { kind: "nothing_available" };
  }

  /** Handle entries as they come, until the signal aborts. */
  async iter(f: EntryHandler<M, Q, unknown>, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const r = await this.dequeue(signal);
      if (r.kind === "stopped") return;
      await runHandler(r.entry, f);
    }
  }

  /** Handle the entries there are now, then return. */
  async iterAvailable(f: EntryHandler<M, Q, unknown>, signal?: AbortSignal): Promise<number> {
    let n = 0;
    await this.relist();
    for (;;) {
      if (signal?.aborted) return n;
      const got = await this.takeFromCache(signal);
      if (!got) return n;
      await runHandler(got, f);
      n++;
    }
  }

  async close(): Promise<void> {
    this.refill([]);
    await this.doorbell.close();
  }

  /**
   * List the queue into the cache. Concurrent callers (several dequeues on one reader)
   * share one listing, and take distinct candidates from it.
   */
  private relist(): Promise<void> {
    if (this.listing === undefined) {
      // Clear the doorbell *before* listing, so an entry that arrives during or after the
      // listing rings it again. Only the caller that starts a listing clears it: a caller
      // joining a listing already under way must not forget rings that came after it began.
      this.doorbell.clear();
      this.listing = this.spool
        .list(this.queue)
        .then((entries) => this.refill(entries))
        .finally(() => {
          this.listing = undefined;
        });
    }
    return this.listing;
  }

  private refill(entries: Entry<M, Q>[]): void {
    this.cache = entries;
    this.next = 0;
  }

  private async takeFromCache(
    signal?: AbortSignal,
    options?: CheckoutOptions,
  ): Promise<CheckedOutEntry<M, Q> | undefined> {
    for (;;) {
      if (signal?.aborted) return undefined;
      const entry = this.cache[this.next];
      if (entry === undefined) return undefined;
      this.next++;
      const r = await this.spool.checkoutIfPresent(entry, options ?? this.options);
      if (r.kind === "ok") return r.entry;
    }
  }
}
