import type pg from "pg";
import type { Logger } from "pino";
import type { CountRow, RequestStats } from "./request-stats.js";
import { BucketKeyCounts, pruneCounts, writeCounts } from "./request-stats-store.js";

export interface RequestStatsFlushOptions {
  stats: RequestStats;
  pool: pg.Pool;
  /** How often the counts go to the database (ms): what a crash can lose. */
  everyMs: number;
  /** Buckets older than this are deleted (ms), checked at most once per `everyMs`. */
  keepForMs: number;
  /** Most distinct keys one bucket (per kind) keeps in the table (`writeCounts`). */
  maxKeysPerBucket?: number | undefined;
  logger: Logger;
  clock?: () => number;
}

export interface RequestStatsFlush {
  /** Write what was counted so far now (after any flush under way). */
  flush(): Promise<void>;
  /** No more timed flushes; a last flush of what was counted. */
  stop(): Promise<void>;
}

/**
 * Moves a `RequestStats`' counts to the node's database every `everyMs` and at stop, one
 * flush at a time, and prunes buckets past `keepForMs`. A failed write puts its counts back
 * (within the counter's bound), so they go with the next flush; the failure is logged.
 */
export function startRequestStatsFlush(options: RequestStatsFlushOptions): RequestStatsFlush {
  const { stats, pool } = options;
  const log = options.logger.child({ component: "cache-stats" });
  const clock = options.clock ?? Date.now;
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;
  const keyCounts = new BucketKeyCounts();
  const bounded =
    options.maxKeysPerBucket === undefined
      ? {}
      : { maxKeysPerBucket: options.maxKeysPerBucket, keyCounts };

  async function once(): Promise<void> {
    // Rows are made a slice at a time as the statements go (a flush at the key bound is
    // 50,000 rows: made at once, they held the serving thread for tens of ms). Those made
    // are kept, so that a failed write can put every row back: read and unread.
    const source = stats.takeLazily();
    const made: CountRow[] = [];
    const reading: Iterable<CountRow> = {
      [Symbol.iterator]: () => ({
        next() {
          const n = source.next();
          if (n.done !== true) made.push(n.value);
          return n;
        },
      }),
    };
    try {
      await writeCounts(pool, reading, bounded);
    } catch (err) {
      for (let n = source.next(); n.done !== true; n = source.next()) made.push(n.value);
      stats.restore(made);
      log.error({ err, rows: made.length }, "request counts not written; kept for the next flush");
      return;
    }
    try {
      const pruned = await pruneCounts(pool, clock() - options.keepForMs);
      if (pruned > 0) log.debug({ pruned }, "old request counts pruned");
    } catch (err) {
      log.warn({ err }, "old request counts not pruned");
    }
  }

  const flush = () => {
    chain = chain.then(once);
    return chain;
  };
  const timer = setInterval(() => {
    if (!stopped) void flush();
  }, options.everyMs);
  timer.unref();

  return {
    flush,
    async stop() {
      if (stopped) return chain;
      stopped = true;
      clearInterval(timer);
      await flush();
    },
  };
}
