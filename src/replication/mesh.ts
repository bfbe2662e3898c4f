import pg from "pg";
import pino, { type Logger } from "pino";
import { copyOriginRows } from "./mesh-bootstrap.js";
import { conninfoDigest, normalizeConninfo, redactConninfo } from "./mesh-conninfo.js";
import {
  isConnectionError,
  MeshError,
  MeshErrorCode,
  SQLSTATE,
  sqlstateOf,
} from "./mesh-errors.js";
import {
  checkNodeId,
  type MeshNames,
  meshNames,
  publicationName,
  slotName,
  subscriptionName,
} from "./mesh-names.js";
import { type PeerQuery, withPeer } from "./mesh-peer.js";
import { inTransaction, withClient } from "./pg-session.js";

/**
 * The logical-replication mesh between the nodes' databases (DESIGN.md section 3).
 *
 * - Every node publishes its own journal rows: publication `geospool_<tag(self)>` FOR TABLE
 *   journal WHERE (origin = '<self>') WITH (publish = 'insert'). No updates, deletes or
 *   truncates ever leave a node.
 * - Every node subscribes to every peer's publication with origin = none: it receives rows the
 *   peer wrote itself, never rows the peer received. Loop-free twice over (the row filter and
 *   the origin filter); rows of different origins never share a key, so they never conflict.
 * - A new subscription bootstraps from the peer's existing rows, copied by `joinPeer` itself
 *   (mesh-bootstrap.ts explains why not copy_data): only the rows missing here, so a re-join
 *   costs what was missed, not the whole journal.
 * - A row that arrives twice (streamed after being copied) is skipped by the journal's replica
 *   trigger (migration 0003); a different row under a known key fails loudly.
 *
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
 *
 * WAL retention. A slot on the publisher keeps WAL until its subscriber confirms it, so a
 * dead peer would fill the disk. The servers bound that (startEmbeddedPostgres sets them; see
 * `replicationSettings` for the check): `max_slot_wal_keep_size` invalidates a slot that would
 * hold back more WAL, `idle_replication_slot_timeout` (PostgreSQL 18, applied at checkpoints)
 * invalidates one nobody has used for that long. `leavePeer` drops our slot on a departing
 * peer, and `dropPeerSlot` the departed peer's slot on us. A subscription whose slot was
 * invalidated or dropped can never resume: the next `joinPeer` rebuilds it (copying the peer's
 * rows again; the ones already here are skipped).
 *
 * Requires PostgreSQL 18 on every node (origin = none, row filters, invalidation reasons,
 * idle slot timeout, per-conflict statistics) and a role that may create subscriptions here
 * and replication slots on the peers (superuser, or pg_create_subscription + REPLICATION).
 */

export {
  DEFAULT_CONNECT_TIMEOUT_S,
  normalizeConninfo,
  redactConninfo,
} from "./mesh-conninfo.js";
export { MeshError, MeshErrorCode } from "./mesh-errors.js";
export {
  type MeshNames,
  meshNames,
  nodeTag,
  publicationName,
  slotName,
  subscriptionName,
} from "./mesh-names.js";
export {
  type MeshStatus,
  meshStatus,
  type PeerStatus,
  type ReplicationSettings,
  replicationSettings,
  type SlotStatus,
  type SlotStatusReport,
  slotStatus,
} from "./mesh-status.js";

/** Advisory lock keys: "geospool" as a bigint (the migrations' key) plus 1 and 2. */
const PUBLICATION_LOCK = "7450224240596160365";
const MEMBERSHIP_LOCK = "7450224240596160366";

/** Default limit for each statement run on a peer (a slot creation waits for its transactions). */
const DEFAULT_PEER_TIMEOUT_MS = 60_000;
/** Default limit for a quick look at a peer that may be down. */
const PROBE_TIMEOUT_MS = 5_000;

export type EnsurePublicationOutcome = {
  kind: "created" | "exists" | "repaired";
  publication: string;
};

/**
 * Make sure this node publishes its own journal rows (idempotent; safe when several
 * processes start at once). A publication of the right name that does not publish exactly the
 * journal's inserts is repaired.
 */
export async function ensurePublication(
  pool: pg.Pool,
  nodeId: string,
  opts: { logger?: Logger } = {},
): Promise<EnsurePublicationOutcome> {
  checkNodeId(nodeId);
  const publication = publicationName(nodeId);
  const logger = componentLogger(opts.logger).child({ publication });
  const create =
    `create publication ${ident(publication)} for table journal` +
    ` where (origin = ${literal(nodeId)}) with (publish = 'insert')`;
  const outcome = await inTransaction(pool, async (client) => {
    await client.query("select pg_advisory_xact_lock($1::bigint)", [PUBLICATION_LOCK]);
    const { rows } = await client.query<PublicationRow>(
      `select p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.puballtables,
              (select count(*)::int from pg_publication_rel r where r.prpubid = p.oid) as tables,
              exists (select 1 from pg_publication_rel r
                      where r.prpubid = p.oid and r.prrelid = 'journal'::regclass
                        and r.prqual is not null) as journal
       from pg_publication p where p.pubname = $1`,
      [publication],
    );
    const found = rows[0];
    if (found === undefined) {
      await client.query(create);
      return "created" as const;
    }
    const right =
      found.pubinsert &&
      !found.pubupdate &&
      !found.pubdelete &&
      !found.pubtruncate &&
      !found.puballtables &&
      found.tables === 1 &&
      found.journal;
    if (right) return "exists" as const;
    if (found.puballtables) {
      await client.query(`drop publication ${ident(publication)}`);
      await client.query(create);
    } else {
      await client.query(
        `alter publication ${ident(publication)} set table journal where (origin = ${literal(nodeId)})`,
      );
      await client.query(`alter publication ${ident(publication)} set (publish = 'insert')`);
    }
    return "repaired" as const;
  });
  if (outcome !== "exists") logger.info({ outcome }, "publication ensured");
  return { kind: outcome, publication };
}

interface PublicationRow {
  pubinsert: boolean;
  pubupdate: boolean;
  pubdelete: boolean;
  pubtruncate: boolean;
  puballtables: boolean;
  tables: number;
  journal: boolean;
}

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
  const logger = componentLogger(opts.logger).child({
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
  const logger = componentLogger(opts.logger).child({
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
  componentLogger(opts.logger).info({ peer: opts.peerId, slot: name }, "dropped peer's slot");
  return { kind: "dropped", slotName: name };
}

export interface PeerRecord {
  peerId: string;
  subscription: string;
  slotName: string;
  publication: string;
  /** Without its password. */
  conninfo: string;
  joinedAt: Date;
  updatedAt: Date;
}

/** The peers this node has joined (completed joins), by peer id. */
export async function listPeers(pool: pg.Pool): Promise<PeerRecord[]> {
  const { rows } = await pool.query<{
    peer_id: string;
    subscription: string;
    slot_name: string;
    publication: string;
    conninfo: string;
    joined_at: Date;
    updated_at: Date;
  }>("select * from node_peers order by peer_id");
  return rows.map((r) => ({
    peerId: r.peer_id,
    subscription: r.subscription,
    slotName: r.slot_name,
    publication: r.publication,
    conninfo: r.conninfo,
    joinedAt: r.joined_at,
    updatedAt: r.updated_at,
  }));
}

// ---------------------------------------------------------------------------------------------

interface LocalSubscription {
  exists: boolean;
  enabled: boolean;
  slotName: string | null;
  /** A node_peers row exists: an earlier join completed. */
  joined: boolean;
  conninfoSha256: string | null;
  /** The journal table is among the subscription's tables (a refresh has run). */
  subscribesJournal: boolean;
}

const NO_SUBSCRIPTION: LocalSubscription = {
  exists: false,
  enabled: false,
  slotName: null,
  joined: false,
  conninfoSha256: null,
  subscribesJournal: false,
};

async function localSubscription(
  client: pg.PoolClient,
  subscription: string,
  peerId: string,
): Promise<LocalSubscription> {
  const { rows } = await client.query<{
    oid: number;
    subenabled: boolean;
    subslotname: string | null;
    journal: boolean;
  }>(
    `select s.oid, s.subenabled, s.subslotname,
            exists (select 1 from pg_subscription_rel r
                    where r.srsubid = s.oid and r.srrelid = 'journal'::regclass) as journal
     from pg_subscription s
     where s.subname = $1
       and s.subdbid = (select oid from pg_database where datname = current_database())`,
    [subscription],
  );
  const { rows: peers } = await client.query<{ conninfo_sha256: string }>(
    "select conninfo_sha256 from node_peers where peer_id = $1",
    [peerId],
  );
  const sub = rows[0];
  return {
    exists: sub !== undefined,
    enabled: sub?.subenabled ?? false,
    slotName: sub?.subslotname ?? null,
    joined: peers[0] !== undefined,
    conninfoSha256: peers[0]?.conninfo_sha256 ?? null,
    subscribesJournal: sub?.journal ?? false,
  };
}

async function recordPeer(
  client: pg.PoolClient,
  peerId: string,
  names: MeshNames,
  conninfo: string,
  digest: string,
): Promise<void> {
  await client.query(
    `insert into node_peers (peer_id, subscription, slot_name, publication, conninfo,
                             conninfo_sha256)
     values ($1, $2, $3, $4, $5, $6)
     on conflict (peer_id) do update set
       subscription = excluded.subscription, slot_name = excluded.slot_name,
       publication = excluded.publication, conninfo = excluded.conninfo,
       conninfo_sha256 = excluded.conninfo_sha256, updated_at = now()`,
    [peerId, names.subscription, names.slot, names.publication, redactConninfo(conninfo), digest],
  );
}

/** Drop a subscription without touching its slot on the peer (for a peer that cannot be reached). */
async function dropSubscriptionDetached(client: pg.PoolClient, subscription: string) {
  const sub = ident(subscription);
  await client.query(`alter subscription ${sub} disable`);
  await client.query(`alter subscription ${sub} set (slot_name = none)`);
  // Table-sync slots still in progress are dropped if the peer answers, left otherwise.
  await client.query(`drop subscription ${sub}`);
}

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
async function ensureSlot(peer: PeerQuery, slot: string, fresh: boolean, logger: Logger) {
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

type SlotProbe = "usable" | "missing" | "invalidated" | "unreachable";

async function probeSlot(conninfo: string, slot: string, timeoutMs: number): Promise<SlotProbe> {
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

async function withSessionLock<T>(
  pool: pg.Pool,
  key: string,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withClient(pool, async (client, broken) => {
    await client.query("select pg_advisory_lock($1::bigint)", [key]);
    try {
      return await fn(client);
    } finally {
      // On failure the session ends with the connection, and its lock with it.
      await client.query("select pg_advisory_unlock($1::bigint)", [key]).catch(broken);
    }
  });
}

function isDuplicate(err: unknown): boolean {
  const state = sqlstateOf(err);
  return state === SQLSTATE.duplicateObject || state === SQLSTATE.uniqueViolation;
}

function unreachable(peerId: string, cause: unknown): MeshError {
  return new MeshError(MeshErrorCode.PeerUnreachable, `peer ${peerId} could not be reached`, {
    cause,
  });
}

function failed(what: string, cause: unknown): MeshError {
  const state = sqlstateOf(cause);
  const message = cause instanceof Error ? cause.message : String(cause);
  return new MeshError(
    MeshErrorCode.Failed,
    `${what}${state ? ` (SQLSTATE ${state})` : ""}: ${message}`,
    { cause },
  );
}

function ident(name: string): string {
  return pg.escapeIdentifier(name);
}

function literal(value: string): string {
  return pg.escapeLiteral(value);
}

function componentLogger(logger: Logger | undefined): Logger {
  return (logger ?? pino({ level: "silent" })).child({ component: "mesh" });
}
