/**
 * `npm run bench:cache-gc`: the cache GC's reachability walk (src/cache/gc-walk.ts) over N
 * generated index rows shaped like closures (each path references up to 5 paths uploaded
 * before it), side by side in the same run with the baseline a walk in SQL replaces: load
 * every row's hash part and references into the process and walk the graph in memory
 * (a breadth-first search from the same roots and young entries). Prints each one's time,
 * median of R runs, and the ratio SQL/in-process.
 *
 * Options: --entries N (100000), --roots-percent P (1), --young-percent Y (1), --runs R (5),
 * --out FILE (bench/results/cache-gc.json; "-" for none).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { walkCacheGraph } from "../src/cache/gc-walk.js";
import { migrate } from "../src/db/migrate.js";
import { startEmbeddedPostgres } from "../src/node/postgres/embedded.js";
import { sig3 } from "./lib/grpc-stats.js";
import { describeMachine } from "./lib/spool-machine.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    entries: { type: "string", default: "100000" },
    "roots-percent": { type: "string", default: "1" },
    "young-percent": { type: "string", default: "1" },
    runs: { type: "string", default: "5" },
    out: { type: "string", default: join(here, "results", "cache-gc.json") },
  },
});
const count = Number(args.entries);
const runs = Number(args.runs);
const CUTOFF = 1_000_000;

/** A deterministic generator (the same graph in every run). */
function random(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

const hashPart = (i: number) => `h${i.toString(36).padStart(31, "0")}`;

async function fill(pool: pg.Pool) {
  const rnd = random(42);
  const roots: string[] = [];
  const SLICE = 5000;
  for (let at = 0; at < count; at += SLICE) {
    const rows = { e: [] as string[], h: [] as string[], c: [] as number[], r: [] as string[] };
    for (let i = at; i < Math.min(count, at + SLICE); i++) {
      const refs = new Set<string>();
      const n = Math.floor(rnd() * 6);
      for (let k = 0; k < n && i > 0; k++) refs.add(hashPart(Math.floor(rnd() * i)));
      rows.e.push(`e${i}`);
      rows.h.push(hashPart(i));
      rows.c.push(rnd() * 100 < Number(args["young-percent"]) ? CUTOFF + 1 : CUTOFF - 1);
      rows.r.push([...refs].join(" "));
      if (rnd() * 100 < Number(args["roots-percent"])) roots.push(hashPart(i));
    }
    await pool.query(
      `insert into cache_entries (entry, hash_part, url, trust, origin, hlc, narinfo, uploaded_by, refs)
       select e, h, 'nar/' || e || '.nar.xz', 'trusted', 'bench', c, '', 'bench',
              coalesce(string_to_array(nullif(r, ''), ' '), '{}')
         from unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) as x(e, h, c, r)`,
      [rows.e, rows.h, rows.c, rows.r],
    );
  }
  await pool.query("analyze cache_entries");
  return roots;
}

/** The baseline: every row into the process, then a breadth-first walk in memory. */
async function walkInProcess(pool: pg.Pool, roots: readonly string[]) {
  const { rows } = await pool.query<{ hash_part: string; hlc: string; refs: string[] }>(
    "select hash_part, hlc, refs from cache_entries",
  );
  const refsOf = new Map<string, string[]>();
  const queue: string[] = [...roots];
  for (const r of rows) {
    const list = refsOf.get(r.hash_part);
    if (list === undefined) refsOf.set(r.hash_part, [...r.refs]);
    else list.push(...r.refs);
    if (Number(r.hlc) >= CUTOFF) queue.push(r.hash_part);
  }
  const live = new Set<string>();
  while (queue.length > 0) {
    const h = queue.pop() as string;
    if (live.has(h)) continue;
    live.add(h);
    for (const next of refsOf.get(h) ?? []) if (!live.has(next)) queue.push(next);
  }
  return rows.filter((r) => !live.has(r.hash_part)).length;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const load = loadavg();
  const dir = await mkdtemp(join(tmpdir(), "geospool-bench-cache-gc-"));
  const machine = await describeMachine(dir, load[0] ?? 0);
  console.log(`load average at start: ${load.map((l) => l.toFixed(2)).join(" ")}`);
  const server = await startEmbeddedPostgres({ dataDir: join(dir, "pg") });
  const pool = new pg.Pool({ connectionString: server.url, max: 4 });
  pool.on("error", () => undefined);
  try {
    await migrate(pool);
    const roots = await fill(pool);
    const sqlMs: number[] = [];
    const jsMs: number[] = [];
    let garbage = 0;
    let baselineGarbage = 0;
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      const w = await walkCacheGraph(pool, { roots, cutoff: BigInt(CUTOFF) });
      sqlMs.push(performance.now() - t);
      garbage = w.garbage.length;
      t = performance.now();
      baselineGarbage = await walkInProcess(pool, roots);
      jsMs.push(performance.now() - t);
    }
    if (garbage !== baselineGarbage) {
      throw new Error(`the walks disagree: ${garbage} vs ${baselineGarbage} garbage entries`);
    }
    const sql = sig3(median(sqlMs));
    const js = sig3(median(jsMs));
    console.log(
      `${count} entries, ${roots.length} roots: ${garbage} garbage\n` +
        `| walk | median of ${runs} |\n|---|---:|\n| SQL (recursive CTE) | ${sql} ms |\n` +
        `| rows loaded + walked in process | ${js} ms |\n| SQL/in-process | ${sig3(sql / js)}× |`,
    );
    if (args.out !== "-") {
      const report = {
        bench: "cache-gc",
        at: new Date().toISOString(),
        machine,
        settings: { entries: count, roots: roots.length, runs },
        garbage,
        sqlWalkMs: sql,
        inProcessWalkMs: js,
        ratio: sig3(sql / js),
        loadAvgAtEnd: loadavg()[0],
      };
      await writeFile(args.out, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`written ${args.out}`);
    }
  } finally {
    await pool.end();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
