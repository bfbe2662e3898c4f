/**
 * `npm run bench:grpc`: durable jobs (enqueue, complete(remove), take the next) over gRPC
 * against one geospool node, side by side with pg-boss (send, complete, fetch) against a
 * PostgreSQL server of the same kind, at 1 and 32 concurrent clients (bench/lib/grpc-loop.ts).
 * geospool takes the next job in its Complete call (then_dequeue), its calls carried as
 * messages on one Session stream; geospool-unary, the same node and calls, each a gRPC call
 * of its own; geospool-3call (not run unless asked), calls, with a Dequeue call. Runs alternate side by side; the table shows medians and the
 * ratios geospool/pg-boss. Writes bench/results/grpc.json. See docs/benchmarks.md.
 *
 * Options: --rounds N (3), --warmup MS (1500), --duration MS (7000), --concurrency 1,32,
 * --sides geospool,geospool-unary,pg-boss (or geospool-3call), --tsx (the node's sources under tsx instead of
 * the build), --out FILE (bench/results/grpc.json; "-" for none),
 * --node-threadpool N (UV_THREADPOOL_SIZE of the node process; default 32, as bin/geospool.cjs sets),
 * --node-flags "FLAGS" (flags for the node process, e.g. V8's `--max-semi-space-size=64`),
 * --probe N (time each step of a job inside the node, N times, after the runs; 0: skip),
 * --profile DIR (CPU profiles of the node process and of the clients over each measuring
 * window, DIR/<process>-<side>-c<N>-r<round>.cpuprofile; profiled figures are not written
 * to the JSON), --keep (keep the temp dir).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../src/node/postgres/embedded.js";
import { type DiskCounters, deviceOf, diskCounters } from "./lib/disk-stats.js";
import { postmasterPid, processCpuMs, serverCpuMs, threadCpuMs } from "./lib/grpc-cpu.js";
import { runLoops } from "./lib/grpc-loop.js";
import {
  buildNodeProcess,
  type NodeProcess,
  startNodeProcess,
  stopNodeProcess,
} from "./lib/grpc-node-launcher.js";
import {
  meanServiceMs,
  type OperationTotals,
  scrapeOperationTotals,
} from "./lib/grpc-node-metrics.js";
import { jobDataBytes, metadataBytes } from "./lib/grpc-payload.js";
import { grpcPingMs, pgPingMs } from "./lib/grpc-probe-client.js";
import { WindowProfiler } from "./lib/grpc-profiler.js";
import { printSummary, type RunRecord, summarize } from "./lib/grpc-report.js";
import {
  DEQUEUE_WAIT_MS,
  geospoolSide,
  type Held,
  isGeospool,
  pgBossSide,
  type QueueSide,
  type SideName,
} from "./lib/grpc-sides.js";
import { sig3 } from "./lib/grpc-stats.js";
import { sourceVersion } from "./lib/source-version.js";
import { describeMachine, fileCreateLine } from "./lib/spool-machine.js";

const here = dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    warmup: { type: "string", default: "1500" },
    duration: { type: "string", default: "7000" },
    concurrency: { type: "string", default: "1,32" },
    sides: { type: "string", default: "geospool,geospool-unary,pg-boss" },
    tsx: { type: "boolean", default: false },
    out: { type: "string", default: join(here, "results", "grpc.json") },
    profile: { type: "string" },
    probe: { type: "string", default: "150" },
    "node-threadpool": { type: "string" },
    "node-flags": { type: "string", default: "" },
    keep: { type: "boolean", default: false },
  },
});
const rounds = Number(args.rounds);
const warmupMs = Number(args.warmup);
const durationMs = Number(args.duration);
const concurrencies = args.concurrency.split(",").map(Number);
const sides = args.sides.split(",") as SideName[];
const poolMax = (c: number) => Math.max(10, c);

interface CpuSnapshot {
  client: number;
  node: number;
  nodeMainThread: number;
  nodePostgres: number;
  bossPostgres: number;
  /** The bench data's block device (/proc/diskstats); undefined on tmpfs and the like. */
  disk: DiskCounters | undefined;
}

async function serverVersion(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ server_version: string }>("show server_version");
    return r.rows[0]?.server_version ?? "?";
  } finally {
    await c.end();
  }
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

async function main(): Promise<void> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), "geospool-bench-grpc-"));
  const machine = await describeMachine(dir, loadavg()[0] ?? 0);
  console.log(fileCreateLine(dir, machine.fileCreateUs));
  const servers: EmbeddedPostgres[] = [];
  let node: NodeProcess | undefined;
  const profileDir = args.profile === undefined ? undefined : resolve(args.profile);
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const clientProfiler = profileDir ? new WindowProfiler() : undefined;
  let failed = true;
  try {
    // Two servers of the same kind and settings (fsync on, synchronous_commit on).
    const [nodePg, bossPg] = await Promise.all([
      startEmbeddedPostgres({ dataDir: join(dir, "pg-node") }).then((s) => {
        servers.push(s);
        return s;
      }),
      startEmbeddedPostgres({ dataDir: join(dir, "pg-boss") }).then((s) => {
        servers.push(s);
        return s;
      }),
    ]);
    // The node as it ships (dist/, compiled JavaScript), unless --tsx.
    const built = args.tsx ? undefined : await buildNodeProcess();
    node = await startNodeProcess(
      join(dir, "spool"),
      nodePg.url,
      args["node-threadpool"] ?? "32",
      undefined,
      args["node-flags"].split(" ").filter((f) => f !== ""),
      built,
    );
    const nodeProcess = node;
    const endpoint = `127.0.0.1:${node.grpcPort}`;
    const pids = {
      node: node.pid,
      nodePostgres: await postmasterPid(nodePg.dataDir),
      bossPostgres: await postmasterPid(bossPg.dataDir),
    };
    const pgVersion = await serverVersion(bossPg.url);
    const device = await deviceOf(dir);
    const snapshot = async (): Promise<CpuSnapshot> => {
      const u = process.cpuUsage();
      const [n, nm, np, bp, disk] = await Promise.all([
        processCpuMs(pids.node),
        threadCpuMs(pids.node, pids.node),
        serverCpuMs(pids.nodePostgres),
        serverCpuMs(pids.bossPostgres),
        diskCounters(device),
      ]);
      return {
        client: (u.user + u.system) / 1000,
        node: n,
        nodeMainThread: nm,
        nodePostgres: np,
        bossPostgres: bp,
        disk,
      };
    };
    console.log(
      `geospool node on ${endpoint}, PostgreSQL ${pgVersion} x2, data in ${dir}\n` +
        `${rounds} rounds x concurrency ${concurrencies.join(",")} x ${sides.join(",")}, ` +
        `warmup ${warmupMs} ms, window ${durationMs} ms`,
    );

    const runs: RunRecord[] = [];
    for (let round_ = 1; round_ <= rounds; round_++) {
      for (const concurrency of concurrencies) {
        for (const sideName of sides) {
          const side: QueueSide<Held> =
            sideName !== "pg-boss"
              ? geospoolSide(endpoint, sideName)
              : await pgBossSide(bossPg.url, poolMax(concurrency));
          let cpuStart: Promise<CpuSnapshot> | undefined;
          let cpuEnd: Promise<CpuSnapshot> | undefined;
          const label = `${sideName}-c${concurrency}-r${round_}`;
          let profiled: Promise<unknown> | undefined;
          let opsStart: Promise<OperationTotals> | undefined;
          let opsEnd: Promise<OperationTotals> | undefined;
          const scrape = () => scrapeOperationTotals(nodeProcess.httpPort);
          try {
            const r = await runLoops(side, {
              concurrency,
              warmupMs,
              durationMs,
              atWindowStart: () => {
                cpuStart = snapshot();
                if (isGeospool(sideName)) opsStart = scrape();
                if (!profileDir) return;
                if (isGeospool(sideName)) nodeProcess.child.stdin?.write("profile-start\n");
                void clientProfiler?.start();
              },
              atWindowEnd: () => {
                cpuEnd = snapshot();
                if (isGeospool(sideName)) opsEnd = scrape();
                if (!profileDir) return;
                const file = join(profileDir, `node-${label}.cpuprofile`);
                if (isGeospool(sideName)) nodeProcess.child.stdin?.write(`profile-stop ${file}\n`);
                profiled = Promise.all([
                  isGeospool(sideName) ? nodeProcess.nextLine("PROFILED") : undefined,
                  clientProfiler?.stop(join(profileDir, `client-${label}.cpuprofile`)),
                ]);
              },
            });
            await profiled;
            const left = await side.leftover();
            if (left !== 0) throw new Error(`${sideName}: ${left} jobs left after the run`);
            const a = await (cpuStart as Promise<CpuSnapshot>);
            const b = await (cpuEnd as Promise<CpuSnapshot>);
            const client = b.client - a.client;
            const postgres = isGeospool(sideName)
              ? b.nodePostgres - a.nodePostgres
              : b.bossPostgres - a.bossPostgres;
            const server = postgres + (isGeospool(sideName) ? b.node - a.node : 0);
            const perJob = (ms: number) => sig3(ms / r.jobs);
            const pick = (d: { p50: number; p99: number; mean: number }) => ({
              p50: sig3(d.p50),
              p99: sig3(d.p99),
              mean: sig3(d.mean),
            });
            const service =
              opsStart && opsEnd ? meanServiceMs(await opsStart, await opsEnd) : undefined;
            const rec: RunRecord = {
              round: round_,
              side: sideName,
              concurrency,
              jobs: r.jobs,
              elapsedMs: Math.round(r.elapsedMs),
              perSecond: sig3(r.perSecond),
              latencyMs: {
                p50: sig3(r.latencyMs.p50),
                p99: sig3(r.latencyMs.p99),
                mean: sig3(r.latencyMs.mean),
                max: sig3(r.latencyMs.max),
              },
              phasesMs: {
                enqueue: pick(r.phasesMs.enqueue),
                dequeue: pick(r.phasesMs.dequeue),
                complete: pick(r.phasesMs.complete),
              },
              ...(service
                ? {
                    nodeServiceMeanMs: Object.fromEntries(
                      Object.entries(service).map(([op, ms]) => [op, sig3(ms)]),
                    ),
                  }
                : {}),
              emptyDequeues: r.emptyDequeues,
              cpuMsPerJob: {
                client: perJob(client),
                server: perJob(server),
                serverPostgres: perJob(postgres),
                ...(isGeospool(sideName)
                  ? { serverMainThread: perJob(b.nodeMainThread - a.nodeMainThread) }
                  : {}),
                total: perJob(client + server),
              },
              ...(a.disk && b.disk
                ? {
                    diskPerJob: {
                      writes: perJob(b.disk.writes - a.disk.writes),
                      flushes: perJob(b.disk.flushes - a.disk.flushes),
                    },
                  }
                : {}),
            };
            runs.push(rec);
            console.log(
              `round ${round_} c=${pad(concurrency, 2)} ${sideName.padEnd(14)} ` +
                `${pad(rec.perSecond, 6)} jobs/s  p50 ${pad(rec.latencyMs.p50, 6)} ms  ` +
                `p99 ${pad(rec.latencyMs.p99, 6)} ms  ` +
                `phases p50 ${rec.phasesMs.enqueue.p50}/${rec.phasesMs.dequeue.p50}/` +
                `${rec.phasesMs.complete.p50} ms  ` +
                `cpu/job ${rec.cpuMsPerJob.client}+${rec.cpuMsPerJob.server} ms ` +
                `(pg ${rec.cpuMsPerJob.serverPostgres})` +
                (rec.diskPerJob
                  ? `  disk/job ${rec.diskPerJob.writes} writes ${rec.diskPerJob.flushes} flushes`
                  : ""),
            );
          } finally {
            await side.close();
          }
        }
      }
    }

    const probeN = Number(args.probe);
    let breakdown: Record<string, unknown> | undefined;
    if (probeN > 0 && sides.some(isGeospool)) {
      console.log(`\nprobing: each step of a job, one at a time, ${probeN} times`);
      nodeProcess.child.stdin?.write(`probe ${probeN}\n`);
      const inNode = JSON.parse(await nodeProcess.nextLine("PROBE")) as {
        times: Record<string, { p50: number; p99: number }>;
        fsRequestsPerCall: Record<string, number>;
      };
      const transport = {
        "gRPC unary round trip (health Check), client to node": await grpcPingMs(endpoint, probeN),
        "PostgreSQL round trip (select 1), client to server": await pgPingMs(bossPg.url, probeN),
      };
      const times: Record<string, { p50: number; p99: number }> = {};
      for (const [step, d] of Object.entries({ ...inNode.times, ...transport })) {
        times[step] = { p50: sig3(d.p50), p99: sig3(d.p99) };
        console.log(`${pad(sig3(d.p50), 8)} ms p50 ${pad(sig3(d.p99), 8)} ms p99  ${step}`);
      }
      const fsRequestsPerCall: Record<string, number> = {};
      console.log("file-system requests (thread-pool round trips) per call:");
      for (const [step, count] of Object.entries(inNode.fsRequestsPerCall)) {
        fsRequestsPerCall[step] = sig3(count);
        console.log(`${pad(sig3(count), 8)}  ${step}`);
      }
      breakdown = { concurrency: 1, times, fsRequestsPerCall };
    }

    const { results, ratios, targets } = summarize(runs, concurrencies, sides);
    printSummary(results, ratios);

    const report = {
      date: new Date().toISOString(),
      source: await sourceVersion(),
      machine,
      settings: {
        workload:
          "each client loop keeps one job queued ahead and repeats: enqueue one job, complete(remove) " +
          "the held one, take the next (geospool: in the Complete call, then_dequeue, every call a " +
          "message on one Session stream; geospool-unary: the same as gRPC calls; geospool-3call " +
          "and pg-boss: a dequeue/fetch call); every take brings the job's data (geospool: " +
          "inline_data_max, since 2026-12-07; pg-boss: the job's JSON); one shared client object per side; " +
          "latency = enqueue start -> complete done",
        rounds,
        order: `alternating per concurrency: ${sides.join(", ")}, ${sides.join(", ")}, ...`,
        concurrencies,
        warmupMs,
        windowMs: durationMs,
        metadataBytes: metadataBytes(),
        dataBytes: jobDataBytes.length,
        postgres: {
          version: pgVersion,
          fsync: "on",
          synchronous_commit: "on",
          full_page_writes: "on",
          shared_buffers: "32MB",
          note: "two servers with identical settings (startEmbeddedPostgres defaults): one for the node, one for pg-boss",
        },
        geospool: {
          process: "startNode in its own process; default config (spool fsync always on)",
          nodeBuild: built === undefined ? "sources under tsx" : "dist/ (npm run build), node",
          uvThreadpoolSize: Number(args["node-threadpool"] ?? "32"),
          client:
            "one GeospoolClient (one HTTP/2 channel); each Enqueue carries an idempotency key",
          dequeueWaitMs: DEQUEUE_WAIT_MS,
          queue: "inbox",
        },
        pgBoss: {
          version: (await import("pg-boss/package.json", { with: { type: "json" } })).default
            .version,
          client: "one PgBoss instance, default options, pool max = max(10, concurrency)",
          fetch: "fetch() (no wait in pg-boss); an empty fetch is retried after 1 ms",
          complete: "complete(name, id): the row stays, state completed (pg-boss archives later)",
        },
      },
      results,
      ratios,
      targets,
      breakdown: breakdown ?? null,
      totalSeconds: Math.round((performance.now() - started) / 1000),
    };
    if (args.out !== "-" && !profileDir) {
      await mkdir(dirname(args.out), { recursive: true });
      await writeFile(args.out, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`\nwrote ${args.out} (${report.totalSeconds} s in all)`);
    }
    failed = false;
  } finally {
    clientProfiler?.close();
    if (node) await stopNodeProcess(node.child);
    await Promise.allSettled(servers.map((s) => s.stop()));
    if (failed || args.keep) console.error(`state kept in ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

await main();
