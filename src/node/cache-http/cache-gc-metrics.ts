import { Counter, Histogram, type Registry } from "prom-client";
import type { GcReport } from "../../cache/gc.js";

/**
 * The cache GC's metrics, on the node's registry:
 *
 * - `geospool_cache_gc_runs_total{outcome}`: GC runs that removed (`done`, also when there
 *   was nothing to remove), were held back by the fence (`blocked`) or failed (`failed`);
 *   dry runs are not counted;
 * - `geospool_cache_gc_removed_entries_total`, `geospool_cache_gc_freed_bytes_total`;
 * - `geospool_cache_gc_duration_seconds` (histogram, every run that finished).
 */
export class CacheGcMetrics {
  private readonly runs: Counter<"outcome">;
  private readonly removed: Counter;
  private readonly freed: Counter;
  private readonly duration: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: "geospool_cache_gc_runs_total",
      help: "Cache GC runs, by outcome (done, blocked, failed); dry runs not counted",
      labelNames: ["outcome"],
      registers,
    });
    this.removed = new Counter({
      name: "geospool_cache_gc_removed_entries_total",
      help: "Cache entries removed by GC",
      registers,
    });
    this.freed = new Counter({
      name: "geospool_cache_gc_freed_bytes_total",
      help: "Bytes of nar data removed by GC",
      registers,
    });
    this.duration = new Histogram({
      name: "geospool_cache_gc_duration_seconds",
      help: "Duration of cache GC runs",
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      registers,
    });
  }

  record(report: GcReport): void {
    if (report.dryRun) return;
    this.runs.inc({ outcome: report.blocked === undefined ? "done" : "blocked" });
    this.removed.inc(report.removed.length);
    this.freed.inc(report.bytesFreed);
    this.duration.observe(report.durationMs / 1000);
  }

  failed(): void {
    this.runs.inc({ outcome: "failed" });
  }
}
