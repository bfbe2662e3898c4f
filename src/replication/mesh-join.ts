import type pg from "pg";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";
import { copyOriginRows } from "./mesh-bootstrap.js";
import { conninfoDigest, normalizeConninfo, redactConninfo } from "./mesh-conninfo.js";
import {
  failed,
  isConnectionError,
  isDuplicate,
  MeshError,
  MeshErrorCode,
  unreachable,
} from "./mesh-errors.js";
import { checkNodeId, type MeshNames, meshNames } from "./mesh-names.js";
import { withPeer } from "./mesh-peer.js";
import { ensureSlot, probeSlot } from "./mesh-slot.js";
import { ident, literal, MEMBERSHIP_LOCK, withSessionLock } from "./mesh-sql.js";
import {
  dropSubscriptionDetached,
  localSubscription,
  NO_SUBSCRIPTION,
  recordPeer,
} from "./mesh-subscription.js";

/**
 * How a join is made. `CREATE SUBSCRIPTION` with a slot creates that slot on the peer from
 * inside the subscriber's catalog transaction, and creating a logical slot waits for every
 * transaction running on the peer to end. Two nodes joining each other at the same moment then
 * wait on each other's catalog transaction forever (observed with PostgreSQL 18: both
 * walsenders wait on `transactionid`). So a join:
 *   1. creates the subscription disabled, without a slot and without copy_data (it connects to
 *      the peer only to list the publication's tables, which waits for nothing);
 *   2. creates the slot on the peer over an ordinary connection, holding no transaction here;
 *   3. copies the peer's rows this database lacks (all rows committed before the slot);
 *   4. enables the subscription, which streams from the slot's start;
 *   5. records the peer in `node_peers`, which marks the join complete.
 * Every step is idempotent; an interrupted join is completed by the next call. Joins and
 * leaves of one database are serialised by an advisory lock.
 */

/** Default limit for each statement run on a peer (a slot creation waits for its transactions). */
const DEFAULT_PEER_TIMEOUT_MS = 60_000;
/** Default limit for a quick look at a peer that may be down. */
const PROBE_TIMEOUT_MS = 5_000;

export interface JoinPeerOptions {
  /** This node's id. */
  selfId: string;
  peerId: string;
  /**
   * A `postgresql://` URL of the peer's database, as this node's server can reach it (the
   * subscription's apply worker connects with it). `connect_timeout=10` is added when absent.
   */
  peerConninfo: string;
  logger?: Logger;
  /** Limit for each statement on the peer; default 60 s. */
  peerTimeoutMs?: number;
}

export type JoinPeerOutcome =
  /** A new subscription; the peer's `copiedRows` existing rows are here, new ones stream. */
  | { kind: "created"; names: MeshNames; copiedRows: number }
  /** Completed a join that an earlier call had begun. */
  | { kind: "resumed"; names: MeshNames; copiedRows: number }
  /** Already joined. `peerReachable` is false when the peer could not be checked just now. */
  | { kind: "exists"; names: MeshNames; peerReachable: boolean }
  /** Already joined; the connection string changed and was updated. */
  | { kind: "updated"; names: MeshNames }
  /** The slot on the peer was gone or invalidated: the subscription was made again. */
  | {
      kind: "rebuilt";
      names: MeshNames;
      reason: "slot_missing" | "slot_invalidated";
      copiedRows: number;
    }
  /** The peer does not publish its journal yet (not migrated or not started): call again. */
  | { kind: "peer_not_ready"; names: MeshNames };

/**
 * Subscribe to `peerId`'s journal rows (idempotent; safe when two starts race). Throws a
 * `MeshError` with code `peer_unreachable` when a step that needs the peer cannot reach it
 * (nothing is lost: the next call resumes the join).
 */
export async function joinPeer(pool: pg.Pool, opts: JoinPeerOptions): Promise<JoinPeerOutcome> {
  checkNodeId(opts.selfId);
  checkNodeId(opts.peerId);
  if (opts.selfId === opts.peerId) {
    throw new MeshError(MeshErrorCode.InvalidNodeId, `node ${opts.selfId} cannot join itself`);
  }
  const names = meshNames(opts.selfId, opts.peerId);
  const conninfo = normalizeConninfo(opts.peerConninfo);
  const digest = conninfoDigest(conninfo);
  const peerTimeoutMs = opts.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
  const logger = componentLogger(opts.logger, "mesh").child({
    peer: opts.peerId,
    subscription: names.subscription,
  });
  const sub = ident(names.subscription);

  return withSessionLock(pool, MEMBERSHIP_LOCK, async (client): Promise<JoinPeerOutcome> => {
    let local = await localSubscription(client, names.subscription, opts.peerId);
    let rebuilt: "slot_missing" | "slot_invalidated" | undefined;

    if (local.exists && local.joined && local.subscribesJournal) {
      // The node's apply stream reads only flushed WAL: a subscription that commits
      // asynchronously (PostgreSQL's default for subscriptions) delays it by up to
      // wal_writer_delay. Subscriptions made before this setting get it here.
      await client.query(
        `do $$ begin
           if (select subsynccommit from pg_subscription where subname = ${literal(names.subscription)}) <> 'on'
           then alter subscription ${sub} set (synchronous_commit = 'on'); end if;
         end $$`,
      );
      if (local.conninfoSha256 !== digest) {
        await client.query(`alter subscription ${sub} connection ${literal(conninfo)}`);
        await recordPeer(client, opts.peerId, names, conninfo, digest);
        logger.info({ conninfo: redactConninfo(conninfo) }, "peer connection updated");
        return { kind: "updated", names };
      }
      const probeMs = Math.min(peerTimeoutMs, PROBE_TIMEOUT_MS);
      const slot = await probeSlot(conninfo, names.slot, probeMs);
      if (slot === "unreachable") return { kind: "exists", names, peerReachable: false };
      if (slot === "usable") return { kind: "exists", names, peerReachable: true };
      // The subscription can never resume from this slot: make it again.
      rebuilt = slot === "missing" ? "slot_missing" : "slot_invalidated";
      logger.warn({ slot: names.slot, reason: rebuilt }, "rebuilding the subscription");
      await dropSubscriptionDetached(client, names.subscription);
      local = NO_SUBSCRIPTION;
    } else if (local.exists && !local.subscribesJournal) {
      // Not made by this module (or its journal table was removed from it): start over.
      await dropSubscriptionDetached(client, names.subscription);
      local = NO_SUBSCRIPTION;
    }

    return withPeer(conninfo, peerTimeoutMs, async (peer): Promise<JoinPeerOutcome> => {
      const { rowCount } = await peer(
        "select 1 from pg_publication_tables where pubname = $1 and tablename = 'journal'",
        [names.publication],
      );
      if (rowCount === 0) {
        logger.info(
          { publication: names.publication },
          "the peer does not publish its journal yet",
        );
        return { kind: "peer_not_ready", names };
      }
      let fresh = !local.exists;
      if (fresh) {
        try {
          await client.query(createSubscriptionSql(names, conninfo));
        } catch (err) {
          if (isConnectionError(err)) throw unreachable(opts.peerId, err);
          if (!isDuplicate(err)) {
            throw failed(`could not create subscription ${names.subscription}`, err);
          }
          // Someone outside this lock (another build, an operator) made it meanwhile.
          fresh = false;
          local = await localSubscription(client, names.subscription, opts.peerId);
        }
      } else {
        // A join begun earlier may have used another connection string.
        await client.query(`alter subscription ${sub} connection ${literal(conninfo)}`);
      }
      let copiedRows = 0;
      // An enabled subscription has had its slot and its copy (enabling is their last step).
      if (!local.enabled) {
        await ensureSlot(peer, names.slot, fresh, logger);
        const t0 = Date.now();
        const copy = await copyOriginRows(peer, client, opts.peerId);
        copiedRows = copy.rows;
        logger.info(
          {
            rows: copy.rows,
            fromSeq: String(copy.fromSeq),
            toSeq: String(copy.toSeq),
            ms: Date.now() - t0,
          },
          "copied the peer's rows",
        );
        await client.query(`alter subscription ${sub} enable`);
      }
      await recordPeer(client, opts.peerId, names, conninfo, digest);
      const outcome: JoinPeerOutcome =
        rebuilt !== undefined
          ? { kind: "rebuilt", names, reason: rebuilt, copiedRows }
          : { kind: fresh ? "created" : "resumed", names, copiedRows };
      logger.info({ kind: outcome.kind, conninfo: redactConninfo(conninfo) }, "joined peer");
      return outcome;
    });
  });
}

/**
 * `connect` stays on (the default) so that the journal table is added in state ready in this
 * same transaction (the only other way, REFRESH PUBLICATION, needs the subscription enabled,
 * and an enabled subscription without the table would skip the peer's rows); the slot is not
 * created here (see the module comment) and no table-sync copy is made (mesh-bootstrap.ts).
 * binary: the same schema on both ends, so rows (bytea metadata above all) travel unconverted.
 * streaming = on, not PostgreSQL 18's default parallel: a transaction too large for
 * logical_decoding_work_mem is spooled and applied at commit, without the extra parallel
 * apply workers that would compete with the apply workers of other peers for
 * max_logical_replication_workers. disable_on_error = false: a failing row is retried (and
 * counted in pg_stat_subscription_stats) rather than silently stopping the link.
 */
function createSubscriptionSql(names: MeshNames, conninfo: string): string {
  return (
    `create subscription ${ident(names.subscription)} connection ${literal(conninfo)}` +
    ` publication ${ident(names.publication)} with (` +
    `create_slot = false, slot_name = ${literal(names.slot)}, copy_data = false,` +
    " enabled = false, origin = 'none', binary = true, streaming = 'on'," +
    " disable_on_error = false, synchronous_commit = 'on')"
  );
}
