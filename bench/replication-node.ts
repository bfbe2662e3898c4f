/**
 * One geospool node of bench/replication.ts in its own process, as in production (one node
 * per machine): `replication-node.ts '<NodeSpec JSON>'`. Starts the node (startNode, the
 * production defaults except the peers, queues and ports given), wraps its replicator with
 * replication-trace.ts, and prints `READY {"pid":N}`. Commands on stdin, one per line,
 * each answered by one line on stdout:
 * - `joins`  → `JOINS {"<peer>":"<outcome>",...}` (the background joins, see NodeReplication);
 * - `status` → `STATUS <replicator.status()>`;
 * - `trace`  → `TRACE <NodeTrace JSON>` (and forgets it);
 * - `profile-start` → `PROFILING started`; `profile-stop FILE` → `PROFILED FILE` (a CPU
 *   profile of this process in between).
 * When stdin ends (the parent closed it, or died) it stops the node and exits.
 */
import { createInterface } from "node:readline";
import { parseConfig } from "../src/node/config/index.js";
import { startNode } from "../src/node/node.js";
import { createLogger } from "../src/node/observability/index.js";
import { WindowProfiler } from "./lib/grpc-profiler.js";
import { instrument, Tracer } from "./replication-trace.js";

export interface NodeSpec {
  id: string;
  spoolDir: string;
  postgresUrl: string;
  grpc: string;
  http: string;
  queues: string[];
  peers: Array<{ id: string; grpc: string; postgres: string }>;
  /** Overrides of the `replication` config section (durations as text). */
  replication?: Record<string, string | number>;
}

const arg = process.argv[2];
if (arg === undefined) throw new Error("usage: replication-node.ts '<NodeSpec JSON>'");
const spec = JSON.parse(arg) as NodeSpec;

const config = parseConfig(
  {
    node: { id: spec.id },
    spool: { dir: spec.spoolDir, queues: spec.queues, leases: { deadLetterQueue: "dead" } },
    grpc: { listen: spec.grpc },
    http: { listen: spec.http },
    postgres: { url: spec.postgresUrl },
    peers: spec.peers,
    replication: { joinRetry: "300ms", ...spec.replication },
    log: { level: process.env.GEOSPOOL_BENCH_LOG ?? "warn" },
    shutdown: { deadline: "2s" },
  },
  { require: ["postgres.url"], label: `bench node ${spec.id}` },
);
const node = await startNode(config, createLogger({ level: config.log.level }));
const tracer = new Tracer(spec.id);
instrument(node, tracer);
process.stdout.write(`READY ${JSON.stringify({ pid: process.pid })}\n`);

let profiler: WindowProfiler | undefined;
for await (const line of createInterface({ input: process.stdin })) {
  const [command, rest] = [line.split(" ")[0], line.slice(line.indexOf(" ") + 1)];
  if (command === "joins") {
    process.stdout.write(
      `JOINS ${JSON.stringify(Object.fromEntries(node.replication.peerJoins()))}\n`,
    );
  } else if (command === "status") {
    const r = node.replication.replicator;
    process.stdout.write(`STATUS ${JSON.stringify(r.status())}\n`);
  } else if (command === "trace") {
    process.stdout.write(`TRACE ${JSON.stringify(tracer.take())}\n`);
  } else if (command === "profile-start") {
    profiler ??= new WindowProfiler();
    await profiler.start();
    process.stdout.write("PROFILING started\n");
  } else if (command === "profile-stop") {
    await profiler?.stop(rest);
    process.stdout.write(`PROFILED ${rest}\n`);
  }
}
profiler?.close();
await node.stop();
