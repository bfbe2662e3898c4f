/**
 * Request analytics of the binary cache, in memory (no I/O): per time bucket (an hour by
 * default) and per key, how often a narinfo was asked for and found (hit) or not (miss), and
 * how often a nar was asked for and how many of its bytes were sent. The HTTP routes count
 * into it on every request, so the path is a clock read, a map lookup and additions; the
 * node takes the counts out (`takeLazily`) and writes them to its database in one batch per
 * interval (`request-stats-flush.ts`).
 *
 * Bounded: at most `maxKeys` distinct (bucket, kind, key) are held between two takes (plus
 * one overflow key per bucket and kind); a request for a key beyond that is counted under
 * the bucket's empty key `""` of its kind (`OVERFLOW_KEY`), so totals stay exact and only
 * the per-key split is lost, and it is counted in `totals.overflowed`. Running totals since start (`totals`) are kept whether
 * or not per-key counting is on: the node's Prometheus counters read them.
 */

export type RequestKind = "narinfo" | "nar";

/** Counts of one key in one bucket. */
export interface KeyCounts {
  hits: number;
  misses: number;
  /** Body bytes sent (nars; 0 for narinfos). */
  bytes: number;
}

/** One (bucket, kind, key) and its counts, as written to the database. */
export interface CountRow extends KeyCounts {
  /** Start of the bucket (ms since the epoch, UTC). */
  readonly bucket: number;
  readonly kind: RequestKind;
  readonly key: string;
}

/** The key under which requests past `maxKeys` are counted. */
export const OVERFLOW_KEY = "";

/** Totals since the process started (for Prometheus counters; never reset). */
export interface RequestTotals {
  narinfoHits: number;
  narinfoMisses: number;
  narHits: number;
  narMisses: number;
  narBytes: number;
  /** Requests counted under OVERFLOW_KEY because `maxKeys` distinct keys were held. */
  overflowed: number;
}

export interface RequestStatsOptions {
  /** Count per key (the analytics); off, only the running totals are kept. Default true. */
  perKey?: boolean;
  /** Most distinct (bucket, kind, key) held between two takes. Default 100,000. */
  maxKeys?: number;
  /** Bucket width (ms). Default an hour. */
  bucketMs?: number;
  clock?: () => number;
}

export const HOUR_MS = 3_600_000;

type Bucket = { readonly start: number } & Record<RequestKind, Map<string, KeyCounts>>;

export class RequestStats {
  readonly totals: RequestTotals = {
    narinfoHits: 0,
    narinfoMisses: 0,
    narHits: 0,
    narMisses: 0,
    narBytes: 0,
    overflowed: 0,
  };
  /** Per-key counting; switching it off keeps what was counted until the next take. */
  perKey: boolean;
  readonly maxKeys: number;
  readonly bucketMs: number;
  private readonly clock: () => number;
  private buckets: Bucket[] = [];
  /** The bucket requests now fall in (the last of `buckets`), and where it ends. */
  private current: Bucket | undefined;
  private currentEnd = 0;
  private keys = 0;

  constructor(options: RequestStatsOptions = {}) {
    this.perKey = options.perKey ?? true;
    this.maxKeys = options.maxKeys ?? 100_000;
    this.bucketMs = options.bucketMs ?? HOUR_MS;
    this.clock = options.clock ?? Date.now;
    if (!(this.maxKeys >= 0) || !(this.bucketMs > 0)) {
      throw new RangeError("RequestStats: maxKeys must be >= 0 and bucketMs > 0");
    }
  }

  /** Distinct (bucket, kind, key) held now (overflow keys included). */
  get heldKeys(): number {
    return this.keys;
  }

  /** A narinfo (GET or HEAD) answered: found or not. */
  narinfo(hashPart: string, found: boolean): void {
    if (found) this.totals.narinfoHits++;
    else this.totals.narinfoMisses++;
    if (this.perKey) this.add("narinfo", hashPart, found ? 1 : 0, found ? 0 : 1, 0);
  }

  /** A nar request answered: found or not, and the body bytes sent (0 for HEAD, 304, 416). */
  nar(path: string, found: boolean, bytes: number): void {
    if (found) this.totals.narHits++;
    else this.totals.narMisses++;
    this.totals.narBytes += bytes;
    if (this.perKey) this.add("nar", path, found ? 1 : 0, found ? 0 : 1, bytes);
  }

  /** Everything counted per key since the last take, oldest bucket first; memory is emptied. */
  take(): CountRow[] {
    return Array.from(this.takeLazily());
  }

  /**
   * `take` without building the rows at once: the counts are taken out now (what is counted
   * from here on is held for the next take), and the rows are made as the iterator is read,
   * so a writer can make and send them a slice at a time without holding the event loop for
   * all of them. Stopping early drops the rows not read.
   */
  takeLazily(): Iterator<CountRow> & Iterable<CountRow> {
    const buckets = this.buckets;
    this.buckets = [];
    this.current = undefined;
    this.currentEnd = 0;
    this.keys = 0;
    return (function* rows() {
      for (const b of buckets) {
        for (const kind of ["narinfo", "nar"] as const) {
          for (const [key, c] of b[kind]) {
            yield { bucket: b.start, kind, key, hits: c.hits, misses: c.misses, bytes: c.bytes };
          }
        }
      }
    })();
  }

  /**
   * Put back rows that could not be written (they are added to what was counted since),
   * within the same bound: rows past it go to their bucket's overflow key.
   */
  restore(rows: readonly CountRow[]): void {
    for (const r of rows) {
      const b = this.bucketAt(r.bucket);
      this.addTo(b, r.kind, r.key, r.hits, r.misses, r.bytes);
    }
  }

  private add(kind: RequestKind, key: string, hits: number, misses: number, bytes: number) {
    const now = this.clock();
    let b = this.current;
    if (b === undefined || now >= this.currentEnd || now < b.start) b = this.bucketAt(now);
    this.addTo(b, kind, key, hits, misses, bytes);
  }

  private addTo(
    b: Bucket,
    kind: RequestKind,
    key: string,
    hits: number,
    misses: number,
    bytes: number,
  ): void {
    const map = b[kind];
    let c = map.get(key);
    if (c === undefined) {
      if (this.keys >= this.maxKeys && key !== OVERFLOW_KEY) {
        this.totals.overflowed += hits + misses;
        key = OVERFLOW_KEY;
        c = map.get(key);
      }
      if (c === undefined) {
        c = { hits: 0, misses: 0, bytes: 0 };
        map.set(key, c);
        this.keys++;
      }
    }
    c.hits += hits;
    c.misses += misses;
    c.bytes += bytes;
  }

  /** The bucket holding time `t`, made (and made current, when it is the latest) if need be. */
  private bucketAt(t: number): Bucket {
    const start = t - (((t % this.bucketMs) + this.bucketMs) % this.bucketMs);
    let b = this.buckets.find((x) => x.start === start);
    if (b === undefined) {
      b = { start, narinfo: new Map(), nar: new Map() };
      this.buckets.push(b);
      this.buckets.sort((x, y) => x.start - y.start);
    }
    const latest = this.buckets[this.buckets.length - 1];
    if (b === latest) {
      this.current = b;
      this.currentEnd = start + this.bucketMs;
    }
    return b;
  }
}
