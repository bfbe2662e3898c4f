import type pg from "pg";
import { inTransaction } from "../db/pg-session.js";
import { type CountRow, OVERFLOW_KEY } from "./request-stats.js";

/**
 * The cache's request counts in the node's PostgreSQL (migration 0012, `cache_request_counts`):
 * written in batches (`writeCounts`, one transaction per flush, added to the rows of the same
 * bucket and key), pruned by age (`pruneCounts`), read back for `geospool cache stats`
 * (`readRequestReport`). Node-local: never replicated.
 */

/**
 * Rows per statement: each statement's parameter is made on the event loop, between the
 * previous statement's answer and this one's send; at 1,000 rows that is a few ms.
 */
const SLICE = 1_000;

/**
 * Distinct keys the table holds per (bucket, kind), as far as this process knows: read
 * once per bucket and kind (one count), then kept up to date by the writes. Pass the same
 * object to every `writeCounts` of a flusher.
 */
export class BucketKeyCounts {
  private readonly known = new Map<string, number>();

  /** The count for (bucket, kind), read from the table the first time. */
  async get(client: pg.PoolClient, bucket: number, kind: string): Promise<number> {
    const id = `${bucket}/${kind}`;
    const have = this.known.get(id);
    if (have !== undefined) return have;
    const { rows } = await client.query<{ n: string }>(
      `select count(*) as n from cache_request_counts
        where bucket = to_timestamp($1 / 1000.0) and kind = $2 and key <> $3`,
      [bucket, kind, OVERFLOW_KEY],
    );
    const n = Number(rows[0]?.n ?? 0);
    this.known.set(id, n);
    return n;
  }

  /** After a commit: `added` new keys in (bucket, kind). Buckets before `oldest` are forgotten. */
  add(bucket: number, kind: string, added: number, oldest: number): void {
    const id = `${bucket}/${kind}`;
    this.known.set(id, (this.known.get(id) ?? 0) + added);
    for (const key of this.known.keys()) {
      if (Number(key.slice(0, key.indexOf("/"))) < oldest) this.known.delete(key);
    }
  }
}

export interface WriteCountsOptions {
  /**
   * Most distinct keys one (bucket, kind) may hold in the table: counts of a key that is
   * not there yet, once it holds that many, are added to the bucket's OVERFLOW_KEY row
   * instead (totals stay exact; a flood of made-up paths adds rows no longer). Keys
   * already there go on being counted. Unbounded without it.
   */
  maxKeysPerBucket?: number;
  /** Where the per-bucket counts are kept between writes (with `maxKeysPerBucket`). */
  keyCounts?: BucketKeyCounts;
}

/**
 * Add `rows` to the stored counts, in one transaction (none added if it fails). The rows are
 * read a slice at a time, as the statements go: pass `RequestStats.takeLazily()` to keep
 * every step short on the serving thread. The rows' (bucket, kind, key) must be distinct.
 */
export async function writeCounts(
  pool: pg.Pool,
  rows: Iterable<CountRow>,
  options: WriteCountsOptions = {},
): Promise<void> {
  const source = rows[Symbol.iterator]();
  let next = source.next();
  if (next.done === true) return;
  const bound = options.maxKeysPerBucket;
  const counts = options.keyCounts ?? new BucketKeyCounts();
  // New keys per (bucket, kind), applied to `counts` once the transaction committed.
  const added = new Map<string, { bucket: number; kind: string; n: number }>();
  await inTransaction(pool, async (client) => {
    await client.query("set local synchronous_commit = off");
    while (next.done !== true) {
      // One JSON text per statement: much cheaper to make than six PostgreSQL array literals.
      const groups = new Map<string, { bucket: number; kind: string; rows: unknown[][] }>();
      for (let n = 0; next.done !== true && n < SLICE; next = source.next(), n++) {
        const r = next.value;
        const id = `${r.bucket}/${r.kind}`;
        let g = groups.get(id);
        if (g === undefined) {
          g = { bucket: r.bucket, kind: r.kind, rows: [] };
          groups.set(id, g);
        }
        g.rows.push([r.key, r.hits, r.misses, r.bytes]);
      }
      for (const [id, g] of groups) {
        const before = bound === undefined ? 0 : await counts.get(client, g.bucket, g.kind);
        const pending = added.get(id)?.n ?? 0;
        const room = bound === undefined ? null : Math.max(0, bound - before - pending);
        const { rows: written } = await client.query<{ inserted: boolean; key: string }>(
          `with r as (
             select e->>0 as key, (e->>1)::bigint as hits, (e->>2)::bigint as misses,
                    (e->>3)::bigint as bytes, o,
                    e->>0 = $4 or $2::bigint is null or exists (
                      select 1 from cache_request_counts c
                       where c.bucket = to_timestamp($3 / 1000.0) and c.kind = $5
                         and c.key = e->>0) as kept
               from json_array_elements($1::json) with ordinality as t(e, o)),
           fresh as (
             select r.*, row_number() over (order by o) as n from r where not kept),
           sums as (
             select key, sum(hits) as hits, sum(misses) as misses, sum(bytes) as bytes
               from (select key, hits, misses, bytes from r where kept
                     union all
                     select case when n <= $2 then key else $4 end, hits, misses, bytes
                       from fresh) x
              group by key)
           insert into cache_request_counts as c (bucket, kind, key, hits, misses, bytes)
           select to_timestamp($3 / 1000.0), $5, key, hits, misses, bytes from sums
           on conflict (bucket, kind, key) do update
             set hits = c.hits + excluded.hits, misses = c.misses + excluded.misses,
                 bytes = c.bytes + excluded.bytes
           returning (xmax = 0) as inserted, key`,
          [JSON.stringify(g.rows), room, g.bucket, OVERFLOW_KEY, g.kind],
        );
        const fresh = written.filter((w) => w.inserted && w.key !== OVERFLOW_KEY).length;
        added.set(id, { bucket: g.bucket, kind: g.kind, n: pending + fresh });
      }
    }
  });
  const oldest = Math.min(...[...added.values()].map((a) => a.bucket));
  for (const a of added.values()) counts.add(a.bucket, a.kind, a.n, oldest);
}

/** Delete buckets that started before `before` (ms since the epoch); how many rows went. */
export async function pruneCounts(pool: pg.Pool, before: number): Promise<number> {
  const { rowCount } = await pool.query(
    "delete from cache_request_counts where bucket < to_timestamp($1 / 1000.0)",
    [before],
  );
  return rowCount ?? 0;
}

export interface RequestReportOptions {
  /** Only buckets starting at or after this (ms since the epoch); all kept ones without. */
  since?: number;
  /** Rows per list. */
  top: number;
}

export interface KindTotals {
  hits: number;
  misses: number;
  bytes: number;
  /** Requests counted without their key (past the node's bound between two flushes). */
  unkeyed: number;
}

export interface NarinfoCount {
  hashPart: string;
  /** The store path served for it now, if any. */
  storePath: string | null;
  hits: number;
  misses: number;
}

export interface NarCount {
  path: string;
  hits: number;
  misses: number;
  bytes: number;
}

export interface RequestReport {
  /** The first and last bucket counted (ISO), null when none. */
  from: string | null;
  to: string | null;
  narinfo: KindTotals;
  nar: KindTotals;
  /** Narinfos asked for most (hits + misses). */
  topNarinfos: NarinfoCount[];
  /** Nars by bytes sent. */
  topNars: NarCount[];
  /**
   * Hash parts asked for and never found: no hit in any kept bucket, and nothing served for
   * them now (what a mirror operator may want to upload). Most misses first.
   */
  missedNeverServed: Array<{ hashPart: string; misses: number }>;
}

const num = (v: string | number | null | undefined) => Number(v ?? 0);

/** Which keys a count reader returns: the `top` first by its order, or exactly `keys`. */
export type CountSelection = { top: number } | { keys: readonly string[] };

/** The `where` and `order … limit` of a count reader's inner query, and its parameter. */
function selecting(sel: CountSelection, order: string): [string, string, unknown] {
  return "top" in sel
    ? ["", `order by ${order}, key limit $2`, sel.top]
    : ["and key = any($2)", "", sel.keys];
}

/**
 * Narinfo hits and misses per hash part since `since` (ms), with the store path of the
 * narinfo served now (null where none is): the most asked for first, or the given keys.
 */
export async function narinfoCounts(
  pool: pg.Pool,
  since: number,
  sel: CountSelection,
): Promise<NarinfoCount[]> {
  const [only, limit, param] = selecting(sel, "sum(hits + misses) desc");
  const { rows } = await pool.query<{
    key: string;
    hits: string;
    misses: string;
    store_path: string | null;
  }>(
    `select t.key, t.hits, t.misses,
            substring(encode(e.narinfo, 'escape') from '(?n)^StorePath: (.*)$') as store_path
       from (select key, sum(hits) as hits, sum(misses) as misses
               from cache_request_counts
              where bucket >= to_timestamp($1 / 1000.0) and kind = 'narinfo' and key <> $3 ${only}
              group by key ${limit}) t
       left join cache_served s on s.hash_part = t.key
       left join cache_entries e on e.entry = s.entry
      order by t.hits + t.misses desc, t.key`,
    [since, param, OVERFLOW_KEY],
  );
  return rows.map((r) => ({
    hashPart: r.key,
    storePath: r.store_path,
    hits: num(r.hits),
    misses: num(r.misses),
  }));
}

/** Nar requests and bytes sent per path since `since` (ms): most bytes first, or the given keys. */
export async function narCounts(
  pool: pg.Pool,
  since: number,
  sel: CountSelection,
): Promise<NarCount[]> {
  const [only, limit, param] = selecting(sel, "sum(bytes) desc, sum(hits) desc");
  const { rows } = await pool.query<{ key: string; hits: string; misses: string; bytes: string }>(
    `select key, sum(hits) as hits, sum(misses) as misses, sum(bytes) as bytes
       from cache_request_counts
      where bucket >= to_timestamp($1 / 1000.0) and kind = 'nar' and key <> $3 ${only}
      group by key ${limit}`,
    [since, param, OVERFLOW_KEY],
  );
  return rows.map((r) => ({
    path: r.key,
    hits: num(r.hits),
    misses: num(r.misses),
    bytes: num(r.bytes),
  }));
}

/** What `geospool cache stats` shows, from the node's tables. */
export async function readRequestReport(
  pool: pg.Pool,
  options: RequestReportOptions,
): Promise<RequestReport> {
  const since = options.since ?? 0;
  const range = "bucket >= to_timestamp($1 / 1000.0)";
  const totals = await pool.query<{
    kind: "narinfo" | "nar";
    hits: string;
    misses: string;
    bytes: string;
    unkeyed: string;
    first: Date;
    last: Date;
  }>(
    `select kind, sum(hits) as hits, sum(misses) as misses, sum(bytes) as bytes,
            coalesce(sum(hits + misses) filter (where key = $2), 0) as unkeyed,
            min(bucket) as first, max(bucket) as last
       from cache_request_counts where ${range} group by kind`,
    [since, OVERFLOW_KEY],
  );
  const kind = (k: "narinfo" | "nar"): KindTotals => {
    const r = totals.rows.find((x) => x.kind === k);
    return {
      hits: num(r?.hits),
      misses: num(r?.misses),
      bytes: num(r?.bytes),
      unkeyed: num(r?.unkeyed),
    };
  };
  const firsts = totals.rows.map((r) => r.first.getTime());
  const lasts = totals.rows.map((r) => r.last.getTime());
  const topNarinfos = await narinfoCounts(pool, since, { top: options.top });
  const topNars = await narCounts(pool, since, { top: options.top });
  const missed = await pool.query<{ key: string; misses: string }>(
    `select c.key, sum(c.misses) as misses
       from cache_request_counts c
      where ${range} and c.kind = 'narinfo' and c.key <> $3
        and not exists (select 1 from cache_served s where s.hash_part = c.key)
        and not exists (select 1 from cache_request_counts h
                         where h.kind = 'narinfo' and h.key = c.key and h.hits > 0)
      group by c.key order by sum(c.misses) desc, c.key limit $2`,
    [since, options.top, OVERFLOW_KEY],
  );
  return {
    from: firsts.length === 0 ? null : new Date(Math.min(...firsts)).toISOString(),
    to: lasts.length === 0 ? null : new Date(Math.max(...lasts)).toISOString(),
    narinfo: kind("narinfo"),
    nar: kind("nar"),
    topNarinfos,
    topNars,
    missedNeverServed: missed.rows.map((r) => ({ hashPart: r.key, misses: num(r.misses) })),
  };
}
