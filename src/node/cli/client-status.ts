import { parseCommand } from "./args.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./client-subcommand.js";
import { Output } from "./output.js";

const PATH = "geospool client status";

export const clientStatus: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} [--json]

Print the answering node's view of the cluster: its id and region, the depth of every
queue, and each peer's connection and replication lag. Needs an admin token when the
node checks tokens.

Options:
  --json   print {endpoint, nodeId, region, queues:[{queue, queued, checkedOut}],
           peers:[{nodeId, region, grpcEndpoint, connected, replicationLagMs, lagBytes,
           slotState, applyErrors, pendingFetches}]}

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
      })),
    };
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
              "ERRORS",
              "FETCHES",
            ],
            view.peers.map((p) => [
              p.nodeId,
              p.region,
              p.grpcEndpoint,
              p.connected ? "yes" : "no",
              `${p.replicationLagMs}ms`,
              String(p.lagBytes),
              p.slotState || "-",
              String(p.applyErrors),
              String(p.pendingFetches),
            ]),
          )),
    ];
    await new Output(io, parsed.values.json === true).result(lines, view);
    return 0;
  },
};

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)];
}
