import type pg from "pg";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";
import { failed, isConnectionError, SQLSTATE, sqlstateOf } from "./mesh-errors.js";
import { checkNodeId, slotName, subscriptionName } from "./mesh-names.js";
import { ident, MEMBERSHIP_LOCK, withSessionLock } from "./mesh-sql.js";
import { dropSubscriptionDetached, localSubscription } from "./mesh-subscription.js";

export interface LeavePeerOptions {
  logger?: Logger;
  /** How long DROP SUBSCRIPTION may try to reach the peer to drop its slot; default 15 s. */
  timeoutMs?: number;
}

export type LeavePeerOutcome =
  /** No subscription to that peer. */
  | { kind: "not_found" }
  /** Subscription dropped, and its slot on the peer too. */
  | { kind: "left"; slot: "dropped" }
  /**
   * Subscription dropped; the peer could not be reached, so its slot `slotName` is left on
   * it (its own `dropPeerSlot`, an operator, or its idle slot timeout removes it).
   */
  | { kind: "left"; slot: "left_on_peer"; slotName: string };

/** Stop receiving `peerId`'s rows. The rows already received stay. */
export async function leavePeer(
  pool: pg.Pool,
  peerId: string,
  opts: LeavePeerOptions = {},
): Promise<LeavePeerOutcome> {
  checkNodeId(peerId);
  const names = { subscription: subscriptionName(peerId) };
  const logger = componentLogger(opts.logger, "mesh").child({
    peer: peerId,
    subscription: names.subscription,
  });
  const timeoutMs = Math.max(1, Math.floor(opts.timeoutMs ?? 15_000));
  return withSessionLock(pool, MEMBERSHIP_LOCK, async (client): Promise<LeavePeerOutcome> => {
    const local = await localSubscription(client, names.subscription, peerId);
    if (!local.exists) {
      await client.query("delete from node_peers where peer_id = $1", [peerId]);
      return { kind: "not_found" };
    }
    let outcome: LeavePeerOutcome;
    await client.query(`set statement_timeout = ${timeoutMs}`);
    try {
      await client.query(`drop subscription ${ident(names.subscription)}`);
      outcome = { kind: "left", slot: "dropped" };
    } catch (err) {
      const state = sqlstateOf(err);
      if (!isConnectionError(err) && state !== SQLSTATE.queryCanceled) {
        throw failed(`could not drop subscription ${names.subscription}`, err);
      }
      logger.warn(
        { slot: local.slotName, sqlstate: state },
        "peer unreachable: detaching its slot and dropping the subscription",
      );
      await dropSubscriptionDetached(client, names.subscription);
      outcome = { kind: "left", slot: "left_on_peer", slotName: local.slotName ?? "" };
    } finally {
      await client.query("reset statement_timeout");
    }
    await client.query("delete from node_peers where peer_id = $1", [peerId]);
    logger.info({ slot: outcome.kind === "left" ? outcome.slot : undefined }, "left peer");
    return outcome;
  });
}

export type DropPeerSlotOutcome =
  | { kind: "dropped"; slotName: string }
  | { kind: "not_found"; slotName: string }
  /** The peer is still streaming from it (it has not left); nothing was dropped. */
  | { kind: "active"; slotName: string; pid: number | null };

/**
 * Drop the slot that feeds `peerId`'s subscription to this node (`selfId`), on this node's
 * server: for a peer that left the mesh, so its slot no longer holds back WAL here.
 */
export async function dropPeerSlot(
  pool: pg.Pool,
  opts: { selfId: string; peerId: string; logger?: Logger },
): Promise<DropPeerSlotOutcome> {
  const name = slotName(opts.selfId, opts.peerId);
  const { rows } = await pool.query<{ active: boolean; active_pid: number | null }>(
    "select active, active_pid from pg_replication_slots where slot_name = $1",
    [name],
  );
  const slot = rows[0];
  if (slot === undefined) return { kind: "not_found", slotName: name };
  if (slot.active) return { kind: "active", slotName: name, pid: slot.active_pid };
  try {
    await pool.query("select pg_drop_replication_slot($1)", [name]);
  } catch (err) {
    const state = sqlstateOf(err);
    if (state === SQLSTATE.undefinedObject) return { kind: "not_found", slotName: name };
    if (state === SQLSTATE.objectInUse) return { kind: "active", slotName: name, pid: null };
    throw failed(`could not drop replication slot ${name}`, err);
  }
  componentLogger(opts.logger, "mesh").info(
    { peer: opts.peerId, slot: name },
    "dropped peer's slot",
  );
  return { kind: "dropped", slotName: name };
}
