import type pg from "pg";
import { inTransaction } from "../db/pg-session.js";
import { parseNarinfo, referenceHashParts } from "./narinfo.js";
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
 * The memory front holds per hash part the served entry and its narinfo bytes, and per nar
 * path the entries holding it: a narinfo hit or miss and a nar lookup touch no database.
 * It is loaded from the tables at `open` and follows each committed `apply`, so it is never
 * ahead of PostgreSQL. One writer per index: the caller serialises `apply`.
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

interface Served {
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

export class CacheIndex {
  private readonly served = new Map<string, Served>();
  /** Entry → its nar path, for every indexed entry. */
  private readonly entries = new Map<string, string>();
  private readonly byNar = new Map<string, string[]>();

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

  private async load(): Promise<void> {
    const entries = await this.pool.query<{ entry: string; url: string }>(
      "select entry, url from cache_entries",
    );
    for (const r of entries.rows) this.addNar(r.entry, r.url);
    const served = await this.pool.query<{ hash_part: string; entry: string; narinfo: Buffer }>(
      `select s.hash_part, s.entry, e.narinfo
         from cache_served s join cache_entries e using (entry)`,
    );
    for (const r of served.rows)
      this.served.set(r.hash_part, { entry: r.entry, narinfo: r.narinfo });
  }

  /** Whether `entry` is indexed. */
  has(entry: string): boolean {
    return this.entries.has(entry);
  }

  /** Every indexed entry's name. */
  names(): IterableIterator<string> {
    return this.entries.keys();
  }

  get size(): number {
    return this.entries.size;
  }

  /** The entry served for `hashPart` and its narinfo's bytes (memory only). */
  servedOf(hashPart: string): Served | undefined {
    return this.served.get(hashPart);
  }

  /** The entries holding the nar at `url` (memory only). */
  narEntries(url: string): readonly string[] {
    return this.byNar.get(url) ?? [];
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
    const fresh = [...new Map(put.map((e) => [e.entry, e])).values()].filter(
      (e) => !this.entries.has(e.entry),
    );
    const gone = remove.filter((e) => this.entries.has(e));
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
      const touched = new Set([...put.map((e) => e.hashPart), ...alsoChoose]);
      if (remove.length > 0) {
        const { rows } = await client.query<{ hash_part: string }>(
          "delete from cache_entries where entry = any($1) returning hash_part",
          [remove],
        );
        for (const r of rows) touched.add(r.hash_part);
      }
      if (put.length > 0) {
        await client.query(
          `insert into cache_entries
             (entry, hash_part, url, trust, origin, hlc, narinfo, listing, uploaded_by, files,
              refs)
           select e, h, u, t, o, c, n, l, b, f::jsonb, string_to_array(rs, ' ')
             from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::bytea[], $8::bytea[], $9::text[], $10::text[],
                         $11::text[])
                  as r(e, h, u, t, o, c, n, l, b, f, rs)
           on conflict (entry) do nothing`,
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
      const chosen = new Map<string, Served | undefined>();
      for (const h of hashParts) {
        const best = chooseServable(candidates.get(h) ?? []);
        chosen.set(h, best && { entry: best.entry, narinfo: best.narinfo });
      }
      await client.query("delete from cache_served where hash_part = any($1)", [hashParts]);
      const served = [...chosen].filter((c): c is [string, Served] => c[1] !== undefined);
      if (served.length > 0) {
        await client.query(
          `insert into cache_served (hash_part, entry)
           select * from unnest($1::text[], $2::text[])`,
          [served.map((s) => s[0]), served.map((s) => s[1].entry)],
        );
      }
      return chosen;
    });
    for (const name of remove) this.dropNar(name);
    for (const e of put) this.addNar(e.entry, e.url);
    for (const [hashPart, s] of chosen) {
      if (s === undefined) this.served.delete(hashPart);
      else this.served.set(hashPart, s);
    }
  }

  private addNar(entry: string, url: string): void {
    if (this.entries.has(entry)) return;
    this.entries.set(entry, url);
    const holders = this.byNar.get(url);
    if (holders === undefined) this.byNar.set(url, [entry]);
    else holders.push(entry);
  }

  private dropNar(entry: string): void {
    const url = this.entries.get(entry);
    if (url === undefined) return;
    this.entries.delete(entry);
    const holders = (this.byNar.get(url) ?? []).filter((e) => e !== entry);
    if (holders.length === 0) this.byNar.delete(url);
    else this.byNar.set(url, holders);
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
