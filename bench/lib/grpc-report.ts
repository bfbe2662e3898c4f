/** The medians, ratios and printed tables of bench/grpc.ts. */
import { isGeospool, type SideName } from "./grpc-sides.js";
import { sig3 } from "./grpc-stats.js";
import { median } from "./spool-stats.js";

export interface RunRecord {
  round: number;
  side: SideName;
  concurrency: number;
  jobs: number;
  elapsedMs: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; mean: number; max: number };
  /** Client-side time of each call. */
  phasesMs: Record<"enqueue" | "dequeue" | "complete", { p50: number; p99: number; mean: number }>;
  /** geospool: the node's own mean time per operation (its metrics), without gRPC. */
  nodeServiceMeanMs?: Record<string, number>;
  emptyDequeues: number;
  /**
   * CPU ms per job inside the window: the bench process (clients), the server side (the
   * geospool node process plus its PostgreSQL; pg-boss's PostgreSQL), of which PostgreSQL.
   */
  cpuMsPerJob: {
    client: number;
    server: number;
    serverPostgres: number;
    /** geospool: the node process's main (JavaScript) thread. */
    serverMainThread?: number;
    total: number;
  };
  /**
   * Requests completed by the block device holding the bench's data in the window, per job:
   * writes, and cache flushes (what fsyncs cost the disk). Both sides' servers write there.
   */
  diskPerJob?: { writes: number; flushes: number };
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

export function summarize(
  runs: readonly RunRecord[],
  concurrencies: readonly number[],
  sides: readonly SideName[],
) {
  const results = concurrencies.flatMap((concurrency) =>
    sides.map((side) => {
      const mine = runs.filter((r) => r.side === side && r.concurrency === concurrency);
      const med = (f: (r: RunRecord) => number) => sig3(median(mine.map(f)));
      return {
        side,
        concurrency,
        median: {
          perSecond: med((r) => r.perSecond),
          latencyP50Ms: med((r) => r.latencyMs.p50),
          latencyP99Ms: med((r) => r.latencyMs.p99),
          enqueueP50Ms: med((r) => r.phasesMs.enqueue.p50),
          dequeueP50Ms: med((r) => r.phasesMs.dequeue.p50),
          completeP50Ms: med((r) => r.phasesMs.complete.p50),
          enqueueMeanMs: med((r) => r.phasesMs.enqueue.mean),
          dequeueMeanMs: med((r) => r.phasesMs.dequeue.mean),
          completeMeanMs: med((r) => r.phasesMs.complete.mean),
          ...(isGeospool(side)
            ? {
                nodeEnqueueMeanMs: med(
                  (r) =>
                    r.nodeServiceMeanMs?.enqueue ??
                    r.nodeServiceMeanMs?.enqueue_batch ??
                    Number.NaN,
                ),
                nodeDequeueMeanMs: med((r) => r.nodeServiceMeanMs?.dequeue ?? Number.NaN),
                nodeCompleteMeanMs: med((r) => r.nodeServiceMeanMs?.complete ?? Number.NaN),
              }
            : {}),
          cpuMsPerJobClient: med((r) => r.cpuMsPerJob.client),
          cpuMsPerJobServer: med((r) => r.cpuMsPerJob.server),
          cpuMsPerJobServerPostgres: med((r) => r.cpuMsPerJob.serverPostgres),
          ...(mine.every((r) => r.diskPerJob !== undefined)
            ? {
                diskWritesPerJob: med((r) => r.diskPerJob?.writes ?? Number.NaN),
                diskFlushesPerJob: med((r) => r.diskPerJob?.flushes ?? Number.NaN),
              }
            : {}),
          ...(isGeospool(side)
            ? { cpuMsPerJobNodeMainThread: med((r) => r.cpuMsPerJob.serverMainThread ?? 0) }
            : {}),
        },
        runs: mine,
      };
    }),
  );
  const of = (side: SideName, c: number) =>
    results.find((r) => r.side === side && r.concurrency === c)?.median;
  const targets = {
    throughputRatioAtLeast: 1.0,
    latencyRatioAtMost: 1.0,
    note: "the issue's target: geospool at least 1.0x pg-boss (throughput geospool/pg-boss >= 1; latency geospool/pg-boss <= 1)",
  };
  const ratios = concurrencies.flatMap((concurrency) => {
    const g = of("geospool", concurrency);
    const p = of("pg-boss", concurrency);
    if (!g || !p) return [];
    const throughput = sig3(g.perSecond / p.perSecond);
    // What the Complete that takes the next job gives, against the same node in three calls.
    const unary = of("geospool-unary", concurrency);
    const three = of("geospool-3call", concurrency);
    const gain = {
      // What the Session stream gives, against the same two calls made as calls.
      ...(unary ? { overUnaryCalls: sig3(g.perSecond / unary.perSecond) } : {}),
      ...(three ? { overThreeCalls: sig3(g.perSecond / three.perSecond) } : {}),
    };
    const latencyP50 = sig3(g.latencyP50Ms / p.latencyP50Ms);
    const latencyP99 = sig3(g.latencyP99Ms / p.latencyP99Ms);
    return [
      {
        concurrency,
        throughput,
        latencyP50,
        latencyP99,
        ...gain,
        meetsTarget:
          throughput >= targets.throughputRatioAtLeast &&
          latencyP50 <= targets.latencyRatioAtMost &&
          latencyP99 <= targets.latencyRatioAtMost,
      },
    ];
  });
  return { results, ratios, targets };
}

export type Summary = ReturnType<typeof summarize>;

export function printSummary(results: Summary["results"], ratios: Summary["ratios"]): void {
  console.log(
    "\nmedians            jobs/s  p50 ms  p99 ms   enq/deq/compl p50 ms   cpu ms/job client+server",
  );
  for (const r of results) {
    const m = r.median;
    console.log(
      `c=${pad(r.concurrency, 2)} ${r.side.padEnd(14)}  ${pad(m.perSecond, 8)} ${pad(m.latencyP50Ms, 7)} ` +
        `${pad(m.latencyP99Ms, 7)}   ${pad(`${m.enqueueP50Ms}/${m.dequeueP50Ms}/${m.completeP50Ms}`, 20)}   ` +
        `${m.cpuMsPerJobClient}+${m.cpuMsPerJobServer} (pg ${m.cpuMsPerJobServerPostgres})`,
    );
  }
  const split = results.filter((r) => isGeospool(r.side));
  if (split.length > 0) {
    console.log(
      "\ngeospool calls, mean ms: seen by the client = inside the node (SpoolService) + the rest (gRPC, client, waiting for a CPU)",
    );
    for (const r of split) {
      const m = r.median as Record<string, number>;
      const parts = (["enqueue", "dequeue", "complete"] as const).map((op) => {
        const seen = m[`${op}MeanMs`] ?? Number.NaN;
        const inside = m[`node${op[0]?.toUpperCase()}${op.slice(1)}MeanMs`] ?? Number.NaN;
        return `${op} ${seen} = ${inside} + ${sig3(seen - inside)}`;
      });
      console.log(`c=${pad(r.concurrency, 2)} ${r.side.padEnd(14)}  ${parts.join("   ")}`);
    }
  }
  console.log(
    "\ngeospool/pg-boss   throughput (>= 1.0)  latency p50 (<= 1.0)  latency p99 (<= 1.0)",
  );
  for (const r of ratios) {
    console.log(
      `c=${pad(r.concurrency, 2)}              ${pad(`${r.throughput}x`, 10)}           ` +
        `${pad(`${r.latencyP50}x`, 10)}            ${pad(`${r.latencyP99}x`, 10)}` +
        `   ${r.meetsTarget ? "meets target" : "BELOW TARGET"}` +
        ("overUnaryCalls" in r ? `   (geospool/geospool-unary ${r.overUnaryCalls}x)` : "") +
        ("overThreeCalls" in r ? `   (geospool/geospool-3call ${r.overThreeCalls}x)` : ""),
    );
  }
}
