import { parseCommand } from "../args.js";
import { type ClientContext, GLOBAL_HINT } from "../client/subcommand.js";
import type { CliIo } from "../command.js";
import { Output } from "../output.js";

/**
 * The answering node's view of the cluster (the ClusterStatus RPC), as a table or JSON:
 * `geospool cluster status`, also reachable as `geospool client status`.
 */
export async function runClusterStatus(
  path: string,
  args: string[],
  io: CliIo,
  ctx: ClientContext,
): Promise<number> {
  const parsed = await parseCommand(
    args,
    {
      path,
      help: `Usage: ${path} [--json]

Print the answering node's view of the cluster: its id and region, the depth of every
queue, and per peer (every configured peer, and any other it subscribes to):
  CONNECTED   this node's subscription to the peer is up (apply worker running, messages
              received) and the peer's database answers
  LAG         while connected, the peer's replay lag for this node's subscription (0 once
              caught up); while not, the time since the last contact
  LAG BYTES   WAL the peer wrote that this node has not confirmed (0 when the peer's
              database cannot be asked)
  SLOT        state of the slot on the peer that feeds this node: streaming, catchup,
              inactive, missing, invalidated:<reason>, wal_unreserved, wal_lost; or
              not_joined, joining, disabled, unreachable, unknown (docs/operations.md)
  REACHABLE   the peer's node answers this node's heartbeats (a health check every second,
              2 s deadline); else "no, since <time> (<how long>)": cut off or frozen
  ERRORS      the peer's rows that failed to apply (subscription errors + quarantined rows)
  FETCHES     the peer's entries whose data is being fetched or waits for a retry
Needs an admin token when the node checks tokens.

Options:
  --json   print {endpoint, nodeId, region, queues:[{queue, queued, checkedOut}],
           peers:[{nodeId, region, grpcEndpoint, connected, replicationLagMs, lagBytes,
           slotState, applyErrors, pendingFetches, unreachable, unreachableSince}]}
           (unreachableSince: ISO time, or null while reachable)

${GLOBAL_HINT}`,
      options: { json: { type: "boolean" } },
      positionals: [],
    },
    io,
  );
  if (!parsed) return 0;
  const s = await ctx.client().clusterStatus();
  const view = {
    endpoint: s.endpoint,
    nodeId: s.nodeId,
    region: s.region,
    queues: s.queues.map((q) => ({
      queue: q.queue ?? "",
      queued: q.queued,
      checkedOut: q.checkedOut,
    })),
    peers: s.peers.map((p) => ({
      nodeId: p.nodeId ?? "",
      region: p.region ?? "",
      grpcEndpoint: p.grpcEndpoint ?? "",
      connected: p.connected === true,
      replicationLagMs: p.replicationLagMs,
      lagBytes: Number(p.lagBytes ?? 0),
      slotState: p.slotState ?? "",
      applyErrors: Number(p.applyErrors ?? 0),
      pendingFetches: Number(p.pendingFetches ?? 0),
      unreachable: p.unreachable === true,
      unreachableSince:
        p.unreachableSinceMs == null ? null : new Date(p.unreachableSinceMs).toISOString(),
    })),
  };
  const now = Date.now();
  const lines = [
    `node ${view.nodeId} (region ${view.region || "-"}) at ${view.endpoint}`,
    "",
    ...table(
      ["QUEUE", "QUEUED", "CHECKED OUT"],
      view.queues.map((q) => [q.queue, String(q.queued), String(q.checkedOut)]),
    ),
    "",
    ...(view.peers.length === 0
      ? ["peers: none"]
      : table(
          [
            "PEER",
            "REGION",
            "ENDPOINT",
            "CONNECTED",
            "LAG",
            "LAG BYTES",
            "SLOT",
            "REACHABLE",
            "ERRORS",
            "FETCHES",
          ],
          view.peers.map((p) => [
            p.nodeId,
            p.region || "-",
            p.grpcEndpoint || "-",
            p.connected ? "yes" : "no",
            lagText(p.replicationLagMs),
            String(p.lagBytes),
            p.slotState || "-",
            reachableText(p.unreachable, p.unreachableSince, now),
            String(p.applyErrors),
            String(p.pendingFetches),
          ]),
        )),
  ];
  await new Output(io, parsed.values.json === true).result(lines, view);
  return 0;
}

/** `yes`, or `no, since 12:03:04Z (5.2s)`. */
function reachableText(unreachable: boolean, since: string | null, now: number): string {
  if (!unreachable) return "yes";
  if (since === null) return "no";
  return `no, since ${since.slice(11, 19)}Z (${lagText(Math.max(0, now - Date.parse(since)))})`;
}

/** `12ms`, `3.4s`, `5m10s`, `2h3m`. */
function lagText(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)];
}
