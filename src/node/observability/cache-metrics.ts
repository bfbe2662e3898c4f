import { Counter, type Registry } from "prom-client";
import type { RequestTotals } from "../../cache/request-stats.js";

/**
 * The binary cache's request counters, read from the cache's running totals when /metrics
 * is scraped (the request path only adds to plain numbers):
 * - geospool_cache_requests_total{kind="narinfo"|"nar", outcome="hit"|"miss"}
 * - geospool_cache_nar_bytes_total: nar body bytes sent (completed bodies)
 * - geospool_cache_requests_unkeyed_total: requests counted without their path, past
 *   cache.analytics.maxKeys distinct paths between two flushes.
 */
export function registerCacheRequestMetrics(registry: Registry, totals: () => RequestTotals) {
  const registers = [registry];
  new Counter({
    name: "geospool_cache_requests_total",
    help: "Binary cache requests answered, by kind (narinfo, nar) and outcome (hit, miss).",
    labelNames: ["kind", "outcome"] as const,
    registers,
    collect() {
      const t = totals();
      this.reset();
      this.inc({ kind: "narinfo", outcome: "hit" }, t.narinfoHits);
      this.inc({ kind: "narinfo", outcome: "miss" }, t.narinfoMisses);
      this.inc({ kind: "nar", outcome: "hit" }, t.narHits);
      this.inc({ kind: "nar", outcome: "miss" }, t.narMisses);
    },
  });
  new Counter({
    name: "geospool_cache_nar_bytes_total",
    help: "Nar body bytes the binary cache sent (completed bodies).",
    registers,
    collect() {
      this.reset();
      this.inc(totals().narBytes);
    },
  });
  new Counter({
    name: "geospool_cache_requests_unkeyed_total",
    help: "Cache requests counted without their path: more distinct paths than cache.analytics.maxKeys between two flushes.",
    registers,
    collect() {
      this.reset();
      this.inc(totals().overflowed);
    },
  });
}
