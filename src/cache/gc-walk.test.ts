import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { migrate } from "../db/migrate.js";
import { walkCacheGraph } from "./gc-walk.js";

const shared = useSharedPostgres("gcwalk");
const pools: pg.Pool[] = [];
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.end();
});

async function database(): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 2 });
  pools.push(pool);
  await migrate(pool);
  return pool;
}

interface Row {
  entry: string;
  hashPart: string;
  hlc: number;
  refs?: string[];
  url?: string;
  files?: string[];
}

async function insert(pool: pg.Pool, rows: Row[]): Promise<void> {
  for (const r of rows) {
    await pool.query(
      `insert into cache_entries
         (entry, hash_part, url, trust, origin, hlc, narinfo, uploaded_by, refs, files)
       values ($1, $2, $3, 'trusted', 'n1', $4, '', 'test', $5, $6::jsonb)`,
      [
        r.entry,
        r.hashPart,
        r.url ?? `nar/${r.entry}.nar.xz`,
        r.hlc,
        r.refs ?? [],
        r.files === undefined ? null : JSON.stringify(r.files),
      ],
    );
  }
}

const names = (w: Awaited<ReturnType<typeof walkCacheGraph>>) => w.garbage.map((g) => g.entry);

describe("the cache GC walk", () => {
  it("keeps the closures of roots and of young entries, and collects the rest", async () => {
    const pool = await database();
    // a -> b -> c (a chain), d -> c, e alone, f young -> g, g -> h
    await insert(pool, [
      { entry: "ea", hashPart: "a", hlc: 10, refs: ["b"] },
      { entry: "eb", hashPart: "b", hlc: 10, refs: ["c", "b"] },
      { entry: "ec", hashPart: "c", hlc: 10 },
      { entry: "ed", hashPart: "d", hlc: 10, refs: ["c"] },
      { entry: "ee", hashPart: "e", hlc: 10 },
      { entry: "ef", hashPart: "f", hlc: 100, refs: ["g"] },
      { entry: "eg", hashPart: "g", hlc: 10, refs: ["h"] },
      { entry: "eh", hashPart: "h", hlc: 10 },
    ]);
    const w = await walkCacheGraph(pool, { roots: ["b"], cutoff: 50n });
    expect(names(w)).toEqual(["ea", "ed", "ee"]);
    expect(w.liveHashParts).toBe(5); // b, c, f, g, h
    expect(w.kept).toBe(5);
    expect(w.missing).toEqual([]);

    // No roots: b and c go too; the young f still keeps g and h.
    expect(names(await walkCacheGraph(pool, { roots: [], cutoff: 50n }))).toEqual([
      "ea",
      "eb",
      "ec",
      "ed",
      "ee",
    ]);
    // Everything young: nothing goes.
    expect(names(await walkCacheGraph(pool, { roots: [], cutoff: 10n }))).toEqual([]);
  });

  it("walks cycles and long chains", async () => {
    const pool = await database();
    const chain: Row[] = Array.from({ length: 500 }, (_, i) => ({
      entry: `e${String(i).padStart(3, "0")}`,
      hashPart: `h${i}`,
      hlc: 1,
      refs: [`h${(i + 1) % 500}`],
    }));
    await insert(pool, [...chain, { entry: "loose", hashPart: "x", hlc: 1, refs: ["h0"] }]);
    const w = await walkCacheGraph(pool, { roots: ["h250"], cutoff: 2n });
    expect(names(w)).toEqual(["loose"]);
    expect(w.kept).toBe(500);
  });

  it("keeps every entry of a live hash part, and the nars kept narinfos name", async () => {
    const pool = await database();
    await insert(pool, [
      // Two uploads of one path (xz and zstd): both kept while the path is live.
      { entry: "p-xz", hashPart: "p", hlc: 1, url: "nar/1.nar.xz", refs: ["q"] },
      { entry: "p-zst", hashPart: "p", hlc: 2, url: "nar/1.nar.zst" },
      // A Guix narinfo with two files, each its own entry.
      {
        entry: "q-gz",
        hashPart: "q",
        hlc: 1,
        url: "nar/gzip/q",
        files: ["nar/gzip/q", "nar/zstd/q"],
      },
      {
        entry: "q-zst",
        hashPart: "q",
        hlc: 1,
        url: "nar/zstd/q",
        files: ["nar/gzip/q", "nar/zstd/q"],
      },
      // Unreachable, but holding a copy of a nar a kept narinfo names: kept.
      { entry: "r", hashPart: "r", hlc: 1, url: "nar/zstd/q" },
      // Unreachable, same nar as another unreachable one: both go.
      { entry: "s1", hashPart: "s", hlc: 1, url: "nar/s.nar" },
      { entry: "s2", hashPart: "t", hlc: 1, url: "nar/s.nar" },
    ]);
    const w = await walkCacheGraph(pool, { roots: ["p"], cutoff: 5n });
    expect(names(w)).toEqual(["s1", "s2"]);
    expect(w.kept).toBe(5);
  });

  it("reports live references held by no entry, and ignores roots never uploaded", async () => {
    const pool = await database();
    await insert(pool, [{ entry: "a", hashPart: "a", hlc: 1, refs: ["gone"] }]);
    const w = await walkCacheGraph(pool, { roots: ["a", "never"], cutoff: 0n });
    expect(w.missing).toEqual(["gone"]);
    expect(w.garbage).toEqual([]);
    expect(w.liveHashParts).toBe(1);
  });
});
