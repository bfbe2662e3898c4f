import pg from "pg";
import {
  type ClusterRequestReport,
  readClusterRequestReport,
} from "../../../cache/request-report-cluster.js";
import { type RequestReport, readRequestReport } from "../../../cache/request-stats-store.js";
import { parseDuration } from "../../../common/units.js";
import { redactUrl } from "../../config/schema.js";
import { parseCommand, parseCount } from "../args.js";
import { CliError, usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { loadNodeSettings, NODE_SETTINGS_HELP, splitNodeSettings, table } from "./node-files.js";

const PATH = "geospool cache stats";

/** SQLSTATE undefined_table: a database no node of this version has migrated. */
const UNDEFINED_TABLE = "42P01";

/** `--since`: a duration back from now (`7d`, `12h`) or a date (`2026-12-01`, ISO 8601). */
export function parseSince(text: string, now: number): number {
  const ms = parseDuration(text);
  if (ms !== undefined) return now - ms;
  const t = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(t)) {
    throw usageError(
      `--since: expected a duration (e.g. 24h, 7d) or a date (e.g. 2026-12-01), got ${JSON.stringify(text)}`,
    );
  }
  return t;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "-" : `${((100 * part) / whole).toFixed(1)}%`;
}

function human(r: RequestReport | ClusterRequestReport): string[] {
  const nodes =
    "nodes" in r
      ? r.nodes.map((n) =>
          n.error !== undefined
            ? `node ${n.node}: NOT COUNTED: ${n.error}`
            : `node ${n.node}: ${n.narinfo!.hits + n.narinfo!.misses} narinfo, ${n.nar!.hits + n.nar!.misses} nar requests`,
        )
      : [];
  if (r.from === null) return [...nodes, "no requests counted"];
  const narinfos = r.narinfo.hits + r.narinfo.misses;
  const lines = [
    ...nodes,
    `buckets ${r.from} to ${r.to}`,
    `narinfo  ${narinfos} requests: ${r.narinfo.hits} hits, ${r.narinfo.misses} misses (${percent(r.narinfo.hits, narinfos)} hits)`,
    `nar      ${r.nar.hits + r.nar.misses} requests: ${r.nar.hits} found, ${r.nar.misses} missing; ${bytes(r.nar.bytes)} sent`,
  ];
  if (r.narinfo.unkeyed + r.nar.unkeyed > 0) {
    lines.push(
      `unkeyed  ${r.narinfo.unkeyed} narinfo and ${r.nar.unkeyed} nar requests counted without their path (cache.analytics.maxKeys, maxKeysPerBucket)`,
    );
  }
  if (r.topNarinfos.length > 0) {
    lines.push(
      "",
      table(
        ["HASH PART", "HITS", "MISSES", "STORE PATH"],
        r.topNarinfos.map((n) => [
          n.hashPart,
          String(n.hits),
          String(n.misses),
          n.storePath ?? "-",
        ]),
      ),
    );
  }
  if (r.topNars.length > 0) {
    lines.push(
      "",
      table(
        ["NAR", "REQUESTS", "MISSING", "SENT"],
        r.topNars.map((n) => [n.path, String(n.hits), String(n.misses), bytes(n.bytes)]),
      ),
    );
  }
  if (r.missedNeverServed.length > 0) {
    lines.push(
      "",
      table(
        ["MISSED, NEVER SERVED", "MISSES"],
        r.missedNeverServed.map((m) => [m.hashPart, String(m.misses)]),
      ),
    );
  }
  return lines;
}

/**
 * A pool for one node's database. Bounded waits: a peer that does not answer (a cut
 * network, a stopped server) is reported NOT COUNTED instead of holding the command.
 */
function openPool(url: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    connectionTimeoutMillis: 10_000,
    query_timeout: 60_000,
  });
  pool.on("error", () => undefined);
  return pool;
}

export const cacheStats: Command = {
  name: "stats",
  summary: "request analytics: top paths, hits and misses, misses of paths never served",
  async run(args, io) {
    const { settings, rest } = splitNodeSettings(args);
    const parsed = await parseCommand(
      rest,
      {
        path: PATH,
        help: `Usage: ${PATH} [--config FILE] [--<key> VALUE ...] [--since WHEN] [--top N] [--json]

What this node's binary cache was asked for, from the counts it keeps in its own
PostgreSQL (cache.analytics; postgres.url): narinfo hits and misses, nar requests and bytes
sent, the narinfos asked for most, the nars by bytes sent, and the hash parts asked for
and never found (no hit in any kept bucket, nothing served now): what a mirror may want
to upload. Counts reach the database every cache.analytics.flushEvery (and when the node
stops), so the latest interval is not shown yet. Each node counts what it served: with
--cluster the counts of this node and of every peer with a \`postgres\` URL in the
configuration (peers[].postgres, the one replication uses) are added up.

${NODE_SETTINGS_HELP}

Options:
  --since WHEN  only buckets from then: a duration back from now (24h, 7d) or a date
                (2026-12-01, ISO 8601); default: every bucket kept (cache.analytics.keepFor)
  --top N       rows per list (default 20)
  --cluster     add up every node's counts (this node's and its peers' databases); the
                lists rank the sums of each node's top N×5 (a path below that on every
                node is not shown); a node that cannot be read is named and left out of
                the sums, and the exit code is then 1
  --json        print one JSON object {since, from, to, narinfo: {hits, misses, bytes,
                unkeyed}, nar: {...}, topNarinfos: [{hashPart, storePath, hits, misses}],
                topNars: [{path, hits, misses, bytes}], missedNeverServed: [{hashPart,
                misses}]}; with --cluster also nodes: [{node, narinfo, nar, error}]`,
        options: {
          since: { type: "string" },
          top: { type: "string" },
          json: { type: "boolean" },
          cluster: { type: "boolean" },
        },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const out = new Output(io, parsed.values.json === true);
    const since =
      parsed.values.since === undefined ? undefined : parseSince(parsed.values.since, Date.now());
    const top = parsed.values.top === undefined ? 20 : parseCount("--top", parsed.values.top);
    if (top < 1) throw usageError("--top: must be at least 1");
    const config = loadNodeSettings(settings);
    const url = config.postgres.url;
    if (!url) {
      throw usageError(
        "postgres.url is not set: the node's database (--postgres.url URL, GEOSPOOL_POSTGRES__URL or the config file)",
      );
    }
    if (parsed.values.cluster === true) {
      // A database listed twice (a peer given this node's URL) is counted once.
      const seen = new Set<string>();
      const sources: { node: string; pool: pg.Pool | undefined }[] = [];
      for (const s of [
        { node: config.node.id, url },
        ...config.peers.map((p) => ({ node: p.id, url: p.postgres })),
      ]) {
        if (s.url !== undefined && seen.has(s.url)) continue;
        if (s.url !== undefined) seen.add(s.url);
        sources.push({ node: s.node, pool: s.url === undefined ? undefined : openPool(s.url) });
      }
      try {
        const report = await readClusterRequestReport(sources, { since, top });
        const sinceIso = since === undefined ? null : new Date(since).toISOString();
        await out.result(human(report), { since: sinceIso, ...report });
        // Partial sums are printed, but a script learns that a node was left out.
        return report.nodes.some((n) => n.error !== undefined) ? ExitCode.ProblemsRemain : 0;
      } finally {
        await Promise.all(sources.map((s) => s.pool?.end()));
      }
    }
    const pool = openPool(url);
    let report: RequestReport;
    try {
      report = await readRequestReport(pool, { since, top });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === UNDEFINED_TABLE) {
        throw new CliError(
          "no_counts",
          `the database at ${redactUrl(url)} has no request counts (no node of this version has run on it)`,
          ExitCode.Failure,
          { cause: err },
        );
      }
      throw new CliError(
        "database",
        `cannot read the node's database at ${redactUrl(url)}: ${(err as Error).message}`,
        ExitCode.Failure,
        { cause: err },
      );
    } finally {
      await pool.end();
    }
    const sinceIso = since === undefined ? null : new Date(since).toISOString();
    await out.result(human(report), { since: sinceIso, ...report });
    return 0;
  },
};
