import type pg from "pg";
import {
  type KindTotals,
  type NarCount,
  type NarinfoCount,
  narCounts,
  narinfoCounts,
  type RequestReport,
  type RequestReportOptions,
  readRequestReport,
} from "./request-stats-store.js";

/** One node's database, read for the cluster's report. */
export interface ReportSource {
  node: string;
  /** Undefined: the node's database is not known here (a peer listed without `postgres`). */
  pool: pg.Pool | undefined;
}

/** What one node added to the cluster's report, or why it could not. */
export interface NodeReportPart {
  node: string;
  narinfo?: KindTotals;
  nar?: KindTotals;
  error?: string;
}

export interface ClusterRequestReport extends RequestReport {
  nodes: NodeReportPart[];
}

/**
 * How many rows of each list every node offers as candidates, per row the report shows. A
 * path is counted exactly over every node once it is a candidate; one that is below this
 * on every node (and so in no node's candidates) is not shown, even if its sum would rank.
 */
export const CANDIDATES_PER_ROW = 5;

/**
 * The request analytics of several nodes added up: each node counts what it served in its
 * own PostgreSQL (request-stats-store.ts), so the cluster's view asks each one. Totals are
 * summed; the top lists come from each node's top `top × CANDIDATES_PER_ROW`, then every
 * candidate is counted on every node and the sums ranked as one node ranks its own
 * (narinfos by requests, nars by bytes sent). A hash part is "missed, never served" when
 * no node serves it now and no node ever found it. A node whose database cannot be read is
 * reported in `nodes` with its error and left out of the sums.
 */
export async function readClusterRequestReport(
  sources: readonly ReportSource[],
  options: RequestReportOptions,
): Promise<ClusterRequestReport> {
  const since = options.since ?? 0;
  const wide = { since, top: options.top * CANDIDATES_PER_ROW };
  const parts = await Promise.all(
    sources.map(async (s) => {
      if (s.pool === undefined) {
        return {
          source: s,
          error: "its PostgreSQL URL is not in this configuration (peers[].postgres)",
        };
      }
      try {
        return { source: s, report: await readRequestReport(s.pool, wide) };
      } catch (err) {
        return { source: s, error: (err as Error).message };
      }
    }),
  );
  const read = parts.filter(
    (p): p is { source: ReportSource & { pool: pg.Pool }; report: RequestReport } =>
      "report" in p && p.report !== undefined,
  );

  const narinfoKeys = unique(read.flatMap((p) => p.report.topNarinfos.map((n) => n.hashPart)));
  const narKeys = unique(read.flatMap((p) => p.report.topNars.map((n) => n.path)));
  const missedKeys = unique(read.flatMap((p) => p.report.missedNeverServed.map((m) => m.hashPart)));

  const narinfos = new Map<string, NarinfoCount>();
  const nars = new Map<string, NarCount>();
  const missed = new Map<string, number>();
  const ruledOut = new Set<string>();
  const counted = await Promise.all(
    read.map(async (p) => {
      try {
        return await countCandidates(p.source.pool, since, narinfoKeys, narKeys, missedKeys);
      } catch (err) {
        return { error: (err as Error).message };
      }
    }),
  );
  const nodes: NodeReportPart[] = parts.map((p) =>
    "error" in p && p.error !== undefined
      ? { node: p.source.node, error: p.error }
      : { node: p.source.node },
  );
  let from: string | null = null;
  let to: string | null = null;
  const totals = { narinfo: zero(), nar: zero() };
  read.forEach((p, i) => {
    const c = counted[i]!;
    const part = nodes.find((n) => n.node === p.source.node)!;
    if ("error" in c) {
      part.error = c.error;
      return;
    }
    part.narinfo = p.report.narinfo;
    part.nar = p.report.nar;
    add(totals.narinfo, p.report.narinfo);
    add(totals.nar, p.report.nar);
    if (p.report.from !== null && (from === null || p.report.from < from)) from = p.report.from;
    if (p.report.to !== null && (to === null || p.report.to > to)) to = p.report.to;
    for (const n of c.narinfos) {
      const have = narinfos.get(n.hashPart);
      if (have === undefined) narinfos.set(n.hashPart, { ...n });
      else {
        have.hits += n.hits;
        have.misses += n.misses;
        have.storePath ??= n.storePath;
      }
    }
    for (const n of c.nars) {
      const have = nars.get(n.path);
      if (have === undefined) nars.set(n.path, { ...n });
      else {
        have.hits += n.hits;
        have.misses += n.misses;
        have.bytes += n.bytes;
      }
    }
    for (const [key, misses] of c.missed) missed.set(key, (missed.get(key) ?? 0) + misses);
    for (const key of c.servedOrFound) ruledOut.add(key);
  });

  const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return {
    from,
    to,
    narinfo: totals.narinfo,
    nar: totals.nar,
    topNarinfos: [...narinfos.values()]
      .sort((a, b) => b.hits + b.misses - (a.hits + a.misses) || byName(a.hashPart, b.hashPart))
      .slice(0, options.top),
    topNars: [...nars.values()]
      .sort((a, b) => b.bytes - a.bytes || b.hits - a.hits || byName(a.path, b.path))
      .slice(0, options.top),
    missedNeverServed: [...missed.entries()]
      .filter(([key, misses]) => misses > 0 && !ruledOut.has(key))
      .map(([hashPart, misses]) => ({ hashPart, misses }))
      .sort((a, b) => b.misses - a.misses || byName(a.hashPart, b.hashPart))
      .slice(0, options.top),
    nodes,
  };
}

/** One node's exact counts for the candidates, and which missed ones it serves or found. */
async function countCandidates(
  pool: pg.Pool,
  since: number,
  narinfoKeys: string[],
  narKeys: string[],
  missedKeys: string[],
) {
  const range = "bucket >= to_timestamp($1 / 1000.0)";
  const narinfos = await narinfoCounts(pool, since, { keys: narinfoKeys });
  const nars = await narCounts(pool, since, { keys: narKeys });
  const missed = await pool.query<{ key: string; misses: string }>(
    `select key, sum(misses) as misses from cache_request_counts
      where ${range} and kind = 'narinfo' and key = any($2) group by key`,
    [since, missedKeys],
  );
  // Served here now, or found here at any time (any bucket): then not "never served".
  const servedOrFound = await pool.query<{ key: string }>(
    `select hash_part as key from cache_served where hash_part = any($1)
     union
     select key from cache_request_counts
      where kind = 'narinfo' and key = any($1) and hits > 0`,
    [missedKeys],
  );
  return {
    narinfos,
    nars,
    missed: missed.rows.map((r) => [r.key, Number(r.misses)] as const),
    servedOrFound: servedOrFound.rows.map((r) => r.key),
  };
}

function unique(keys: string[]): string[] {
  return [...new Set(keys)];
}

function zero(): KindTotals {
  return { hits: 0, misses: 0, bytes: 0, unkeyed: 0 };
}

function add(into: KindTotals, t: KindTotals): void {
  into.hits += t.hits;
  into.misses += t.misses;
  into.bytes += t.bytes;
  into.unkeyed += t.unkeyed;
}
