import type { Logger } from "pino";
import { MeshError, MeshErrorCode, SQLSTATE, sqlstateOf } from "./mesh-errors.js";
import { type PeerQuery, withPeer } from "./mesh-peer.js";

interface RemoteSlotRow {
  active: boolean;
  wal_status: string | null;
  invalidation_reason: string | null;
  plugin: string | null;
}

function slotUnusable(slot: RemoteSlotRow): boolean {
  return (
    slot.invalidation_reason !== null || slot.wal_status === "lost" || slot.plugin !== "pgoutput"
  );
}

/**
 * Create the slot on the peer (a new slot starts at the peer's current WAL position, after
 * waiting for every transaction running there to end). `fresh`: the subscription was just
 * made, so a slot of that name is a leftover of an earlier subscription (dropped while the
 * peer was down) and is replaced; otherwise it is the one an interrupted join created, and is
 * kept unless it is unusable.
 */
export async function ensureSlot(peer: PeerQuery, slot: string, fresh: boolean, logger: Logger) {
  const { rows } = await peer<RemoteSlotRow>(
    `select active, wal_status, invalidation_reason, plugin
     from pg_replication_slots where slot_name = $1`,
    [slot],
  );
  const existing = rows[0];
  if (existing !== undefined) {
    if (existing.active) {
      throw new MeshError(
        MeshErrorCode.SlotInUse,
        `replication slot ${slot} on the peer is in use by another connection`,
      );
    }
    if (!fresh && !slotUnusable(existing)) return;
    logger.warn(
      { slot, invalidation: existing.invalidation_reason, walStatus: existing.wal_status },
      "replacing a leftover replication slot on the peer",
    );
    try {
      await peer("select pg_drop_replication_slot($1)", [slot]);
    } catch (err) {
      if (sqlstateOf(err) !== SQLSTATE.undefinedObject) throw err;
    }
  }
  try {
    await peer("select pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
  } catch (err) {
    if (sqlstateOf(err) !== SQLSTATE.duplicateObject) throw err;
  }
}

export type SlotProbe = "usable" | "missing" | "invalidated" | "unreachable";

export async function probeSlot(
  conninfo: string,
  slot: string,
  timeoutMs: number,
): Promise<SlotProbe> {
  try {
    return await withPeer(conninfo, timeoutMs, async (peer) => {
      const { rows } = await peer<RemoteSlotRow>(
        `select active, wal_status, invalidation_reason, plugin
         from pg_replication_slots where slot_name = $1`,
        [slot],
      );
      const found = rows[0];
      if (found === undefined) return "missing";
      return slotUnusable(found) ? "invalidated" : "usable";
    });
  } catch (err) {
    if (err instanceof MeshError && err.code === MeshErrorCode.PeerUnreachable) {
      return "unreachable";
    }
    throw err;
  }
}
