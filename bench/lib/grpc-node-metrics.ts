/**
 * The node's own timing of each operation (SpoolService, inside the node, without gRPC):
 * the sum and count of geospool_operation_duration_seconds per `op`, scraped from its
 * /metrics. Two scrapes around a window give the mean service time under that load.
 */
export type OperationTotals = Map<string, { seconds: number; count: number }>;

export async function scrapeOperationTotals(httpPort: number): Promise<OperationTotals> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  const text = await res.text();
  const out: OperationTotals = new Map();
  const re = /^geospool_operation_duration_seconds_(sum|count)\{[^}]*op="([^"]+)"[^}]*\} (\S+)$/gm;
  for (const m of text.matchAll(re)) {
    const [, kind, op, value] = m as unknown as [string, string, string, string];
    const t = out.get(op) ?? { seconds: 0, count: 0 };
    if (kind === "sum") t.seconds += Number(value);
    else t.count += Number(value);
    out.set(op, t);
  }
  return out;
}

/** Mean ms per operation between two scrapes. */
export function meanServiceMs(a: OperationTotals, b: OperationTotals): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [op, tb] of b) {
    const ta = a.get(op) ?? { seconds: 0, count: 0 };
    const n = tb.count - ta.count;
    if (n > 0) out[op] = ((tb.seconds - ta.seconds) / n) * 1000;
  }
  return out;
}
