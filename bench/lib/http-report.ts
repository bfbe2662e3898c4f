/** Medians, ratios and the table of bench/http.ts. */
import { sig3 } from "./grpc-stats.js";
import type { NarGetResult, WrkResult } from "./http-load.js";

/**
 * node-off: the same node process with the cache's per-path request counting switched off;
 * node-http: node:http alone, no cache (bench/lib/http-floor.ts).
 */
export type Side = "node" | "node-off" | "nginx" | "node-http";

type NarinfoRun = WrkResult & {
  side: Side;
  mode: "hit" | "miss";
  rssMb: number;
  /** CPU time of the serving process per request (µs; the nginx worker's for nginx). */
  cpuUsPerReq: number;
};
type NarRun = NarGetResult & { side: Side; rssBeforeMb: number; rssPeakMb: number };

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export const HTTP_TARGETS = {
  narinfoReqPerSecRatio: 0.5,
  narinfoP99Ms: 5,
  nodeRssMb: 300,
  narThroughputRatio: 0.8,
  narRssGrowthMb: 64,
};

export function summarizeHttp(input: {
  narinfoRuns: readonly NarinfoRun[];
  narRuns: readonly NarRun[];
  sides: readonly Side[];
}) {
  const narinfo: Record<string, Record<string, Record<string, number>>> = {};
  for (const mode of ["hit", "miss"] as const) {
    narinfo[mode] = {};
    for (const side of input.sides) {
      const runs = input.narinfoRuns.filter((r) => r.side === side && r.mode === mode);
      const wrong = runs.reduce(
        (n, r) => n + (mode === "hit" ? r.statusErrors : r.requests - r.statusErrors),
        0,
      );
      (narinfo[mode] as Record<string, Record<string, number>>)[side] = {
        reqPerSec: sig3(median(runs.map((r) => r.reqPerSec))),
        p50Ms: sig3(median(runs.map((r) => r.p50Ms))),
        p99Ms: sig3(median(runs.map((r) => r.p99Ms))),
        maxMs: sig3(Math.max(...runs.map((r) => r.maxMs))),
        rssMb: sig3(Math.max(...runs.map((r) => r.rssMb))),
        cpuUsPerReq: sig3(median(runs.map((r) => r.cpuUsPerReq))),
        /** Hits answered other than 2xx, or misses answered 2xx: should be 0. */
        wrongStatus: wrong,
        socketErrors: runs.reduce((n, r) => n + r.socketErrors, 0),
      };
    }
  }
  const nar: Record<string, Record<string, number>> = {};
  for (const side of input.sides) {
    const runs = input.narRuns.filter((r) => r.side === side);
    if (runs.length === 0) continue; // node-http serves narinfos only
    nar[side] = {
      mbPerSec: sig3(median(runs.map((r) => r.mbPerSec))),
      rssBeforeMb: sig3(Math.min(...runs.map((r) => r.rssBeforeMb))),
      rssPeakMb: sig3(Math.max(...runs.map((r) => r.rssPeakMb))),
      rssGrowthMb: sig3(Math.max(...runs.map((r) => r.rssPeakMb - r.rssBeforeMb))),
    };
  }
  // A ratio is undefined when either side was not run (its figures are then missing).
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined ? sig3(a / b) : undefined;
  const side = (mode: string, s: Side) => narinfo[mode]?.[s];
  /** `key` of side `a` over side `b`, for narinfo `mode`. */
  const over = (mode: "hit" | "miss", key: string, a: Side, b: Side) =>
    ratio(side(mode, a)?.[key], side(mode, b)?.[key]);
  const ratios = {
    hitReqPerSec: over("hit", "reqPerSec", "node", "nginx"),
    missReqPerSec: over("miss", "reqPerSec", "node", "nginx"),
    hitP99: over("hit", "p99Ms", "node", "nginx"),
    missP99: over("miss", "p99Ms", "node", "nginx"),
    narThroughput: ratio(nar.node?.mbPerSec, nar.nginx?.mbPerSec),
  };
  // The node against node:http alone, and node:http alone against nginx (same run).
  const nodeHttpFloor =
    input.sides.includes("node") && input.sides.includes("node-http")
      ? {
          hitReqPerSec: over("hit", "reqPerSec", "node", "node-http"),
          missReqPerSec: over("miss", "reqPerSec", "node", "node-http"),
          floorOverNginxHit: over("hit", "reqPerSec", "node-http", "nginx"),
          floorOverNginxMiss: over("miss", "reqPerSec", "node-http", "nginx"),
        }
      : undefined;
  // Request analytics on (node) against off (node-off), same process, same run.
  const analytics = {
    hitReqPerSec: over("hit", "reqPerSec", "node", "node-off"),
    missReqPerSec: over("miss", "reqPerSec", "node", "node-off"),
    hitP99: over("hit", "p99Ms", "node", "node-off"),
    missP99: over("miss", "p99Ms", "node", "node-off"),
    hitCpuPerReq: over("hit", "cpuUsPerReq", "node", "node-off"),
    missCpuPerReq: over("miss", "cpuUsPerReq", "node", "node-off"),
  };
  const nodeRss = Math.max(
    side("hit", "node")?.rssMb ?? 0,
    side("miss", "node")?.rssMb ?? 0,
    nar.node?.rssPeakMb ?? 0,
  );
  const met = {
    hitReqPerSec: (ratios.hitReqPerSec ?? 0) >= HTTP_TARGETS.narinfoReqPerSecRatio,
    missReqPerSec: (ratios.missReqPerSec ?? 0) >= HTTP_TARGETS.narinfoReqPerSecRatio,
    p99:
      (side("hit", "node")?.p99Ms ?? Infinity) < HTTP_TARGETS.narinfoP99Ms &&
      (side("miss", "node")?.p99Ms ?? Infinity) < HTTP_TARGETS.narinfoP99Ms,
    nodeRss: nodeRss < HTTP_TARGETS.nodeRssMb,
    narThroughput: (ratios.narThroughput ?? 0) >= HTTP_TARGETS.narThroughputRatio,
    narRssGrowth: (nar.node?.rssGrowthMb ?? Infinity) < HTTP_TARGETS.narRssGrowthMb,
  };
  return {
    narinfo,
    nar,
    ratios,
    analyticsOnOff: analytics,
    nodeHttpFloor,
    nodeRssMb: sig3(nodeRss),
    targets: HTTP_TARGETS,
    met,
  };
}

export function printHttpReport(s: ReturnType<typeof summarizeHttp>): void {
  const pad = (x: unknown, n: number) => String(x).padStart(n);
  console.log("\nnarinfo GET (medians)");
  console.log("mode  side       req/s    p50 ms   p99 ms   RSS MB  wrong  CPU us/req");
  for (const [mode, bySide] of Object.entries(s.narinfo)) {
    for (const [side, r] of Object.entries(bySide)) {
      console.log(
        `${mode.padEnd(5)} ${side.padEnd(8)} ${pad(r.reqPerSec, 8)} ${pad(r.p50Ms, 9)} ${pad(r.p99Ms, 8)} ${pad(r.rssMb, 8)} ${pad(r.wrongStatus, 6)} ${pad(r.cpuUsPerReq, 11)}`,
      );
    }
  }
  console.log("\nnar GET (median MB/s; RSS before -> peak)");
  for (const [side, r] of Object.entries(s.nar)) {
    console.log(
      `${side.padEnd(5)} ${pad(r.mbPerSec, 8)} MB/s  RSS ${r.rssBeforeMb} -> ${r.rssPeakMb} MB (growth ${r.rssGrowthMb})`,
    );
  }
  const r = s.ratios;
  const mark = (ok: boolean) => (ok ? "met" : "NOT met");
  console.log("\nratios node/nginx (targets)");
  console.log(`  narinfo hit req/s   ${r.hitReqPerSec}x  (>= 0.5: ${mark(s.met.hitReqPerSec)})`);
  console.log(`  narinfo miss req/s  ${r.missReqPerSec}x  (>= 0.5: ${mark(s.met.missReqPerSec)})`);
  console.log(
    `  p99 hit/miss ratio  ${r.hitP99}x / ${r.missP99}x  (node p99 < 5 ms: ${mark(s.met.p99)})`,
  );
  console.log(`  node RSS            ${s.nodeRssMb} MB  (< 300: ${mark(s.met.nodeRss)})`);
  console.log(`  nar throughput      ${r.narThroughput}x  (>= 0.8: ${mark(s.met.narThroughput)})`);
  console.log(
    `  nar RSS growth      ${s.nar.node?.rssGrowthMb} MB  (< 64: ${mark(s.met.narRssGrowth)})`,
  );
  const f = s.nodeHttpFloor;
  if (f !== undefined) {
    console.log("\nnode:http alone, no cache (node-http), same run");
    console.log(`  node/node-http req/s   hit ${f.hitReqPerSec}x  miss ${f.missReqPerSec}x`);
    console.log(
      `  node-http/nginx req/s  hit ${f.floorOverNginxHit}x  miss ${f.floorOverNginxMiss}x`,
    );
  }
  const a = s.analyticsOnOff;
  if (a.hitReqPerSec !== undefined) {
    console.log("\nrequest analytics on/off (same node process)");
    console.log(
      `  narinfo hit req/s   ${a.hitReqPerSec}x   p99 ${a.hitP99}x   CPU/req ${a.hitCpuPerReq}x`,
    );
    console.log(
      `  narinfo miss req/s  ${a.missReqPerSec}x   p99 ${a.missP99}x   CPU/req ${a.missCpuPerReq}x`,
    );
  }
}
