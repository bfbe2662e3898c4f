/**
 * The geospool node under test, in its own process (as PostgreSQL is for pg-boss), started
 * by bench/grpc.ts: `grpc-node-process.ts SPOOL_DIR POSTGRES_URL`. Starts the node with the
 * default configuration (durable spool, 127.0.0.1 port 0; bench/http.ts adds top-level
 * sections, e.g. `cache`, as JSON in GEOSPOOL_BENCH_CONFIG) and prints one line
 * `READY {"grpcPort":N,"httpPort":N,"pid":N}` on stdout. Reads commands on stdin: `profile-start` and
 * `profile-stop FILE` (a CPU profile of this process between the two), `probe N` (prints
 * `PROBE <json>`: grpc-probe-node.ts), `settle N` (waits until the replicator has journaled
 * N entries and has nothing dirty, then prints `SETTLED <json>`), `memory [FILE]` (after a
 * full GC when run with --expose-gc, prints `MEMORY <process.memoryUsage() json>` with the
 * figures before it under `beforeGc`; then writes a heap snapshot to FILE if given), `analytics on|off` (bench/http.ts: the cache's per-path
 * request counting on or off, prints `ANALYTICS on|off`); stops the node when
 * stdin ends (the parent closed it, or died), then prints `STOPPED`. With
 * GEOSPOOL_BENCH_MEMORY_LOG=FILE, appends `process.memoryUsage()` (no GC) with the time since
 * READY as one JSON line to FILE every second, from READY on (bench/http.ts: RSS over time).
 */
import { appendFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { writeHeapSnapshot } from "node:v8";
import { parseConfig } from "../../src/node/config/index.js";
import { applyHeapGrowth } from "../../src/node/heap-growth.js";
import { startNode } from "../../src/node/node.js";
import { createLogger } from "../../src/node/observability/index.js";
import { probeNode } from "./grpc-probe-node.js";
import { WindowProfiler } from "./grpc-profiler.js";

/**
 * Resident bytes (/proc/self/smaps) of the files mapped (the node binary, libraries), of
 * `[heap]` (malloc's main arena), and of anonymous mappings (V8's heap, other arenas,
 * large allocations).
 */
async function residentByMapping(): Promise<Record<string, number>> {
  const text = await readFile("/proc/self/smaps", "utf8").catch(() => "");
  const out: Record<string, number> = { files: 0, brkHeap: 0, anonymous: 0, other: 0 };
  let kind = "other";
  for (const line of text.split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const path = head[1] ?? "";
      kind =
        path === ""
          ? "anonymous"
          : path === "[heap]"
            ? "brkHeap"
            : path.startsWith("/")
              ? "files"
              : "other";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] = (out[kind] ?? 0) + Number(rss[1]) * 1024;
  }
  return out;
}

const [spoolDir, postgresUrl] = process.argv.slice(2);
if (spoolDir === undefined || postgresUrl === undefined) {
  throw new Error("usage: grpc-node-process.ts SPOOL_DIR POSTGRES_URL");
}

const config = parseConfig(
  {
    node: { id: "bench" },
    spool: { dir: spoolDir },
    grpc: { listen: "127.0.0.1:0" },
    http: { listen: "127.0.0.1:0" },
    postgres: { url: postgresUrl },
    log: { level: process.env.GEOSPOOL_BENCH_LOG ?? "warn" },
    shutdown: { deadline: "2s" },
    ...(JSON.parse(process.env.GEOSPOOL_BENCH_CONFIG ?? "{}") as Record<string, unknown>),
  },
  { require: ["postgres.url"] },
);
// As the CLI's `node` command does.
applyHeapGrowth(config.node.heapGrowthPercent);
const node = await startNode(config, createLogger({ level: config.log.level }));
const ready = { grpcPort: node.grpcPort, httpPort: node.httpPort, pid: process.pid };
process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
const memoryLog = process.env.GEOSPOOL_BENCH_MEMORY_LOG;
if (memoryLog) {
  const since = performance.now();
  const sample = () => {
    const m = process.memoryUsage();
    const t = Math.round(performance.now() - since);
    appendFileSync(memoryLog, `${JSON.stringify({ t, ...m })}\n`);
  };
  sample();
  setInterval(sample, 1000).unref();
}

let profiler: WindowProfiler | undefined;
const commands = createInterface({ input: process.stdin });
for await (const line of commands) {
  const [command, arg] = line.split(" ");
  if (command === "profile-start") {
    profiler ??= new WindowProfiler();
    await profiler.start();
  } else if (command === "profile-stop" && arg) {
    await profiler?.stop(arg);
    process.stdout.write(`PROFILED ${arg}\n`);
  } else if (command === "memory") {
    // With --expose-gc: what stays live, not what the collector has yet to take (and what
    // it was before). Measured before the snapshot, which itself takes hundreds of MB.
    const beforeGc = process.memoryUsage();
    (globalThis as { gc?: () => void }).gc?.();
    const afterGc = process.memoryUsage();
    const mapped = await residentByMapping();
    const heap = arg ? writeHeapSnapshot(arg) : undefined;
    process.stdout.write(`MEMORY ${JSON.stringify({ ...afterGc, beforeGc, mapped, heap })}\n`);
  } else if (command === "analytics" && node.cache !== undefined) {
    node.cache.stats.perKey = arg === "on";
    process.stdout.write(`ANALYTICS ${node.cache.stats.perKey ? "on" : "off"}\n`);
  } else if (command === "settle") {
    const t = performance.now();
    const { replicator } = node.replication;
    // idle() also wakes while work remains (backpressure): wait for the count asked for.
    while (replicator.status().dirty > 0 || replicator.status().recordedEntries < Number(arg)) {
      await Promise.all([replicator.idle(), new Promise((r) => setTimeout(r, 100))]);
    }
    const { recordedEntries } = replicator.status();
    process.stdout.write(
      `SETTLED ${JSON.stringify({ recordedEntries, ms: performance.now() - t })}\n`,
    );
  } else if (command === "probe") {
    const result = await probeNode(node, postgresUrl, Number(arg ?? 100));
    process.stdout.write(`PROBE ${JSON.stringify(result)}\n`);
  }
}
profiler?.close();
await node.stop();
process.stdout.write("STOPPED\n");
