/**
 * `npm run bench:cache-index`: the binary cache's lookup index (src/cache/cache-index.ts)
 * over N generated cache entries (bench/lib/http-fixture.ts, as bench:http writes them).
 *
 * - Rebuild: `SpoolCacheStore.open` on an empty index (every entry read from the spool and
 *   written to PostgreSQL), then reopen with the index in place (names diffed, the memory
 *   front loaded), with the process's RSS.
 * - Narinfo lookups, side by side in the same run: the memory front the request path uses
 *   (`store.narinfo`) against the one indexed PostgreSQL query it would otherwise make per
 *   request (cache_served ⋈ cache_entries by hash part), C concurrent loops for S seconds
 *   each, hits (random present hash parts) and misses (made up); prints lookups/s, p99 and
 *   the ratio memory/PostgreSQL.
 *
 * Options: --entries N (20000), --concurrency C (32), --seconds S (5), --out FILE
 * (bench/results/cache-index.json; "-" for none), --keep.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import pg from "pg";
import { SpoolCacheStore } from "../src/cache/spool-cache-store.js";
import { migrate } from "../src/db/migrate.js";
import { nodeCacheCodec } from "../src/node/cache-http/node-cache.js";
import { startEmbeddedPostgres } from "../src/node/postgres/embedded.js";
import { type NodeEntryMeta, nodeEntryCodec } from "../src/node/service/entry-meta.js";
import type { NodeSpool } from "../src/node/service/spool-service.js";
import { Spool, timeSortableNames } from "../src/spool/index.js";
import { distribution, sig3 } from "./lib/grpc-stats.js";
import { writeHttpFixture } from "./lib/http-fixture.js";
import { describeMachine } from "./lib/spool-machine.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    entries: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "32" },
    seconds: { type: "string", default: "5" },
    out: { type: "string", default: join(here, "results", "cache-index.json") },
    keep: { type: "boolean", default: false },
  },
});
const count = Number(args.entries);
const concurrency = Number(args.concurrency);
const seconds = Number(args.seconds);

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
/** RSS and JS heap in use after a full collection (MB). */
function memory() {
  gc();
  const m = process.memoryUsage();
  return { rss: sig3(m.rss / 2 ** 20), heap: sig3(m.heapUsed / 2 ** 20) };
}

/** `concurrency` loops calling `lookup` for `seconds`: lookups/s and latency (ms). */
async function drive(keys: () => string, lookup: (key: string) => Promise<unknown>) {
  const samples: number[] = [];
  const until = performance.now() + seconds * 1000;
  const loop = async () => {
    while (performance.now() < until) {
      const t = performance.now();
      await lookup(keys());
      samples.push(performance.now() - t);
    }
  };
  const t = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const d = distribution(samples);
  return {
    perSecond: sig3(samples.length / ((performance.now() - t) / 1000)),
    p50Ms: sig3(d.p50),
    p99Ms: sig3(d.p99),
  };
}

async function main(): Promise<void> {
  const load = loadavg();
  const dir = await mkdtemp(join(tmpdir(), "geospool-bench-cache-index-"));
  const machine = await describeMachine(dir, load[0] ?? 0);
  console.log(`load average at start: ${load.map((l) => l.toFixed(2)).join(" ")}`);
  const server = await startEmbeddedPostgres({ dataDir: join(dir, "pg") });
  const pool = new pg.Pool({ connectionString: server.url, max: 10 });
  pool.on("error", () => undefined); // idle clients cut when the server stops at the end
  try {
    await migrate(pool);
    const spool: NodeSpool = await Spool.load(
      join(dir, "spool"),
      { metadata: nodeEntryCodec, queues: ["cache"], nameGenerator: timeSortableNames("bench") },
      { createIfMissing: true },
    );
    let t = performance.now();
    const fixture = await writeHttpFixture({
      spool,
      queue: "cache",
      staticDir: join(dir, "static"),
      count,
      bigBytes: 1024,
      onProgress: (n) => process.stdout.write(`\r  written ${n}/${count}`),
    });
    console.log(`\nfixture: ${count} entries in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const open = () =>
      SpoolCacheStore.open<NodeEntryMeta, string>({
        spool,
        queue: "cache",
        codec: nodeCacheCodec(Date.now),
        info: { storeDir: "/nix/store", wantMassQuery: true, priority: 40 },
        origin: "bench",
        pool,
      });
    const before = memory();
    t = performance.now();
    await open(); // dropped: the next one is measured alone
    const rebuildSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    const store = await open();
    const reopenSeconds = (performance.now() - t) / 1000;
    const after = memory();
    console.log(
      `rebuild ${rebuildSeconds.toFixed(1)} s, reopen ${reopenSeconds.toFixed(2)} s; ` +
        `one store's index in memory: heap +${sig3(after.heap - before.heap)} MB, ` +
        `RSS ${before.rss} → ${after.rss} MB`,
    );

    const present = fixture.hashParts;
    const hit = () => present[Math.floor(Math.random() * present.length)] as string;
    const miss = () => `${hit().slice(0, 31)}${hit()[31] === "0" ? "1" : "0"}`;
    const viaPg = async (hashPart: string) =>
      (
        await pool.query(
          `select e.narinfo from cache_served s join cache_entries e using (entry)
            where s.hash_part = $1`,
          [hashPart],
        )
      ).rows[0];
    const viaMemory = async (hashPart: string) => store.narinfo(hashPart);
    const results: Record<string, Awaited<ReturnType<typeof drive>>> = {};
    for (const [kind, keys] of [
      ["hit", hit],
      ["miss", miss],
    ] as const) {
      results[`memory_${kind}`] = await drive(keys, viaMemory);
      results[`postgres_${kind}`] = await drive(keys, viaPg);
    }
    console.log("\n| lookup | memory front /s | PostgreSQL /s | memory/PG | memory p99 | PG p99 |");
    console.log("|---|---:|---:|---:|---:|---:|");
    for (const kind of ["hit", "miss"]) {
      const m = results[`memory_${kind}`]!;
      const p = results[`postgres_${kind}`]!;
      console.log(
        `| narinfo ${kind} | ${m.perSecond} | ${p.perSecond} | ${sig3(m.perSecond / p.perSecond)}× | ` +
          `${m.p99Ms} ms | ${p.p99Ms} ms |`,
      );
    }
    if (args.out !== "-") {
      const report = {
        bench: "cache-index",
        at: new Date().toISOString(),
        machine,
        settings: { entries: count, concurrency, seconds, pgPool: 10 },
        rebuildSeconds: sig3(rebuildSeconds),
        reopenSeconds: sig3(reopenSeconds),
        memoryMb: { before, after, indexHeap: sig3(after.heap - before.heap) },
        lookups: results,
        loadAvgAtEnd: loadavg()[0],
      };
      await writeFile(args.out, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`written ${args.out}`);
    }
  } finally {
    await pool.end();
    await server.stop();
    if (!args.keep) await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
