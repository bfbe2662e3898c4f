/**
 * What one side of the comparison (the spool, or the raw baseline) must provide. The
 * driver below is shared, so both sides list, pick and retry in exactly the same way.
 */
export interface CycleOps<T, H> {
  enqueue(id: number): Promise<void>;
  /** The queue's entries in name order. */
  list(): Promise<T[]>;
  /** Check out one listed entry; `undefined` when another worker got it first. */
  checkout(item: T): Promise<H | undefined>;
  remove(held: H): Promise<void>;
}

export interface CycleResult {
  /** Entries that went through enqueue → checkout → remove while measuring. */
  entries: number;
  elapsedMs: number;
  perSecond: number;
  /** Listings of the queue directory (readdir) while measuring. */
  listings: number;
  /** Checkouts that lost a race (`not_found`) while measuring. */
  lostRaces: number;
  /**
   * CPU time (user + system, every thread of the process) per entry while measuring: less
   * sensitive than entries/s to other load on a shared machine.
   */
  cpuUsPerEntry: number;
}

/**
 * Entries taken by many workers from one listing: each worker claims the next listed item
 * synchronously, so no two workers try the same item from one listing; when the listing is
 * spent, one relisting (shared by every waiting worker) replaces it. An item of a new
 * listing may still be in another worker's checkout: that worker wins, the other one gets
 * `undefined` and moves on, as with several QueueReaders.
 */
class SharedCursor<T, H> {
  private items: T[] = [];
  private next = 0;
  private listing: Promise<void> | undefined;
  listings = 0;
  lostRaces = 0;

  constructor(private readonly ops: CycleOps<T, H>) {}

  async take(): Promise<H> {
    for (;;) {
      while (this.next < this.items.length) {
        const item = this.items[this.next++] as T;
        const held = await this.ops.checkout(item);
        if (held !== undefined) return held;
        this.lostRaces++;
      }
      if (this.listing === undefined) {
        this.listings++;
        this.listing = this.ops.list().then(
          (items) => {
            this.items = items;
            this.next = 0;
            this.listing = undefined;
          },
          (err: unknown) => {
            this.listing = undefined;
            throw err;
          },
        );
      }
      await this.listing;
    }
  }
}

/**
 * `concurrency` async workers, each looping: enqueue one entry, take one entry from the
 * queue (not necessarily its own), remove it. Each side does the same enqueues, listings
 * and checkouts. After `warmupMs`, counts the cycles that finish during the next
 * `durationMs` (steady state); then workers finish the cycle they are in and stop, so the
 * queue ends empty.
 */
export async function runCycles<T, H>(
  ops: CycleOps<T, H>,
  concurrency: number,
  warmupMs: number,
  durationMs: number,
): Promise<CycleResult> {
  const cursor = new SharedCursor(ops);
  let nextId = 0;
  let completed = 0;
  let stopping = false;
  const snapshot = () => ({
    t: performance.now(),
    cpu: process.cpuUsage(),
    completed,
    listings: cursor.listings,
    lostRaces: cursor.lostRaces,
  });
  let first = snapshot();
  let last = first;
  const window = new Promise<void>((resolve) => {
    setTimeout(() => {
      first = snapshot();
      setTimeout(() => {
        last = snapshot();
        stopping = true;
        resolve();
      }, durationMs);
    }, warmupMs);
  });
  const worker = async () => {
    while (!stopping) {
      await ops.enqueue(nextId++);
      await ops.remove(await cursor.take());
      completed++;
    }
  };
  await Promise.all([window, ...Array.from({ length: concurrency }, worker)]);
  const elapsedMs = last.t - first.t;
  const entries = last.completed - first.completed;
  return {
    entries,
    elapsedMs,
    perSecond: (entries / elapsedMs) * 1000,
    listings: last.listings - first.listings,
    lostRaces: last.lostRaces - first.lostRaces,
    cpuUsPerEntry: (last.cpu.user + last.cpu.system - first.cpu.user - first.cpu.system) / entries,
  };
}
