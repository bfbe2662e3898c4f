import type pg from "pg";
import { inTransaction } from "../db/pg-session.js";
import { parseNarinfo, referenceHashParts } from "./narinfo.js";
import { NarinfoFront } from "./narinfo-front.js";
import {
  type CandidateTrust,
  chooseServable,
  type NarHolding,
  type ServedCandidate,
} from "./served-rule.js";

/**
 * The cache's lookup index in the node's PostgreSQL (migration 0008), with a memory front
 * for the request path. PostgreSQL holds the truth of what the index says; the tables are
 * derived from the cache's spool queue (the spool is the source of truth of what is
 * stored) and are node-local: the mesh publishes only the journal.
 *
 * - `cache_entries`: one row per cache entry (hash part, nar path, trust, origin, stamp,
 *   narinfo and listing bytes, uploader);
 * - `cache_served`: per hash part the entry `chooseServable` picks among that hash part's
 *   rows (the complete ones: every nar accepted with it held), recomputed in the same
 *   transaction as every change of them;
 * - `cache_entries.refs`: the store paths (hash parts) each entry's narinfo references, the
 *   graph a GC walks from the served entries;
 * - `cache_index_state`: the spool id, queue and format the rows were derived from; rows of
 *   another are dropped at `open` (the caller then rebuilds them from the queue).
 *
 * The memory front (`NarinfoFront`) holds per hash part the served narinfo's bytes and
 * nothing else: a narinfo hit or miss touches no database. It is loaded from the tables at
 * `open` and follows each committed `apply`, so it is never ahead of PostgreSQL. What a
 * request asks less often, or that costs more than a query anyway (which entries hold a nar,
 * the listing, the served entry's name), is one indexed query. One writer per index: the
 * caller serialises `apply`.
 */

/** Bump when what the rows hold changes: indexes of another format are rebuilt. */
export const CACHE_INDEX_FORMAT = 2;

/** What one entry contributes to the index (from its cache record). */
export interface IndexedEntry {
  readonly entry: string;
  readonly hashPart: string;
  /** The nar path (`nar/...`) the entry's data answers. */
  readonly url: string;
  readonly trust: CandidateTrust;
  readonly origin: string;
  /** When it was accepted (upload-stamp.ts), in the column `hlc`. */
  readonly stamp: bigint;
  readonly narinfo: Buffer;
  readonly listing: Buffer | undefined;
  readonly by: string;
  /** Every nar path accepted with the narinfo, `url` included; undefined: `url` alone. */
  readonly files: readonly string[] | undefined;
}

export interface IndexSource {
  /** The spool's identity (`.spool-id`). */
  readonly spoolId: string;
  readonly queue: string;
}

export interface Served {
  readonly entry: string;
  readonly narinfo: Buffer;
}

interface CandidateRow {
  entry: string;
  hash_part: string;
  url: string;
  files: string[] | null;
  trust: CandidateTrust;
  origin: string;
  hlc: string;
  narinfo: Buffer;
}

/** Rows written per statement (a rebuild of a large queue goes in slices). */
const SLICE = 1000;
/** Served narinfos read per query when the memory front is loaded. */
const LOAD_SLICE = 5000;

export class CacheIndex {
  private readonly front = new NarinfoFront();
  private count = 0;

  private constructor(private readonly pool: pg.Pool) {}

  /**
   * The index of `source`: rows derived from another spool, queue or format are dropped
   * first (`rebuilt` says so). The memory front is loaded from the tables.
   */
  static async open(
    pool: pg.Pool,
    source: IndexSource,
  ): Promise<{ index: CacheIndex; dropped: boolean }> {
    const dropped = await inTransaction(pool, async (client) => {
      const { rows } = await client.query<{ spool_id: string; queue: string; format: number }>(
        "select spool_id, queue, format from cache_index_state for update",
      );
      const state = rows[0];
      if (
        state?.spool_id === source.spoolId &&
        state.queue === source.queue &&
        state.format === CACHE_INDEX_FORMAT
      ) {
        return false;
      }
      await client.query("truncate cache_served, cache_entries");
      await client.query(
        `insert into cache_index_state (spool_id, queue, format) values ($1, $2, $3)
         on conflict (singleton) do update
           set spool_id = excluded.spool_id, queue = excluded.queue, format = excluded.format,
               built_at = now()`,
        [source.spoolId, source.queue, CACHE_INDEX_FORMAT],
      );
      return state !== undefined;
    });
    const index = new CacheIndex(pool);
    await index.load();
    // Hash parts with entries but no served row (rows lost, or an upload still incomplete):
    // chosen again, so a lost `cache_served` row is not a miss.
    const { rows } = await pool.query<{ hash_part: string }>(
      `select distinct hash_part from cache_entries e
        where not exists (select 1 from cache_served s where s.hash_part = e.hash_part)`,
    );
    const unserved = rows.map((r) => r.hash_part);
    for (let i = 0; i < unserved.length; i += SLICE) {
      await index.applySlice([], [], unserved.slice(i, i + SLICE));
    }
    return { index, dropped };
  }

  /** The memory front, in slices (one query's rows at a time, not the whole table's). */
  private async load(): Promise<void> {
    const { rows } = await this.pool.query<{ n: string }>(
      "select count(*) as n from cache_entries",
    );
    this.count = Number(rows[0]?.n ?? 0);
    let after = "";
    for (;;) {
      const { rows } = await this.pool.query<{ hash_part: string; narinfo: Buffer }>(
        `select s.hash_part, e.narinfo
           from cache_served s join cache_entries e using (entry)
          where s.hash_part > $1 order by s.hash_part limit $2`,
        [after, LOAD_SLICE],
      );
      for (const r of rows) this.front.set(r.hash_part, r.narinfo);
      if (rows.length < LOAD_SLICE) return;
      after = (rows[rows.length - 1] as { hash_part: string }).hash_part;
    }
  }

  /** Every indexed entry's name (read from the table). */
  async names(): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ entry: string }>("select entry from cache_entries");
    return new Set(rows.map((r) => r.entry));
  }

  /** How many entries are indexed. */
  get size(): number {
    return this.count;
  }

  /** The served narinfo's bytes for `hashPart` (memory only). */
  narinfo(hashPart: string): Buffer | undefined {
    return this.front.get(hashPart);
  }

  /** The entry served for `hashPart` and its narinfo's bytes. */
  async servedOf(hashPart: string): Promise<Served | undefined> {
    const { rows } = await this.pool.query<Served>(
      `select s.entry, e.narinfo from cache_served s join cache_entries e using (entry)
        where s.hash_part = $1`,
      [hashPart],
    );
    return rows[0];
  }

  /** The entries holding the nar at `url`. */
  async narEntries(url: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ entry: string }>(
      "select entry from cache_entries where url = $1 order by entry",
      [url],
    );
    return rows.map((r) => r.entry);
  }

  /** The listing uploaded with the served entry of `hashPart`. */
  async listing(hashPart: string): Promise<Buffer | undefined> {
    const { rows } = await this.pool.query<{ listing: Buffer | null }>(
      `select e.listing from cache_served s join cache_entries e using (entry)
        where s.hash_part = $1`,
      [hashPart],
    );
    return rows[0]?.listing ?? undefined;
  }

  /** Whether an entry of `hashPart` already holds exactly this narinfo for this nar. */
  async holds(hashPart: string, narinfo: Buffer, url: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `select 1 from cache_entries where hash_part = $1 and url = $2 and narinfo = $3 limit 1`,
      [hashPart, url, narinfo],
    );
    return (rowCount ?? 0) > 0;
  }

  /** The store paths (hash parts) the entries of `hashPart` reference. */
  async references(hashPart: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ reference: string }>(
      `select distinct unnest(refs) as reference from cache_entries where hash_part = $1
        order by 1`,
      [hashPart],
    );
    return rows.map((r) => r.reference);
  }

  /**
   * Index `put` (entries already indexed are left as they are: a cache entry's record never
   * changes) and forget `remove`, then choose again what is served for every hash part
   * touched, in slices of one transaction each. The memory front follows each commit.
   */
  async apply(put: readonly IndexedEntry[], remove: readonly string[]): Promise<void> {
    const fresh = [...new Map(put.map((e) => [e.entry, e])).values()];
    const gone = [...new Set(remove)];
    for (let i = 0; i < Math.max(fresh.length, gone.length); i += SLICE) {
      await this.applySlice(fresh.slice(i, i + SLICE), gone.slice(i, i + SLICE));
    }
  }

  private async applySlice(
    put: readonly IndexedEntry[],
    remove: readonly string[],
    alsoChoose: readonly string[] = [],
  ): Promise<void> {
    const chosen = await inTransaction(this.pool, async (client) => {
      // Derived state: a commit lost in a crash is found missing and redone at the next open
      // (the queue's names are diffed against the rows), so no need to wait for the flush.
      await client.query("set local synchronous_commit = off");
      // Entries already indexed are left as they are (a cache entry's record never changes):
      // only the rows inserted or deleted here touch a hash part.
      const touched = new Set(alsoChoose);
      let added = 0;
      let removed = 0;
      if (remove.length > 0) {
        const { rows } = await client.query<{ hash_part: string }>(
          "delete from cache_entries where entry = any($1) returning hash_part",
          [remove],
        );
        for (const r of rows) touched.add(r.hash_part);
        removed = rows.length;
      }
      if (put.length > 0) {
        const inserted = await client.query<{ hash_part: string }>(
          `insert into cache_entries
             (entry, hash_part, url, trust, origin, hlc, narinfo, listing, uploaded_by, files,
              refs)
           select e, h, u, t, o, c, n, l, b, f::jsonb, string_to_array(rs, ' ')
             from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::bytea[], $8::bytea[], $9::text[], $10::text[],
                         $11::text[])
                  as r(e, h, u, t, o, c, n, l, b, f, rs)
           on conflict (entry) do nothing
           returning hash_part`,
          [
            put.map((e) => e.entry),
            put.map((e) => e.hashPart),
            put.map((e) => e.url),
            put.map((e) => e.trust),
            put.map((e) => e.origin),
            put.map((e) => e.stamp.toString()),
            put.map((e) => e.narinfo),
            put.map((e) => e.listing ?? null),
            put.map((e) => e.by),
            put.map((e) => (e.files === undefined ? null : JSON.stringify(e.files))),
            // Hash parts are nix32: joined by spaces, split again in the statement.
            put.map((e) => referencesOf(e).join(" ")),
          ],
        );
        for (const r of inserted.rows) touched.add(r.hash_part);
        added = inserted.rows.length;
      }
      const hashParts = [...touched];
      const { rows } = await client.query<CandidateRow>(
        `select entry, hash_part, url, files, trust, origin, hlc, narinfo from cache_entries
          where hash_part = any($1)`,
        [hashParts],
      );
      type Candidate = ServedCandidate & NarHolding & { narinfo: Buffer };
      const candidates = new Map<string, Candidate[]>();
      for (const r of rows) {
        const list = candidates.get(r.hash_part) ?? [];
        list.push({
          entry: r.entry,
          origin: r.origin,
          stamp: BigInt(r.hlc),
          trust: r.trust,
          narinfo: r.narinfo,
          url: r.url,
          ...(r.files === null ? {} : { files: r.files }),
        });
        candidates.set(r.hash_part, list);
      }
      const chosen = new Map<string, Buffer | undefined>();
      const bestEntry = new Map<string, string>();
      for (const h of hashParts) {
        const best = chooseServable(candidates.get(h) ?? []);
        chosen.set(h, best?.narinfo);
        if (best !== undefined) bestEntry.set(h, best.entry);
      }
      await client.query("delete from cache_served where hash_part = any($1)", [hashParts]);
      const served = hashParts.flatMap((h) => {
        const best = bestEntry.get(h);
        return best === undefined ? [] : [[h, best] as const];
      });
      if (served.length > 0) {
        await client.query(
          `insert into cache_served (hash_part, entry)
           select * from unnest($1::text[], $2::text[])`,
          [served.map((s) => s[0]), served.map((s) => s[1])],
        );
      }
      return { chosen, added, removed };
    });
    this.count += chosen.added - chosen.removed;
    for (const [hashPart, narinfo] of chosen.chosen) {
      if (narinfo === undefined) this.front.delete(hashPart);
      else this.front.set(hashPart, narinfo);
    }
  }
}

/** The hash parts a narinfo references (none when it no longer parses). */
function referencesOf(e: IndexedEntry): string[] {
  try {
    return [...new Set(referenceHashParts(parseNarinfo(e.narinfo)))];
  } catch {
    return [];
  }
}
