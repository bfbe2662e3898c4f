import type pg from "pg";

/**
 * The cache GC's reachability walk, in SQL over the node's lookup index (`cache_entries`,
 * cache-index.ts). Live hash parts are the roots, every hash part with an entry stamped at or
 * after `cutoff` (uploads younger than the grace period), and, recursively, every hash part
 * an entry of a live hash part references (`cache_entries.refs`). A hash part is kept or
 * collected whole: every entry of a live hash part is kept (the served one and the other
 * candidates alike), so a GC never changes which narinfo a node serves for a live path.
 *
 * Garbage is every entry of a hash part that is not live, stamped before `cutoff`, whose nar
 * path no kept entry names (as its own nar or among the files accepted with it): a nar a kept
 * narinfo points at is never removed, even when an unreachable entry holds a copy of it.
 */

export interface GcWalkInput {
  /** Hash parts of the live (unexpired) roots. */
  readonly roots: readonly string[];
  /** Entries stamped at or after this (upload-stamp.ts) are young: live, with their closures. */
  readonly cutoff: bigint;
}

export interface GcGarbage {
  readonly entry: string;
  readonly hashPart: string;
  readonly url: string;
  readonly stamp: bigint;
}

export interface GcWalk {
  /** Live hash parts that have entries here. */
  readonly liveHashParts: number;
  /** Entries kept (of live hash parts, or holding a nar a kept entry names). */
  readonly kept: number;
  /** Entries to remove, oldest first. */
  readonly garbage: readonly GcGarbage[];
  /** Live hash parts referenced but held by no entry here (a closure with a hole). */
  readonly missing: readonly string[];
}

const LIVE = `
  with recursive live(hash_part) as (
    select h from unnest($1::text[]) as h
    union
    select hash_part from cache_entries where hlc >= $2
    union
    select unnest(e.refs) from cache_entries e join live l on e.hash_part = l.hash_part
  ),
  kept as (
    select e.entry, e.url, e.files from cache_entries e
     where exists (select 1 from live l where l.hash_part = e.hash_part)
  ),
  kept_urls as (
    select url from kept
    union
    select jsonb_array_elements_text(files) from kept where files is not null
  )`;

/** Walk the graph as the index holds it now (one statement: one consistent snapshot). */
export async function walkCacheGraph(
  db: pg.Pool | pg.PoolClient,
  input: GcWalkInput,
): Promise<GcWalk> {
  const { rows } = await db.query<{
    kind: "garbage" | "missing" | "count";
    entry: string | null;
    hash_part: string | null;
    url: string | null;
    hlc: string | null;
    n: string | null;
  }>(
    `${LIVE}
     select 'garbage' as kind, e.entry, e.hash_part, e.url, e.hlc, null::bigint as n
       from cache_entries e
      where e.hlc < $2
        and not exists (select 1 from live l where l.hash_part = e.hash_part)
        and not exists (select 1 from kept_urls k where k.url = e.url)
     union all
     select 'missing', null, l.hash_part, null, null, null from live l
      where not exists (select 1 from cache_entries e where e.hash_part = l.hash_part)
        and not (l.hash_part = any($1::text[]))
     union all
     select 'count', 'live', null, null, null,
            (select count(*) from live l
              where exists (select 1 from cache_entries e where e.hash_part = l.hash_part))
     union all
     select 'count', 'all', null, null, null, (select count(*) from cache_entries)`,
    [input.roots, input.cutoff.toString()],
  );
  const garbage: GcGarbage[] = [];
  const missing: string[] = [];
  let liveHashParts = 0;
  let all = 0;
  for (const r of rows) {
    if (r.kind === "garbage") {
      garbage.push({
        entry: r.entry as string,
        hashPart: r.hash_part as string,
        url: r.url as string,
        stamp: BigInt(r.hlc as string),
      });
    } else if (r.kind === "missing") missing.push(r.hash_part as string);
    else if (r.entry === "live") liveHashParts = Number(r.n);
    else all = Number(r.n);
  }
  // Every entry that is not garbage is kept (young entries are live by construction).
  const kept = all - garbage.length;
  garbage.sort((a, b) =>
    a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : a.entry.localeCompare(b.entry),
  );
  missing.sort();
  return { liveHashParts, kept, garbage, missing };
}

/**
 * Which of `among` are live (roots, young entries, and everything they reference, as
 * `walkCacheGraph` counts them): the hash parts a node's acknowledgement of a condemnation
 * revives (gc-handshake.ts). A hash part no entry here holds is live when a live entry
 * references it.
 */
export async function liveAmong(
  db: pg.Pool | pg.PoolClient,
  input: GcWalkInput & { readonly among: readonly string[] },
): Promise<string[]> {
  if (input.among.length === 0) return [];
  const { rows } = await db.query<{ hash_part: string }>(
    `${LIVE}
     select h as hash_part from unnest($3::text[]) as h
      where exists (select 1 from live l where l.hash_part = h)
      order by 1`,
    [input.roots, input.cutoff.toString(), input.among],
  );
  return rows.map((r) => r.hash_part);
}
