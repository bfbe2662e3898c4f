/**
 * `npm run bench:http`: one geospool node serving its binary cache (cache enabled, its own
 * PostgreSQL) holding N generated narinfos and one large nar, side by side in the same run
 * with nginx (Debian's, one worker) serving the same narinfos and nar as static files: the
 * floor. Measures narinfo GET hits and misses at C connections with wrk (random hash
 * parts), and whole-nar GETs with curl; runs alternate (node, node-off, nginx, nginx,
 * node-off, node, ...). `node-off` is the same node process with the cache's per-path
 * request counting (cache.analytics) switched off through its stdin: the cost of the
 * analytics, measured in the same run. Prints medians, the ratios node/nginx and
 * node/node-off, with the node's RSS (and its growth during the nar GETs). Merges its
 * figures into bench/results/http.json (other top-level sections kept). See
 * docs/benchmarks.md.
 *
 * Options: --narinfos N (100000), --nar-mib N (1024), --connections C (32), --seconds S
 * (10, per wrk run), --rounds N (3), --nar-gets N (3 per side), --sides
 * node,node-off,nginx,node-http (node-http: node:http alone, no cache: bench/lib/http-floor.ts),
 * --profile DIR (CPU profiles of the node over its narinfo runs; figures not written),
 * --heap-snapshot FILE (the node's heap after the narinfo runs, for Chrome DevTools),
 * --out FILE (bench/results/http.json; "-" for none), --keep (keep the temp dir),
 * --fixture DIR (write the data there once and keep it: a later run with the same
 * --narinfos and --nar-mib reuses it, node index and journal included, and starts at the
 * restarted node), --tsx (run the node's sources under tsx instead of the build),
 * --node-config JSON (top-level configuration sections for the node, e.g.
 * '{"monitor":{"checkEvery":"1h"}}', to take a background task out of a measurement),
 * --node-flags "FLAGS" (flags for the node process, e.g. V8's heap flags). The measured node
 * logs its memory every second (GEOSPOOL_BENCH_MEMORY_LOG): RSS over the whole run, in its
 * first 30 s and after 60 s, is printed and written (`nodeMemoryOverTime`).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startEmbeddedPostgres } from "../src/node/postgres/embedded.js";
import { stopStalePostgres } from "../src/node/postgres/stale.js";
import { nodeEntryCodec } from "../src/node/service/entry-meta.js";
import type { NodeSpool } from "../src/node/service/spool-service.js";
import { Spool, timeSortableNames } from "../src/spool/index.js";
import { processCpuMs } from "./lib/grpc-cpu.js";
import {
  buildNodeProcess,
  type NodeProcess,
  startNodeProcess,
  stopNodeProcess,
} from "./lib/grpc-node-launcher.js";
import { sig3 } from "./lib/grpc-stats.js";
import {
  fixtureHashParts,
  type HttpFixture,
  warmFile,
  warmNarinfos,
  writeHttpFixture,
} from "./lib/http-fixture.js";
import { type NodeHttpFloor, startNodeHttpFloor } from "./lib/http-floor.js";
import { curlGet, type NarGetResult, prepareWrk, runWrk, type WrkResult } from "./lib/http-load.js";
import { type Nginx, startNginx } from "./lib/http-nginx.js";
import { printHttpReport, type Side, summarizeHttp } from "./lib/http-report.js";
import { sourceVersion } from "./lib/source-version.js";
import { describeMachine } from "./lib/spool-machine.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    narinfos: { type: "string", default: "100000" },
    "nar-mib": { type: "string", default: "1024" },
    connections: { type: "string", default: "32" },
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    "nar-gets": { type: "string", default: "3" },
    sides: { type: "string", default: "node,node-off,nginx,node-http" },
    profile: { type: "string" },
    "heap-snapshot": { type: "string" },
    out: { type: "string", default: join(here, "results", "http.json") },
    keep: { type: "boolean", default: false },
    fixture: { type: "string" },
    tsx: { type: "boolean", default: false },
    "node-config": { type: "string", default: "{}" },
    "node-flags": { type: "string", default: "" },
  },
});
const count = Number(args.narinfos);
const bigBytes = Number(args["nar-mib"]) * 2 ** 20;
const connections = Number(args.connections);
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const narGets = Number(args["nar-gets"]);
const sides = args.sides.split(",") as Side[];
for (const side of sides) {
  if (!["node", "node-off", "nginx", "node-http"].includes(side)) {
    throw new Error(`--sides: unknown ${side}`);
  }
}
const QUEUES = ["inbox", "outbox", "dead", "cache"];

/** Resident set size of a process (MB), from /proc. */
async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** The largest RSS of `pid` while `work` runs (sampled every 20 ms), and before it. */
async function peakRssDuring<T>(pid: number, work: () => Promise<T>) {
  const before = await rssMb(pid);
  let peak = before;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await rssMb(pid));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    const result = await work();
    return { result, before, peak: Math.max(peak, await rssMb(pid)) };
  } finally {
    sampling = false;
    await sampler;
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const load = loadavg();
  const fixtureDir = args.fixture === undefined ? undefined : resolve(args.fixture);
  const dir = fixtureDir ?? (await mkdtemp(join(tmpdir(), "geospool-bench-http-")));
  await mkdir(dir, { recursive: true });
  const machine = await describeMachine(dir, load[0] ?? 0);
  console.log(`load average at start: ${load.map((l) => l.toFixed(2)).join(" ")}`);
  const profileDir = args.profile === undefined ? undefined : resolve(args.profile);
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const built = args.tsx ? undefined : await buildNodeProcess();
  const fixtureFile = join(dir, "fixture.json");
  const kept = await readFile(fixtureFile, "utf8")
    .then(
      (t) => JSON.parse(t) as { count: number; bigBytes: number; bigNar: HttpFixture["bigNar"] },
    )
    .catch(() => undefined);
  const reuse = kept?.count === count && kept.bigBytes === bigBytes;
  if (fixtureDir !== undefined && !reuse) {
    await rm(fixtureDir, { recursive: true, force: true });
    await mkdir(fixtureDir, { recursive: true });
  }
  // A run stopped hard may have left its PostgreSQL running over the kept data.
  if (reuse) await stopStalePostgres(join(dir, "pg"));
  const pgServer = await startEmbeddedPostgres({ dataDir: join(dir, "pg") });
  let node: NodeProcess | undefined;
  let nginx: Nginx | undefined;
  let floor: NodeHttpFloor | undefined;
  let failed = true;
  try {
    const spoolDir = join(dir, "spool");
    const staticDir = join(dir, "static");
    const startNode = () =>
      startNodeProcess(
        spoolDir,
        pgServer.url,
        undefined,
        {
          spool: { dir: spoolDir, queues: QUEUES },
          cache: { enabled: true, queue: "cache" },
          ...(JSON.parse(args["node-config"]) as Record<string, unknown>),
        },
        ["--expose-gc", ...args["node-flags"].split(" ").filter((f) => f !== "")],
        built,
      );
    let fixture: HttpFixture;
    let fixtureSeconds: number | undefined;
    let nodeStartSeconds: number | undefined;
    let journalSeconds: number | undefined;
    let firstStartRssMb: number | undefined;
    if (reuse && kept !== undefined) {
      fixture = { hashParts: fixtureHashParts(count), bigNar: kept.bigNar };
      console.log(`fixture: reusing ${dir} (${count} narinfos, index and journal built)`);
    } else {
      const spool: NodeSpool = await Spool.load(
        spoolDir,
        { metadata: nodeEntryCodec, queues: QUEUES, nameGenerator: timeSortableNames("bench") },
        { createIfMissing: true },
      );
      let t = performance.now();
      fixture = await writeHttpFixture({
        spool,
        queue: "cache",
        staticDir,
        count,
        bigBytes,
        onProgress: (n) => process.stdout.write(`\r  written ${n}/${count}`),
      });
      fixtureSeconds = (performance.now() - t) / 1000;
      console.log(
        `\nfixture: ${count} narinfos + ${args["nar-mib"]} MiB nar in ${fixtureSeconds.toFixed(1)} s`,
      );

      t = performance.now();
      node = await startNode();
      nodeStartSeconds = (performance.now() - t) / 1000;
      // Entries written past the node's service have no journal rows yet: the replicator
      // finds and journals them all after start. Measure once it has (a node's steady state).
      t = performance.now();
      const settled = node.nextLine("SETTLED");
      node.child.stdin?.write(`settle ${count + 1}\n`);
      const { recordedEntries } = JSON.parse(await settled) as { recordedEntries: number };
      journalSeconds = (performance.now() - t) / 1000;
      firstStartRssMb = await rssMb(node.pid);
      console.log(
        `node ready in ${nodeStartSeconds.toFixed(1)} s; journaled ${recordedEntries} entries in ${journalSeconds.toFixed(1)} s; RSS ${firstStartRssMb.toFixed(0)} MB`,
      );
      // That start built the index and the journal of every entry at once; a node
      // restarted over them (index rows and journal present) is what serves day to day:
      // measure that one.
      await stopNodeProcess(node.child);
      node = undefined;
      if (fixtureDir !== undefined) {
        await writeFile(fixtureFile, JSON.stringify({ count, bigBytes, bigNar: fixture.bigNar }));
      }
    }
    // The measured node logs its memory every second, for RSS over the whole run.
    const memoryLog = join(dir, "node-memory.jsonl");
    await rm(memoryLog, { force: true });
    process.env.GEOSPOOL_BENCH_MEMORY_LOG = memoryLog;
    const t = performance.now();
    node = await startNode();
    delete process.env.GEOSPOOL_BENCH_MEMORY_LOG;
    const restartSeconds = (performance.now() - t) / 1000;
    const readyRssMb = await rssMb(node.pid);
    console.log(
      `node restarted in ${restartSeconds.toFixed(1)} s (RSS ${readyRssMb.toFixed(0)} MB)`,
    );
    nginx = await startNginx(join(dir, "nginx"), staticDir);
    await prepareWrk(dir, fixture.hashParts);
    floor = await startNodeHttpFloor(
      dir,
      join(dir, "hashparts.txt"),
      join(staticDir, `${fixture.hashParts[0]}.narinfo`),
    );
    const ports: Record<Side, number> = {
      node: node.httpPort,
      "node-off": node.httpPort,
      nginx: nginx.port,
      "node-http": floor.port,
    };
    const nodeProc = node;
    const floorPid = floor.pid;
    const pidOf = (side: Side) =>
      side === "nginx"
        ? (nginx as Nginx).workerPid
        : side === "node-http"
          ? floorPid
          : nodeProc.pid;
    /** node: per-path request counting on (the default); node-off: off; others: nothing. */
    const prepare = async (side: Side) => {
      if (side === "nginx" || side === "node-http") return;
      const told = nodeProc.nextLine("ANALYTICS");
      nodeProc.child.stdin?.write(`analytics ${side === "node" ? "on" : "off"}\n`);
      await told;
    };

    // Warm-up: JIT on the node, page cache and open-file cache on nginx (not recorded);
    // nginx's files are read again before each of its hit runs.
    await warmNarinfos(staticDir, fixture.hashParts);
    for (const side of sides) {
      await prepare(side);
      await runWrk({ dir, port: ports[side], mode: "hit", connections, seconds: 2, seed: 7 });
    }
    const narinfoRuns: Array<
      WrkResult & {
        side: Side;
        mode: "hit" | "miss";
        round: number;
        rssMb: number;
        cpuUsPerReq: number;
      }
    > = [];
    for (const mode of ["hit", "miss"] as const) {
      if (profileDir && sides.includes("node")) nodeProc.child.stdin?.write("profile-start\n");
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? sides : [...sides].reverse();
        for (const side of order) {
          await prepare(side);
          if (side === "nginx" && mode === "hit") await warmNarinfos(staticDir, fixture.hashParts);
          const cpuBefore = await processCpuMs(pidOf(side));
          const r = await runWrk({
            dir,
            port: ports[side],
            mode,
            connections,
            seconds,
            seed: 1000 + round,
          });
          // CPU time per request: far less moved by other processes than req/s on a busy machine.
          const cpuUsPerReq = sig3(
            (((await processCpuMs(pidOf(side))) - cpuBefore) * 1000) / Math.max(1, r.requests),
          );
          const rss = await rssMb(pidOf(side));
          narinfoRuns.push({ ...r, side, mode, round, rssMb: rss, cpuUsPerReq });
          console.log(
            `  ${mode.padEnd(4)} r${round} ${side.padEnd(8)} ${r.reqPerSec.toFixed(0).padStart(7)} req/s  p99 ${r.p99Ms.toFixed(2)} ms  CPU ${cpuUsPerReq} us/req  RSS ${rss.toFixed(0)} MB  non-2xx ${r.statusErrors}/${r.requests}`,
          );
        }
      }
      if (profileDir && sides.includes("node")) {
        const file = join(profileDir, `node-narinfo-${mode}.cpuprofile`);
        const written = nodeProc.nextLine("PROFILED");
        nodeProc.child.stdin?.write(`profile-stop ${file}\n`);
        await written;
      }
    }

    // The node's memory after a full GC: what the index and the rest hold, not garbage.
    const memoryAsked = nodeProc.nextLine("MEMORY");
    nodeProc.child.stdin?.write(
      `memory${args["heap-snapshot"] ? ` ${resolve(args["heap-snapshot"])}` : ""}\n`,
    );
    const live = JSON.parse(await memoryAsked) as Record<string, number> & {
      beforeGc: Record<string, number>;
      mapped: Record<string, number>;
    };
    const inMb = (m: Record<string, number>) =>
      Object.fromEntries(
        ["rss", "heapTotal", "heapUsed", "external", "arrayBuffers"].map((k) => [
          k,
          sig3((m[k] ?? 0) / 2 ** 20),
        ]),
      );
    const liveMb = inMb(live);
    const servingMb = inMb(live.beforeGc);
    console.log(`node memory while serving (MB): ${JSON.stringify(servingMb)}`);
    console.log(`node memory after a full GC (MB): ${JSON.stringify(liveMb)}`);
    const mappedMb = Object.fromEntries(
      Object.entries(live.mapped).map(([k, v]) => [k, sig3(v / 2 ** 20)]),
    );
    console.log(`node resident by mapping after GC (MB): ${JSON.stringify(mappedMb)}`);

    await warmFile(join(staticDir, fixture.bigNar.path));
    const narRuns: Array<
      NarGetResult & { side: Side; round: number; rssBeforeMb: number; rssPeakMb: number }
    > = [];
    // node-http serves narinfos only.
    const narSides = sides.filter((s) => s !== "node-http");
    for (let round = 0; round < narGets; round++) {
      const order = round % 2 === 0 ? narSides : [...narSides].reverse();
      for (const side of order) {
        await prepare(side);
        const pid = pidOf(side);
        const url = `http://127.0.0.1:${ports[side]}${fixture.bigNar.path}`;
        const { result, before, peak } = await peakRssDuring(pid, () => curlGet(url));
        if (result.status !== 200 || result.bytes !== fixture.bigNar.size) {
          throw new Error(`${side}: nar GET got ${result.status}, ${result.bytes} bytes`);
        }
        narRuns.push({ ...result, side, round, rssBeforeMb: before, rssPeakMb: peak });
        console.log(
          `  nar  r${round} ${side.padEnd(8)} ${result.mbPerSec.toFixed(0).padStart(7)} MB/s  RSS ${before.toFixed(0)} -> ${peak.toFixed(0)} MB`,
        );
      }
    }

    // What the node counted (Prometheus totals; unkeyed: past cache.analytics.maxKeys).
    const metricsText = await (await fetch(`http://127.0.0.1:${nodeProc.httpPort}/metrics`)).text();
    const counted = Object.fromEntries(
      [
        "geospool_cache_requests_total",
        "geospool_cache_nar_bytes_total",
        "geospool_cache_requests_unkeyed_total",
      ].map((name) => [
        name,
        metricsText
          .split("\n")
          .filter((l) => l.startsWith(name))
          .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0),
      ]),
    );
    console.log(`node counted: ${JSON.stringify(counted)}`);
    const summary = summarizeHttp({ narinfoRuns, narRuns, sides });
    printHttpReport(summary);
    const overTime = memoryOverTime(await readFile(memoryLog, "utf8").catch(() => ""));
    console.log(
      `node RSS over the run (MB): max ${overTime.rssMaxMb}, first 30 s max ${overTime.first30sMaxMb}, after 60 s max ${overTime.after60sMaxMb} median ${overTime.after60sMedianMb}; heap total max ${overTime.heapTotalMaxMb}`,
    );
    const record = {
      date: new Date().toISOString(),
      ...(await sourceVersion()),
      machine: { ...machine, loadAvgAtStart: load.map(sig3) },
      settings: {
        narinfos: count,
        narBytes: bigBytes,
        connections,
        secondsPerRun: seconds,
        rounds,
        narGets,
        client: "wrk 4.1 (-t1, Lua: random hash part per request), curl for the nar",
        node: "startNode, default configuration + cache.enabled, its own PostgreSQL; one process",
        nginx: "nginx 1.22 (Debian), worker_processes 1, sendfile on, access_log off",
        analytics:
          "node: cache.analytics as configured by default (per-path counts, hour buckets, flushed every 1 min, maxKeys 50000); node-off: the same process with per-path counting switched off (Prometheus totals still counted)",
        nodeBuild: built === undefined ? "sources under tsx" : "dist/ (npm run build), node",
        fixtureReused: reuse,
        ...(fixtureSeconds === undefined
          ? {}
          : {
              fixtureSeconds: sig3(fixtureSeconds),
              nodeStartSeconds: sig3(nodeStartSeconds ?? 0),
              journalSeconds: sig3(journalSeconds ?? 0),
              firstStartRssMb: sig3(firstStartRssMb ?? 0),
            }),
        restartSeconds: sig3(restartSeconds),
        readyRssMb: sig3(readyRssMb),
      },
      ...summary,
      nodeMemoryOverTime: overTime,
      nodeMemoryServingMb: servingMb,
      nodeMemoryAfterGcMb: liveMb,
      nodeResidentByMappingMb: mappedMb,
      nodeCounted: counted,
      runs: { narinfo: narinfoRuns, nar: narRuns },
      durationSeconds: Math.round((performance.now() - started) / 1000),
    };
    if (args.out !== "-" && !profileDir) {
      await mkdir(dirname(args.out), { recursive: true });
      // Merged: top-level sections this run does not write are kept.
      const previous = await readFile(args.out, "utf8")
        .then((t) => JSON.parse(t) as Record<string, unknown>)
        .catch(() => ({}));
      await writeFile(args.out, `${JSON.stringify({ ...previous, ...record }, null, 2)}\n`);
      console.log(`wrote ${args.out}`);
    }
    failed = false;
  } finally {
    await floor?.stop();
    await nginx?.stop();
    if (node) await stopNodeProcess(node.child);
    await pgServer.stop();
    if (fixtureDir !== undefined) console.log(`fixture kept in ${dir}`);
    else if (!args.keep && !failed) await rm(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
}

/**
 * The node's memory log (one `process.memoryUsage()` a second from READY) summed up: RSS
 * max over the whole run, in its first 30 s and after 60 s, and the samples every 5 s
 * (`[seconds, rss, heapTotal, heapUsed]`, MB).
 */
function memoryOverTime(log: string) {
  const mb = (b: number) => sig3(b / 2 ** 20);
  const samples = log
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { t: number; rss: number; heapTotal: number; heapUsed: number });
  const rss = (from: number, to: number) =>
    samples.filter((s) => s.t >= from && s.t < to).map((s) => s.rss);
  const max = (xs: number[]) => (xs.length === 0 ? 0 : mb(Math.max(...xs)));
  const later = rss(60_000, Infinity).sort((a, b) => a - b);
  return {
    seconds: Math.round((samples.at(-1)?.t ?? 0) / 1000),
    rssMaxMb: max(rss(0, Infinity)),
    first30sMaxMb: max(rss(0, 30_000)),
    after60sMaxMb: max(later),
    after60sMedianMb: later.length === 0 ? 0 : mb(later[Math.floor(later.length / 2)] ?? 0),
    heapTotalMaxMb: max(samples.map((s) => s.heapTotal)),
    every5s: samples
      .filter((_, i) => i % 5 === 0)
      .map((s) => [Math.round(s.t / 1000), mb(s.rss), mb(s.heapTotal), mb(s.heapUsed)]),
  };
}

await main();
