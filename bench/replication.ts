/**
 * `npm run bench:replication` (`tsx bench/replication.ts`): replication across a local
 * 3-node cluster (A, B, C: three node processes, three embedded PostgreSQL servers with
 * fsync on, full mesh; replication-cluster.ts). From one run it prints and writes to
 * bench/results/replication.json:
 *
 * 1. the floor: a bare journal row inserted on A's PostgreSQL and seen in C's through the
 *    same subscriptions (replication-probe.ts), on the idle cluster;
 * 2. enqueue on A → dequeued on C latency at a sustained rate (200/s) for `--duration`,
 *    measured by waiting client Dequeues on C (each entry is then removed), with probe rows
 *    interleaved so the floor is measured under the same load; the per-step breakdown from
 *    the nodes' traces (replication-trace.ts);
 * 3. sustained replicated throughput: an unthrottled burst of entries enqueued on A by 32
 *    clients, until C holds them all;
 * 4. catch-up: C stopped (node process and its PostgreSQL server), 10,000 entries enqueued
 *    on A, C started again, until C's queue holds all 10,000;
 * and PASS/MISS for the targets (p50 within 10 ms of the floor, p99 < 100 ms, catch-up
 * < 10 s, CPU per replicated entry <= 5 ms) with the ratios to the floor. See
 * docs/benchmarks.md.
 *
 * Options: --rate N (200/s), --warmup MS (3000), --duration MS (25000), --consumers N (4),
 * --probe-rate N (20/s, during the sustained run), --idle-probes N (100), --poll-ms N (1),
 * --burst N (3000), --burst-concurrency N (32), --catchup N (10000), --catchup-concurrency N
 * (32), --catchup-stop node|daemon (node: process and PostgreSQL; daemon: process only),
 * --sections floor,sustained,burst,catchup, --out FILE|- (bench/results/replication.json),
 * --profile DIR (CPU profiles of A and C over the sustained window; no JSON written),
 * --subscription-synchronous-commit VALUE (experiment: ALTER SUBSCRIPTION ... SET
 * (synchronous_commit = VALUE) on every node first; no JSON written unless --out is given),
 * --batch-interval DURATION (every node's replication.batchInterval, e.g. 0 or 10ms; default
 * the config's), --keep (keep the state directory).
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import pg from "pg";
import { GeospoolClient } from "../src/node/client/index.js";
import { metadataBytes } from "./lib/grpc-payload.js";
import { sourceVersion } from "./lib/source-version.js";
import { describeMachine, fileCreateLine } from "./lib/spool-machine.js";
import { type BenchCluster, startBenchCluster } from "./replication-cluster.js";
import { type CpuUsage, countAsBench, cpuCores, cpuSnapshot, cpuUsage } from "./replication-cpu.js";
import { enqueueMany, runProbes, runSustained } from "./replication-load.js";
import { JournalWatcher, ProbeWriter } from "./replication-probe.js";
import { batchStats, dist, probeDists, rounded, sig } from "./replication-report.js";
import { A, B, C, printCpu, printDist, sustainedSection, trace } from "./replication-sustained.js";
import { now } from "./replication-trace.js";

const here = dirname(fileURLToPath(import.meta.url));
const DEFAULT_OUT = join(here, "results", "replication.json");

const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "200" },
    warmup: { type: "string", default: "3000" },
    duration: { type: "string", default: "25000" },
    consumers: { type: "string", default: "4" },
    "probe-rate": { type: "string", default: "20" },
    "low-rate": { type: "string", default: "10" },
    "low-duration": { type: "string", default: "15000" },
    "fetch-concurrency": { type: "string" },
    "batch-interval": { type: "string" },
    "idle-probes": { type: "string", default: "100" },
    "poll-ms": { type: "string", default: "1" },
    burst: { type: "string", default: "3000" },
    "burst-concurrency": { type: "string", default: "32" },
    catchup: { type: "string", default: "10000" },
    "catchup-concurrency": { type: "string", default: "32" },
    "catchup-stop": { type: "string", default: "node" },
    sections: { type: "string", default: "floor,sustained,burst,catchup" },
    out: { type: "string" },
    profile: { type: "string" },
    "subscription-synchronous-commit": { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const num = (k: keyof typeof args) => Number(args[k]);
const sections = new Set(String(args.sections).split(","));
const subSync = args["subscription-synchronous-commit"];
const fetchConcurrency = args["fetch-concurrency"];
const batchInterval = args["batch-interval"];
const experiment =
  subSync !== undefined || fetchConcurrency !== undefined || batchInterval !== undefined;
const out = args.out ?? (experiment || args.profile !== undefined ? "-" : DEFAULT_OUT);
const catchupStop = args["catchup-stop"] === "daemon" ? "daemon" : "node";

const IDS = ["node-a", "node-b", "node-c"];
const QUEUES = ["inbox", "burst", "catchup", "dead"];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function uptimeText(): Promise<string> {
  try {
    return (await promisify(execFile)("uptime")).stdout.trim();
  } catch {
    return `load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(", ")}`;
  }
}

/** The commit measured, and whether src/ differs from it (others work in this checkout). */

/** The sections this bench writes; a section not run this time is dropped from the file. */
const OWN_SECTIONS = ["floorIdle", "lowRate", "sustained", "burst", "catchup"];

/**
 * What `file` holds, less this bench's own sections: the file is merged into, not
 * rewritten, so sections other benches write (`bulk`) survive; a section of ours not run
 * this time goes rather than stand under this run's commit and date.
 */
async function ownSectionsDropped(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
  const old = JSON.parse(text) as unknown;
  if (typeof old !== "object" || old === null || Array.isArray(old)) {
    throw new Error(`${file} does not hold a JSON object; not overwriting it`);
  }
  const kept = { ...(old as Record<string, unknown>) };
  for (const k of OWN_SECTIONS) delete kept[k];
  return kept;
}

async function countEntries(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith(".")).length;
  } catch {
    return 0;
  }
}

/** Poll `f` every `everyMs` until it is true; the time it first was, or throw. */
async function until(what: string, f: () => Promise<boolean>, timeoutMs: number, everyMs = 100) {
  const end = now() + timeoutMs;
  for (;;) {
    if (await f()) return now();
    if (now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function status(cluster: BenchCluster, i: number): Promise<Record<string, unknown>> {
  return JSON.parse(await cluster.node(i).ask("status", "STATUS")) as Record<string, unknown>;
}

/**
 * Wait until every replicator has nothing dirty, in progress or unacknowledged, twice in a
 * row half a second apart: the previous section's work (each entry's checkout and remove
 * rows travelling back to A and B) must not run into the next section's measurement.
 */
async function settle(cluster: BenchCluster): Promise<void> {
  const t0 = now();
  let quiet = 0;
  await until(
    "every replicator idle",
    async () => {
      const s = await Promise.all([A, B, C].map((i) => status(cluster, i)));
      quiet = s.every((x) => x.dirty === 0 && x.unacknowledgedCommits === 0) ? quiet + 1 : 0;
      return quiet >= 2;
    },
    600_000,
    500,
  );
  const waited = now() - t0;
  if (waited > 2000) console.log(`(waited ${sig(waited / 1000)} s for the replicators to settle)`);
}

async function setSubscriptionSyncCommit(cluster: BenchCluster, value: string): Promise<void> {
  for (let i = 0; i < IDS.length; i++) {
    const c = new pg.Client({ connectionString: cluster.postgresUrl(i) });
    await c.connect();
    try {
      const subs = await c.query<{ subname: string }>("select subname from pg_subscription");
      for (const s of subs.rows) {
        await c.query(
          `alter subscription "${s.subname}" set (synchronous_commit = '${value.replace(/'/g, "")}')`,
        );
      }
    } finally {
      await c.end();
    }
  }
}

async function main(): Promise<void> {
  const started = now();
  const dir = await mkdtemp(join(tmpdir(), "geospool-bench-repl-"));
  // A file that cannot be merged into fails now, not after the run.
  if (out !== "-") await ownSectionsDropped(out);
  const uptimeStart = await uptimeText();
  const source = await sourceVersion();
  const machine = await describeMachine(dir, loadavg()[0] ?? 0);
  const cores = await cpuCores();
  console.log(`machine: ${uptimeStart}`);
  console.log(
    `source: ${source.commit}${source.srcModified.length ? ` + uncommitted changes in ${source.srcModified.join(", ")}` : ""}`,
  );
  console.log(`state in ${dir}`);
  console.log(fileCreateLine(dir, machine.fileCreateUs));
  let cluster: BenchCluster | undefined;
  let watcher: JournalWatcher | undefined;
  let writer: ProbeWriter | undefined;
  const clients: GeospoolClient[] = [];
  const profileDir = args.profile === undefined ? undefined : resolve(args.profile);
  if (profileDir) await mkdir(profileDir, { recursive: true });
  let failed = true;
  const report: Record<string, unknown> = {};
  try {
    const t = now();
    cluster = await startBenchCluster({
      dir,
      ids: IDS,
      queues: QUEUES,
      ...(fetchConcurrency === undefined && batchInterval === undefined
        ? {}
        : {
            replication: {
              ...(fetchConcurrency === undefined
                ? {}
                : { fetchConcurrency: Number(fetchConcurrency) }),
              // A duration as the config takes it ("0", "10ms").
              ...(batchInterval === undefined ? {} : { batchInterval }),
            },
          }),
    });
    await cluster.waitJoined(180_000);
    const c = cluster;
    console.log(
      `cluster up and joined in ${Math.round((now() - t) / 1000)} s: ${c.endpoints.join(" ")}`,
    );
    if (subSync !== undefined) {
      await setSubscriptionSyncCommit(c, subSync);
      console.log(`experiment: every subscription has synchronous_commit = ${subSync}`);
    }
    const producer = new GeospoolClient({ endpoints: [c.endpoints[A] as string] });
    const consumer = new GeospoolClient({ endpoints: [c.endpoints[C] as string] });
    clients.push(producer, consumer);
    writer = await ProbeWriter.connect(c.postgresUrl(A), IDS[A] as string);
    watcher = await JournalWatcher.start(c.postgresUrl(C), IDS[A] as string, num("poll-ms"));
    countAsBench(watcher.backendPid);
    const first = await writer.probe();
    await Promise.race([
      watcher.when(first.entry),
      sleep(60_000).then(() => {
        throw new Error("the first probe row did not reach C within 60 s");
      }),
    ]);
    // Warm the path end to end (JIT, connections, gRPC channels between the nodes).
    await runSustained({
      producer,
      consumer,
      queue: "inbox",
      rate: 50,
      warmupMs: 0,
      durationMs: 2000,
      consumers: 2,
      drainMs: 30_000,
    });
    for (const i of [A, B, C]) await trace(c, i);

    // ---- 1. floor on the idle cluster ------------------------------------------------------
    let idleCpu: CpuUsage | undefined;
    if (sections.has("floor")) {
      const pids = await c.pids();
      const idle0 = await cpuSnapshot(pids);
      await sleep(5000);
      idleCpu = cpuUsage(idle0, await cpuSnapshot(pids), cores);
      console.log(
        "\n1. floor, idle cluster: a bare journal row inserted on A, seen in C's journal",
      );
      printCpu(idleCpu);
      const probes = await runProbes(writer, watcher, num("idle-probes"), 20);
      await sleep(1000);
      const d = probeDists(probes, await trace(c, C));
      printDist("insert on A → visible on C (the floor)", d.floor);
      printDist("  of which insert + commit on A", d.commitOnA);
      printDist("insert on A → delivered to C's apply stream", d.appliedStreamOnC);
      report.floorIdle = {
        floorMs: rounded(d.floor),
        commitOnAMs: rounded(d.commitOnA),
        afterCommitMs: rounded(d.afterCommit),
        deliveredToApplyStreamOnCMs: rounded(d.appliedStreamOnC),
        idleCpuMsPerSecond: idleCpu,
      };
    }

    // ---- 2. sustained rate (and a low rate, for comparison) ------------------------------
    let p50Gap: number | undefined;
    let p99: number | undefined;
    if (sections.has("sustained")) {
      // The low rate first, on a settled cluster; then the target rate.
      const runs: Array<{ rate: number; warmupMs: number; durationMs: number; main: boolean }> = [];
      if (num("low-rate") > 0) {
        runs.push({
          rate: num("low-rate"),
          warmupMs: 1000,
          durationMs: num("low-duration"),
          main: false,
        });
      }
      runs.push({
        rate: num("rate"),
        warmupMs: num("warmup"),
        durationMs: num("duration"),
        main: true,
      });
      for (const run of runs) {
        await settle(c);
        console.log(
          `\n2${run.main ? "b" : "a"}. sustained: ${run.rate} enqueues/s on A for ${run.durationMs / 1000} s ` +
            `(+${run.warmupMs / 1000} s warm-up), ${num("consumers")} consumer loops on C (Complete taking the next), ` +
            `probe rows at ${num("probe-rate")}/s${run.main ? "" : " (for comparison, no target)"}`,
        );
        const f = await sustainedSection({
          cluster: c,
          producer,
          consumer,
          writer,
          watcher,
          rate: run.rate,
          warmupMs: run.warmupMs,
          durationMs: run.durationMs,
          consumers: num("consumers"),
          probeRate: num("probe-rate"),
          cores,
          settle: () => settle(c),
          ...(idleCpu ? { idleCpu } : {}),
          ...(profileDir ? { profileDir } : {}),
        });
        if (run.main) {
          p50Gap = f.latency.p50 - f.floor.p50;
          p99 = f.latency.p99;
          report.sustained = f.json;
        } else {
          report.lowRate = f.json;
        }
      }
    }

    // ---- 3. unthrottled burst --------------------------------------------------------------
    if (sections.has("burst")) {
      const n = num("burst");
      const conc = num("burst-concurrency");
      await settle(c);
      console.log(`\n3. throughput: ${n} entries enqueued on A by ${conc} clients, unthrottled`);
      const cDir = join(c.spoolDirs[C] as string, "burst");
      const pids = await c.pids();
      const cpu0 = cpuSnapshot(pids);
      const t0 = now();
      const { entries, errors } = await enqueueMany(producer, "burst", n, conc, 1_000_000);
      const tEnq = now();
      const onCAtEnd = await countEntries(cDir);
      const tAll = await until(
        "the burst on C",
        async () => (await countEntries(cDir)) >= entries.length,
        300_000,
      );
      const cpu = cpuUsage(await cpu0, await cpuSnapshot(pids), cores);
      const tc = await trace(c, C);
      const placed = entries
        .map((e) => tc.entries[e.name]?.placeEnd)
        .filter((x): x is number => x !== undefined)
        .sort((x, y) => x - y);
      const firstPlaced = placed[0] ?? Number.NaN;
      const lastPlaced = placed[placed.length - 1] ?? Number.NaN;
      const lag = dist(
        entries.map((e) => {
          const p = tc.entries[e.name]?.placeEnd;
          return p === undefined ? undefined : p - e.t0;
        }),
      );
      const burst = {
        entries: entries.length,
        enqueueErrors: errors,
        enqueueSeconds: sig((tEnq - t0) / 1000),
        enqueuedPerSecondOnA: sig(entries.length / ((tEnq - t0) / 1000)),
        onCWhenEnqueueingEnded: onCAtEnd,
        allOnCAfterSeconds: sig((tAll - t0) / 1000),
        replicatedPerSecond: sig(entries.length / ((tAll - t0) / 1000)),
        placedPerSecondOnC: sig((placed.length - 1) / ((lastPlaced - firstPlaced) / 1000)),
        enqueueStartToPlacedOnCMs: rounded(lag),
        cpuMsPerSecond: cpu,
      };
      console.log(
        `A took ${burst.enqueuedPerSecondOnA}/s (${burst.enqueueSeconds} s); C held ${onCAtEnd} of ${entries.length} ` +
          `when A finished and all after ${burst.allOnCAfterSeconds} s: ${burst.replicatedPerSecond} entries/s ` +
          `end to end; C placed ${burst.placedPerSecondOnC}/s between its first and last placement`,
      );
      printDist("enqueue start on A → placed on C", lag);
      printCpu(cpu);
      report.burst = burst;
    }

    // ---- 4. catch-up --------------------------------------------------------------------------
    let catchupSeconds: number | undefined;
    if (sections.has("catchup")) {
      const n = num("catchup");
      console.log(
        `\n4. catch-up: C stopped (${catchupStop === "node" ? "node process and its PostgreSQL" : "node process only"}), ` +
          `${n} entries enqueued on A, C started again`,
      );
      await settle(c);
      await watcher.stop();
      watcher = undefined;
      for (const i of [A, B, C]) await trace(c, i);
      await c.stopNode(C, catchupStop === "node");
      const t0 = now();
      const { entries, errors } = await enqueueMany(
        producer,
        "catchup",
        n,
        num("catchup-concurrency"),
        2_000_000,
      );
      const tEnq = now();
      const bDir = join(c.spoolDirs[B] as string, "catchup");
      const tB = await until(
        "the entries on B",
        async () => (await countEntries(bDir)) >= entries.length,
        300_000,
      );
      await until(
        "A and B idle",
        async () => {
          const s = await Promise.all([status(c, A), status(c, B)]);
          return s.every((x) => x.dirty === 0);
        },
        120_000,
      );
      console.log(
        `A took ${n} in ${sig((tEnq - t0) / 1000)} s (${errors} errors); B held them all ${sig((tB - t0) / 1000)} s after the first`,
      );
      const cDir = join(c.spoolDirs[C] as string, "catchup");
      const tRestart = now();
      let tRows: number | undefined;
      let rowsPolling = true;
      const rowsPoll = (async () => {
        let client: pg.Client | undefined;
        while (rowsPolling && tRows === undefined) {
          try {
            if (!client) {
              client = new pg.Client({ connectionString: c.postgresUrl(C) });
              client.on("error", () => undefined);
              await client.connect();
            }
            const r = await client.query<{ n: string }>(
              "select count(*) as n from journal where origin = $1 and queue = 'catchup' and op = 'enqueue'",
              [IDS[A]],
            );
            if (Number(r.rows[0]?.n ?? 0) >= entries.length) tRows = now();
          } catch {
            await client?.end().catch(() => undefined);
            client = undefined;
          }
          await sleep(100);
        }
        await client?.end().catch(() => undefined);
      })();
      const started = await c.startNode(C);
      const tReady = now();
      const tAll = await until(
        "C caught up",
        async () => (await countEntries(cDir)) >= entries.length,
        600_000,
      );
      rowsPolling = false;
      await rowsPoll;
      const tc = await trace(c, C);
      const placed = entries
        .map((e) => tc.entries[e.name]?.placeEnd)
        .filter((x): x is number => x !== undefined)
        .sort((x, y) => x - y);
      const first = placed[0] ?? Number.NaN;
      const last = placed[placed.length - 1] ?? Number.NaN;
      catchupSeconds = (tAll - tRestart) / 1000;
      const cb = batchStats(tc.batches, tRestart, tAll);
      // The data arrives inline (given to the placement, or staged to a file by older
      // builds) or by a fetch over gRPC.
      const dataMs = dist(
        entries.map((e) => {
          const x = tc.entries[e.name];
          const from = x?.stageStart ?? x?.fetchStart ?? x?.inline;
          const to = x?.stageEnd ?? x?.fetchEnd ?? x?.inline;
          return from === undefined || to === undefined ? undefined : to - from;
        }),
      );
      const placeMs = dist(
        entries.map((e) => {
          const x = tc.entries[e.name];
          return x?.placeStart === undefined || x.placeEnd === undefined
            ? undefined
            : x.placeEnd - x.placeStart;
        }),
      );
      const count = (p: "markPeer" | "fetchStart" | "stageStart" | "inline" | "placeEnd") =>
        entries.filter((e) => tc.entries[e.name]?.[p] !== undefined).length;
      const traced = {
        deliveredByApplyStream: count("markPeer"),
        dataInline: count("stageStart") + count("inline"),
        dataFetched: count("fetchStart"),
        placed: count("placeEnd"),
      };
      const catchup = {
        entries: entries.length,
        traced,
        stopped: catchupStop,
        enqueueSeconds: sig((tEnq - t0) / 1000),
        catchupSeconds: sig(catchupSeconds),
        postgresStartSeconds: sig(started.postgresMs / 1000),
        nodeStartSeconds: sig(started.nodeMs / 1000),
        rowsInCJournalAfterSeconds: tRows === undefined ? null : sig((tRows - tRestart) / 1000),
        firstPlacedAfterSeconds: sig((first - tRestart) / 1000),
        placedPerSecond: sig((placed.length - 1) / ((last - first) / 1000)),
        applierBatches: cb,
        dataMs: rounded(dataMs),
        placeMs: rounded(placeMs),
      };
      console.log(
        `C caught up in ${catchup.catchupSeconds} s: PostgreSQL started in ${catchup.postgresStartSeconds} s, ` +
          `node ready after ${sig((tReady - tRestart) / 1000)} s, all rows in C's journal after ` +
          `${catchup.rowsInCJournalAfterSeconds} s, first entry placed after ${catchup.firstPlacedAfterSeconds} s, ` +
          `then ${catchup.placedPerSecond} placements/s`,
      );
      console.log(
        `C applier: ${cb.batches} batches of ${cb.entriesPerBatch.mean} (max ${cb.entriesPerBatch.max}), ` +
          `p50 ${cb.durationMs.p50} ms (sync ${cb.syncMs.p50}, of which inspect ${cb.inspectMs.p50}; commit ${cb.commitMs.p50}); ` +
          `data (inline or fetched) p50 ${sig(dataMs.p50)} ms, place p50 ${sig(placeMs.p50)} ms`,
      );
      console.log(`C's trace of the ${n} entries: ${JSON.stringify(traced)}`);
      report.catchup = catchup;
    }

    // ---- summary --------------------------------------------------------------------------
    const statuses = await Promise.all([A, B, C].map((i) => status(c, i)));
    const uptimeEnd = await uptimeText();
    const targets: Record<
      string,
      { target: string; value: number | null; result: "PASS" | "MISS" }
    > = {};
    if (p50Gap !== undefined && p99 !== undefined) {
      targets.p50WithinFloor = {
        target: "latency p50 - floor p50 <= 10 ms",
        value: sig(p50Gap),
        result: p50Gap <= 10 ? "PASS" : "MISS",
      };
      targets.p99 = {
        target: "latency p99 < 100 ms",
        value: sig(p99),
        result: p99 < 100 ? "PASS" : "MISS",
      };
    }
    if (catchupSeconds !== undefined) {
      targets.catchup = {
        target: `catch-up of ${num("catchup")} entries < 10 s (issue #11)`,
        value: sig(catchupSeconds),
        result: catchupSeconds < 10 ? "PASS" : "MISS",
      };
    }
    const perEntry = (report.sustained as { cpuMsPerEntry?: number | null } | undefined)
      ?.cpuMsPerEntry;
    if (perEntry !== undefined && perEntry !== null) {
      targets.cpuPerEntry = {
        target: "CPU per replicated entry (nodes + their PostgreSQL) <= 5 ms (issue #11)",
        value: perEntry,
        result: perEntry <= 5 ? "PASS" : "MISS",
      };
    }
    console.log("\ntargets:");
    for (const t of Object.values(targets))
      console.log(`  ${t.result.padEnd(4)}  ${t.target}: ${t.value}`);
    const sus = report.sustained as { ratios?: Record<string, unknown> } | undefined;
    if (sus?.ratios) {
      console.log(
        `  ratios to the floor under load: p50 ${sus.ratios.p50ToFloorP50}x, p99 ${sus.ratios.p99ToFloorP99}x`,
      );
    }
    console.log(`machine at the end: ${uptimeEnd}`);

    const full = {
      date: new Date().toISOString(),
      machine,
      source,
      load: { atStart: uptimeStart, atEnd: uptimeEnd },
      settings: {
        cluster:
          "3 nodes (node-a = A, node-b = B, node-c = C), each a geospool node process (startNode, production defaults, UV_THREADPOOL_SIZE 32) with its own embedded PostgreSQL 18 (fsync on, synchronous_commit on, full_page_writes on, shared_buffers 32MB); full mesh as test/helpers/cluster.ts wires it; all on this one machine",
        entry: { dataBytes: 1024, metadataBytes: metadataBytes() },
        latency:
          "enqueue start on A (client) -> the entry returned by a waiting client Dequeue on C (each then removed)",
        floor: `appendLocal of one journal row (op remove, entry bench-probe-<n>, origin A) on A's PostgreSQL; C's journal polled with one prepared statement every ${num("poll-ms")} ms after the previous answer; seen = send time of the poll that returned it`,
        rate: num("rate"),
        warmupMs: num("warmup"),
        durationMs: num("duration"),
        consumers: num("consumers"),
        probeRate: num("probe-rate"),
        idleProbes: num("idle-probes"),
        burst: { entries: num("burst"), concurrency: num("burst-concurrency") },
        catchup: {
          entries: num("catchup"),
          concurrency: num("catchup-concurrency"),
          stop: catchupStop,
        },
        lowRate: { rate: num("low-rate"), durationMs: num("low-duration") },
        subscriptionSynchronousCommit: subSync ?? "on (set by the mesh since a90092a)",
        fetchConcurrency: fetchConcurrency === undefined ? "4 (default)" : Number(fetchConcurrency),
        batchInterval: batchInterval ?? "10ms (default)",
      },
      ...report,
      targets,
      replicatorStatus: Object.fromEntries(statuses.map((s, i) => [IDS[i], s])),
      totalSeconds: Math.round((now() - started) / 1000),
    };
    if (out !== "-") {
      await mkdir(dirname(out), { recursive: true });
      const merged = { ...(await ownSectionsDropped(out)), ...full };
      await writeFile(out, `${JSON.stringify(merged, null, 2)}\n`);
      console.log(`wrote ${out} (${full.totalSeconds} s in all)`);
    }
    failed = false;
  } finally {
    for (const cl of clients) cl.close();
    await watcher?.stop();
    await writer?.close();
    await cluster?.stop();
    if (failed || args.keep) console.error(`state kept in ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

await main();
