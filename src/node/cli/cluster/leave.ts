import { dropPeerSlot, leavePeer } from "../../../replication/mesh.js";
import { parseCommand } from "../args.js";
import { CliError } from "../cli-error.js";
import type { Command } from "../command.js";
import { formatDuration, parseDuration } from "../duration.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { DATABASE_OPTIONS_HELP, toClusterCliError, withNodeDatabase } from "./database.js";

const PATH = "geospool cluster leave";
const DEFAULT_TIMEOUT_MS = 15_000;

/** `geospool cluster leave PEER_ID`: stop receiving a peer's journal rows. */
export const clusterLeave: Command = {
  name: "leave",
  summary: "drop this node's subscription to a peer (and its slot on the peer when reachable)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} PEER_ID [--postgres-url URL] [--drop-peer-slot] [options]

Drop this node's subscription to node PEER_ID. The peer's rows already here stay. The slot
on the peer that fed the subscription is dropped too when the peer answers within
--timeout; otherwise it is left there (the peer's idle_replication_slot_timeout, or a leave
run on the peer with --drop-peer-slot, removes it). Safe to repeat (kind not_found).

With --drop-peer-slot, also drop the slot on THIS node's server through which PEER_ID
subscribed to this node (for a peer that is gone for good, so the slot stops holding back
WAL here). A slot still in use is not dropped (exit 10, code slot_active).

A running node joins the peers of its configuration again at its next start: remove the
peer from peers[] first.

Options:
${DATABASE_OPTIONS_HELP}
  --drop-peer-slot     also drop PEER_ID's slot on this node's server (see above)
  --timeout DUR        how long to try the peer to drop its slot (default ${formatDuration(DEFAULT_TIMEOUT_MS)})
  --json               print {node, peer, kind, slot?, slotName?, peerSlot?}`,
        options: {
          "postgres-url": { type: "string" },
          "node-id": { type: "string" },
          "drop-peer-slot": { type: "boolean" },
          timeout: { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["PEER_ID"],
      },
      io,
    );
    if (!parsed) return 0;
    const [peerId] = parsed.positionals as [string];
    const v = parsed.values;
    const timeoutMs =
      v.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration("--timeout", v.timeout);
    const out = new Output(io, v.json === true);
    try {
      return await withNodeDatabase(
        { url: v["postgres-url"], nodeId: v["node-id"], connectTimeoutMs: 10_000 },
        async ({ pool, nodeId }) => {
          const r = await leavePeer(pool, peerId, { timeoutMs });
          const dropped =
            v["drop-peer-slot"] === true
              ? await dropPeerSlot(pool, { selfId: nodeId, peerId })
              : undefined;
          const view = {
            node: nodeId,
            peer: peerId,
            kind: r.kind,
            ...(r.kind === "left" ? { slot: r.slot } : {}),
            ...(r.kind === "left" && r.slot === "left_on_peer" ? { slotName: r.slotName } : {}),
            ...(dropped !== undefined ? { peerSlot: dropped } : {}),
          };
          const lines = [
            r.kind === "not_found"
              ? `${nodeId} does not subscribe to ${peerId}`
              : r.slot === "dropped"
                ? `${nodeId} left ${peerId}; its slot on ${peerId} was dropped`
                : `${nodeId} left ${peerId}; ${peerId} did not answer, so slot ${r.slotName} stays on it`,
          ];
          if (dropped?.kind === "dropped") {
            lines.push(`dropped slot ${dropped.slotName} (${peerId}'s subscription to ${nodeId})`);
          } else if (dropped?.kind === "not_found") {
            lines.push(`no slot ${dropped.slotName} on this server`);
          }
          await out.result(lines, view);
          if (dropped?.kind === "active") {
            throw new CliError(
              "slot_active",
              `slot ${dropped.slotName} is in use${dropped.pid === null ? "" : ` (pid ${dropped.pid})`}: ${peerId} still subscribes to ${nodeId}; make it leave first`,
              ExitCode.Failure,
            );
          }
          if (!out.json && r.kind === "left") {
            await out.note(
              `note: if ${peerId} is listed in this node's peers[], its next start joins it again`,
            );
          }
          return 0;
        },
      );
    } catch (err) {
      throw toClusterCliError(err);
    }
  },
};
