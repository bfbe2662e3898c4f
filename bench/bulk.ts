/**
 * `npm run bench:bulk`: the bulk path for loaders (issue 11). On the 3-node cluster of
 * bench/replication.ts (each node a geospool process with its own embedded PostgreSQL,
 * durable as in production, full mesh), the same N small entries (200 bytes of data, a
 * short metadata, an idempotency key each) are sent to node A twice, into two queues:
 *
 * 1. one by one: `enqueue` from 32 closed loops (the baseline);
 * 2. batched: `enqueueMany` (EnqueueBatch calls of 500 entries, 4 under way).
 *
 * For each: entries/s acknowledged by A (first send → last reply), and entries/s replicated
 * (first send → the moment both peers' queue directories hold all N, polled every 100 ms).
 * The replicators settle between the two. Printed with the ratios batched / one by one;
 * the `bulk` key of bench/results/replication.json is set (the file is read and merged: its
 * other sections belong to bench:replication).
 *
 * Each side also records the CPU time of every node process and of its PostgreSQL server
 * from the first send until the peers hold all N, per entry (`cpuMsPerEntry`).
 *
 * Flags: --entries N (20000), --data-bytes N (200), --concurrency N (32, one by one),
 * --batch-entries N (500), --batch-concurrency N (4), --order batched-first|single-first
 * (single-first), --sides single,batched (both), --profile DIR (CPU profiles of the three
 * node processes over the batched side, `<node>-batched.cpuprofile`; summarise with
 * `npx tsx bench/lib/grpc-profile-summary.ts FILE`), --out FILE|-
 * (bench/results/replication.json; with --profile or --sides, "-" unless given), --keep.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { type BulkEntry, GeospoolClient } from "../src/node/client/index.js";
import { sourceVersion } from "./lib/source-version.js";
import { describeMachine, fileCreateLine } from "./lib/spool-machine.js";
import { type BenchCluster, startBenchCluster } from "./replication-cluster.js";
import { cpuSnapshot } from "./replication-cpu.js";
import type { NodeTrace } from "./replication-trace.js";

const here = dirname(fileURLToPath(import.meta.url));
const DEFAULT_OUT = join(here, "results", "replication.json");
const { values: args } = parseArgs({
  options: {
    entries: { type: "string", default: "20000" },
    "data-bytes": { type: "string", default: "200" },
    concurrency: { type: "string", default: "32" },
    "batch-entries": { type: "string", default: "500" },
    "batch-concurrency": { type: "string", default: "4" },
    order: { type: "string", default: "single-first" },
    sides: { type: "string", default: "single,batched" },
    profile: { type: "string" },
    out: { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const num = (k: keyof typeof args) => Number(args[k]);
const N = num("entries");
const SIDES = new Set(String(args.sides).split(","));
const PROFILE_DIR = args.profile === undefined ? undefined : resolve(args.profile);
// A partial or profiled run is not the recorded figure unless asked for.
const OUT = args.out ?? (PROFILE_DIR !== undefined || SIDES.size < 2 ? "-" : DEFAULT_OUT);
const IDS = ["node-a", "node-b", "node-c"];
const QUEUES = ["bulk-single", "bulk-batched", "dead"];
const A = 0;
const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sig = (x: number) => Number(x.toPrecision(3));
const sh = promisify(execFile);

async function uptimeText(): Promise<string> {
  return (
    await sh("uptime").catch(() => ({ stdout: `load ${loadavg().join(" ")}` }))
  ).stdout.trim();
}

async function countEntries(dir: string): Promise<number> {
  return (await readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith(".")).length;
}

/** The time (ms, `now()`) when every peer's `queue` directory holds `n` entries. */
async function replicated(c: BenchCluster, queue: string, n: number, timeoutMs: number) {
  const end = now() + timeoutMs;
  const peers = c.spoolDirs.filter((_, i) => i !== A).map((d) => join(d, queue));
  for (;;) {
    const counts = await Promise.all(peers.map(countEntries));
    if (counts.every((k) => k >= n)) return { at: now(), counts };
    if (now() > end) return { at: undefined, counts };
    await sleep(100);
  }
}

/** Wait until no replicator has anything dirty or unacknowledged, twice in a row. */
async function settle(c: BenchCluster): Promise<void> {
  let quiet = 0;
  const end = now() + 600_000;
  while (quiet < 2 && now() < end) {
    const s = await Promise.all(
      IDS.map(async (_, i) => JSON.parse(await c.node(i).ask("status", "STATUS"))),
    );
    quiet = s.every((x) => x.dirty === 0 && x.unacknowledgedCommits === 0) ? quiet + 1 : 0;
    await sleep(500);
  }
}

function entries(queue: string, tag: string): BulkEntry[] {
  const data = Buffer.alloc(num("data-bytes"), 0x61);
  return Array.from({ length: N }, (_, i) => ({
    queue,
    data,
    metadata: `{"bench":"bulk","i":${i}}`,
    idempotencyKey: `${tag}-${i}-${randomUUID()}`,
  }));
}

interface Side {
  entries: number;
  ackSeconds: number;
  entriesPerSecond: number;
  errors: number;
  replicatedSeconds: number | null;
  replicatedEntriesPerSecond: number | null;
  peerCounts: number[];
  /** CPU ms per entry from the first send until the peers hold all, per node (A, B, C). */
  cpuMsPerEntry: { nodes: Array<number | null>; postgres: Array<number | null>; all: number };
  /** Per node (A, B, C): the replicator's sync batches over the same time. */
  batches: BatchStats[];
}

/** A node's sync batches: how many, how large, how long each phase took (medians, ms). */
interface BatchStats {
  node: string;
  batches: number;
  sizeP50: number;
  msP50: number;
  inspectMsP50: number;
  syncMsP50: number;
  commitMsP50: number;
  /** Share of the window the replicator spent in a batch. */
  busy: number;
  /** Per entry (medians, ms): the steps of its batch the trace saw (see replication-trace.ts). */
  steps: Record<string, number>;
}

/** Step durations per entry, from the trace's points: [name, from, to]. */
const STEPS = [
  ["to key", "batchStart", "keyStart"],
  ["key", "keyStart", "keyEnd"],
  ["key to place", "keyEnd", "placeStart"],
  ["place", "placeStart", "placeEnd"],
  ["place to recorded", "placeEnd", "recorded"],
  ["to journaled", "batchStart", "journaled"],
] as const;

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] as number);
};

async function batchStats(c: BenchCluster, windowMs: number): Promise<BatchStats[]> {
  return Promise.all(
    IDS.map(async (id, i) => {
      const t = JSON.parse(await c.node(i).ask("trace", "TRACE")) as NodeTrace;
      const b = t.batches;
      const total = b.reduce((x, r) => x + (r.end - r.start), 0);
      return {
        node: id,
        batches: b.length,
        sizeP50: median(b.map((r) => r.size)),
        msP50: sig(median(b.map((r) => r.end - r.start))),
        inspectMsP50: sig(median(b.map((r) => r.inspectedAt - r.start))),
        syncMsP50: sig(median(b.map((r) => r.syncedAt - r.inspectedAt))),
        commitMsP50: sig(median(b.map((r) => r.end - r.syncedAt))),
        busy: sig(total / windowMs),
        steps: Object.fromEntries(
          STEPS.map(([name, from, to]) => [
            name,
            sig(
              median(
                Object.values(t.entries).map(
                  (e) => (e[to] ?? Number.NaN) - (e[from] ?? Number.NaN),
                ),
              ),
            ),
          ]).filter(([, v]) => Number.isFinite(v)),
        ),
      };
    }),
  );
}

async function measure(
  c: BenchCluster,
  queue: string,
  send: () => Promise<number>,
  profile?: string,
): Promise<Side> {
  if (profile !== undefined) {
    await Promise.all(IDS.map((_, i) => c.node(i).ask("profile-start", "PROFILING")));
  }
  const pids = await c.pids();
  // Forget what the nodes traced before this side.
  await Promise.all(IDS.map((_, i) => c.node(i).ask("trace", "TRACE")));
  const cpu0 = await cpuSnapshot(pids);
  const t0 = now();
  const errors = await send();
  const acked = now();
  const done = await replicated(c, queue, N - errors, 900_000);
  const cpu1 = await cpuSnapshot(pids);
  const batches = await batchStats(c, now() - t0);
  if (profile !== undefined) {
    await Promise.all(
      IDS.map((id, i) =>
        c.node(i).ask(`profile-stop ${join(profile, `${id}-${queue}.cpuprofile`)}`, "PROFILED"),
      ),
    );
  }
  const rs = done.at === undefined ? null : (done.at - t0) / 1000;
  const perEntry = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? null : sig((b - a) / Math.max(1, N - errors));
  const nodes = cpu0.nodes.map((a, i) => perEntry(a, cpu1.nodes[i]));
  const postgres = cpu0.postgres.map((a, i) => perEntry(a, cpu1.postgres[i]));
  const all = sig([...nodes, ...postgres].reduce<number>((x, y) => x + (y ?? 0), 0));
  return {
    cpuMsPerEntry: { nodes, postgres, all },
    batches,
    entries: N,
    ackSeconds: sig((acked - t0) / 1000),
    entriesPerSecond: sig((N - errors) / ((acked - t0) / 1000)),
    errors,
    replicatedSeconds: rs === null ? null : sig(rs),
    replicatedEntriesPerSecond: rs === null ? null : sig((N - errors) / rs),
    peerCounts: done.counts,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "geospool-bench-bulk-"));
  const uptimeStart = await uptimeText();
  const source = await sourceVersion();
  const machine = await describeMachine(dir, loadavg()[0] ?? 0);
  console.log(`machine: ${uptimeStart}\nsource: ${source.commit}\nstate in ${dir}`);
  console.log(fileCreateLine(dir, machine.fileCreateUs));
  let cluster: BenchCluster | undefined;
  const client = { c: undefined as GeospoolClient | undefined };
  try {
    cluster = await startBenchCluster({ dir, ids: IDS, queues: QUEUES });
    await cluster.waitJoined(180_000);
    const c = cluster;
    const producer = new GeospoolClient({ endpoints: [c.endpoints[A] as string] });
    client.c = producer;
    // Warm up both paths (JIT, channels, the batch writer thread) with a few entries.
    await producer.enqueue("dead", "warm", { metadata: "warm" });
    for await (const r of producer.enqueueMany(entries("dead", "warm").slice(0, 600))) {
      if (!r.ok) throw new Error(`warm-up: ${r.message}`);
    }
    await settle(c);

    const single = async () => {
      const list = entries("bulk-single", "single");
      let next = 0;
      let errors = 0;
      await Promise.all(
        Array.from({ length: num("concurrency") }, async () => {
          for (let i = next++; i < N; i = next++) {
            const e = list[i] as BulkEntry;
            await producer
              .enqueue(e.queue, e.data, {
                metadata: e.metadata as string,
                idempotencyKey: e.idempotencyKey as string,
              })
              .catch(() => errors++);
          }
        }),
      );
      return errors;
    };
    const batched = async () => {
      let errors = 0;
      const options = {
        batchEntries: num("batch-entries"),
        concurrency: num("batch-concurrency"),
      };
      for await (const r of producer.enqueueMany(entries("bulk-batched", "batched"), options)) {
        if (!r.ok) errors++;
      }
      return errors;
    };
    const result: Record<string, Side> = {};
    const order = (
      args.order === "batched-first" ? ["batched", "single"] : ["single", "batched"]
    ).filter((w) => SIDES.has(w));
    if (PROFILE_DIR !== undefined) await mkdir(PROFILE_DIR, { recursive: true });
    for (const which of order) {
      const side =
        which === "single"
          ? await measure(c, "bulk-single", single)
          : await measure(c, "bulk-batched", batched, PROFILE_DIR);
      result[which] = side;
      console.log(
        `${which.padEnd(8)} ${N} entries: acknowledged ${side.entriesPerSecond}/s (${side.ackSeconds} s, ${side.errors} errors); ` +
          `on both peers ${side.replicatedEntriesPerSecond ?? "-"}/s (${side.replicatedSeconds ?? "timed out"} s; peers hold ${side.peerCounts.join(", ")})`,
      );
      const cpu = side.cpuMsPerEntry;
      console.log(
        `${"".padEnd(8)} CPU ms per entry: ${cpu.all} in all; nodes ${cpu.nodes.join(" / ")}, their PostgreSQL ${cpu.postgres.join(" / ")} (A / B / C)`,
      );
      for (const b of side.batches) {
        console.log(
          `${"".padEnd(8)} ${b.node}: ${b.batches} sync batches, ${b.sizeP50} entries and ${b.msP50} ms p50 ` +
            `(inspect ${b.inspectMsP50}, sync ${b.syncMsP50}, commit ${b.commitMsP50}); busy ${Math.round(b.busy * 100)}% of the time; ` +
            `per entry p50: ${Object.entries(b.steps)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ")}`,
        );
      }
      await settle(c);
    }
    if (PROFILE_DIR !== undefined) console.log(`profiles in ${PROFILE_DIR}`);
    const s = result.single;
    const b = result.batched;
    if (s === undefined || b === undefined) {
      console.log("one side only: nothing written");
      return;
    }
    const ratio = (x: number | null, y: number | null) =>
      x === null || y === null ? null : sig(x / y);
    const uptimeEnd = await uptimeText();
    const bulk = {
      date: new Date().toISOString(),
      source,
      machine,
      load: { atStart: uptimeStart, atEnd: uptimeEnd },
      settings: {
        cluster:
          "3 nodes as bench:replication (geospool node processes, UV_THREADPOOL_SIZE 32, each with its own embedded PostgreSQL, fsync on); entries sent to A; replicated = both peers' queue directories hold all",
        entries: N,
        dataBytes: num("data-bytes"),
        singleConcurrency: num("concurrency"),
        batchEntries: num("batch-entries"),
        batchConcurrency: num("batch-concurrency"),
        order: order.join(" then "),
      },
      entriesPerSecond: b.entriesPerSecond,
      replicatedEntriesPerSecond: b.replicatedEntriesPerSecond,
      oneByOne: {
        entriesPerSecond: s.entriesPerSecond,
        replicatedEntriesPerSecond: s.replicatedEntriesPerSecond,
      },
      ratios: {
        entriesPerSecond: ratio(b.entriesPerSecond, s.entriesPerSecond),
        replicatedEntriesPerSecond: ratio(
          b.replicatedEntriesPerSecond,
          s.replicatedEntriesPerSecond,
        ),
      },
      targets: {
        entriesPerSecond: {
          target: ">= 3000",
          result: b.entriesPerSecond >= 3000 ? "PASS" : "MISS",
        },
        replicatedEntriesPerSecond: {
          target: ">= 1500",
          result: (b.replicatedEntriesPerSecond ?? 0) >= 1500 ? "PASS" : "MISS",
        },
      },
      batched: b,
      single: s,
    };
    console.log(
      `\nbatched / one by one: acknowledged ${bulk.ratios.entriesPerSecond}x, replicated ${bulk.ratios.replicatedEntriesPerSecond}x`,
    );
    console.log(
      `targets: ${bulk.targets.entriesPerSecond.result} >= 3000 entries/s into A (${b.entriesPerSecond}); ` +
        `${bulk.targets.replicatedEntriesPerSecond.result} >= 1500 entries/s replicated (${b.replicatedEntriesPerSecond ?? "-"})`,
    );
    console.log(`machine at the end: ${uptimeEnd}`);
    if (OUT === "-") {
      console.log(JSON.stringify(bulk, null, 2));
    } else {
      // Merge: read, set `bulk`, write back (the other sections are bench:replication's).
      const text = await readFile(OUT, "utf8").catch(() => "{}");
      const all = JSON.parse(text) as Record<string, unknown>;
      all.bulk = bulk;
      await writeFile(OUT, `${JSON.stringify(all, null, 2)}\n`);
      console.log(`bulk section written to ${OUT}`);
    }
  } finally {
    client.c?.close();
    await cluster?.stop();
    if (!args.keep) await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
