import { joinPeer, redactConninfo } from "../../../replication/mesh.js";
import { parseCommand } from "../args.js";
import { CliError } from "../cli-error.js";
import type { Command } from "../command.js";
import { formatDuration, parseDuration } from "../duration.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { DATABASE_OPTIONS_HELP, toClusterCliError, withNodeDatabase } from "./database.js";

const PATH = "geospool cluster join";
const DEFAULT_TIMEOUT_MS = 60_000;

/** `geospool cluster join PEER_ID PEER_POSTGRES_URL`: subscribe this node to a peer's journal. */
export const clusterJoin: Command = {
  name: "join",
  summary: "subscribe this node's database to a peer's journal (bootstraps from its rows)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} PEER_ID PEER_POSTGRES_URL [--postgres-url URL] [options]

Subscribe this node's database to the journal of node PEER_ID, whose database this node's
PostgreSQL server reaches at PEER_POSTGRES_URL (the subscription stores that URL, password
included). The peer's rows this node lacks are copied first, then new ones stream. Safe to
repeat: a join already made is checked (and rebuilt when its slot on the peer was lost or
invalidated), one begun and interrupted is completed. A running node joins the peers of its
configuration by itself; list the peer there too (peers[].grpc is where data is fetched).

Options:
${DATABASE_OPTIONS_HELP}
  --timeout DUR        limit for each statement on the peer (default ${formatDuration(DEFAULT_TIMEOUT_MS)})
  --json               print {peer, kind, subscription, slot, publication, copiedRows?,
                       peerReachable?, reason?}

kind: created, resumed, exists, updated (new URL), rebuilt (reason: slot_missing or
slot_invalidated). Exit codes: 0 joined; 2 usage; 7 the peer's database is unreachable or
does not publish its journal yet (peer_not_ready): try again; 10 other failures.`,
        options: {
          "postgres-url": { type: "string" },
          "node-id": { type: "string" },
          timeout: { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["PEER_ID", "PEER_POSTGRES_URL"],
      },
      io,
    );
    if (!parsed) return 0;
    const [peerId, peerUrl] = parsed.positionals as [string, string];
    const v = parsed.values;
    const timeoutMs =
      v.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration("--timeout", v.timeout);
    try {
      return await withNodeDatabase(
        { url: v["postgres-url"], nodeId: v["node-id"], connectTimeoutMs: 10_000 },
        async ({ pool, nodeId }) => {
          const r = await joinPeer(pool, {
            selfId: nodeId,
            peerId,
            peerConninfo: peerUrl,
            peerTimeoutMs: timeoutMs,
          });
          if (r.kind === "peer_not_ready") {
            throw new CliError(
              "peer_not_ready",
              `${peerId} does not publish its journal yet (not started or not migrated): try again once it runs`,
              ExitCode.Unavailable,
            );
          }
          const view = {
            node: nodeId,
            peer: peerId,
            kind: r.kind,
            subscription: r.names.subscription,
            slot: r.names.slot,
            publication: r.names.publication,
            conninfo: redactConninfo(peerUrl),
            ...("copiedRows" in r ? { copiedRows: r.copiedRows } : {}),
            ...("peerReachable" in r ? { peerReachable: r.peerReachable } : {}),
            ...("reason" in r ? { reason: r.reason } : {}),
          };
          const what =
            r.kind === "exists"
              ? `already joined${r.peerReachable ? "" : " (the peer could not be checked just now)"}`
              : r.kind === "updated"
                ? "already joined; connection string updated"
                : `${r.kind}${"reason" in r ? ` (${r.reason})` : ""}, ${r.copiedRows} rows copied`;
          await new Output(io, v.json === true).result(
            [
              `${nodeId} joined ${peerId}: ${what}`,
              `  subscription ${view.subscription} here, slot ${view.slot} on ${peerId}`,
            ],
            view,
          );
          return 0;
        },
      );
    } catch (err) {
      throw toClusterCliError(err);
    }
  },
};
