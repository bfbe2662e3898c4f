import type pg from "pg";
import { nodeTag } from "./mesh-names.js";

/**
 * What an operator needs to see of the mesh, from both ends of each link:
 * - `meshStatus` (subscriber side): per peer, is the subscription enabled, is its apply worker
 *   running, when did the peer last send, has the initial copy finished, how many errors and
 *   conflicts;
 * - `slotStatus` (publisher side): per slot, is a subscriber streaming from it, how much WAL it
 *   holds back, how close it is to invalidation, since when it is idle, and the walsender's
 *   lag. A dead peer shows here as an inactive slot with a growing `retainedBytes`.
 * Both carry the server's WAL-retention settings and plain-language warnings.
 */

export interface ReplicationSettings {
  walLevel: string;
  /** null: unlimited (-1), a dead peer's slot may fill the disk. */
  maxSlotWalKeepSizeBytes: number | null;
  /** null: disabled (0), an unused slot is kept forever. Applied at checkpoints. */
  idleReplicationSlotTimeoutMs: number | null;
  checkpointTimeoutMs: number;
  maxReplicationSlots: number;
  maxWalSenders: number;
  maxLogicalReplicationWorkers: number;
  maxSyncWorkersPerSubscription: number;
  walSenderTimeoutMs: number;
  walReceiverTimeoutMs: number;
  walRetrieveRetryIntervalMs: number;
}

export interface PeerStatus {
  /** null when no completed join names this subscription (a join in progress). */
  peerId: string | null;
  subscription: string;
  /** false: `node_peers` lists the peer but the subscription is gone. */
  subscriptionExists: boolean;
  enabled: boolean;
  slotName: string | null;
  /** The apply worker is running (it exits and restarts while the peer is unreachable). */
  workerRunning: boolean;
  workerPid: number | null;
  /** Table-sync workers copying the peer's rows. */
  syncWorkers: number;
  /**
   * The journal's state in this subscription: `ready` once the peer's existing rows are
   * copied and streaming has caught up; `none` before the first refresh.
   */
  syncState: "none" | "init" | "datasync" | "finishedcopy" | "syncdone" | "ready" | "unknown";
  receivedLsn: string | null;
  latestEndLsn: string | null;
  lastMsgSendTime: Date | null;
  lastMsgReceiptTime: Date | null;
  latestEndTime: Date | null;
  /** Since the last message from the peer (rows or keepalive): how stale this link is. */
  lastMessageAgeMs: number | null;
  /** Receipt minus send time of the last message (includes clock skew between the hosts). */
  transitMs: number | null;
  applyErrorCount: number;
  syncErrorCount: number;
  /** Rows that arrived with a key already here (never expected: each origin's keys are its own). */
  insertConflicts: number;
  joinedAt: Date | null;
}

export interface MeshStatus {
  peers: PeerStatus[];
  settings: ReplicationSettings;
  warnings: string[];
}

export interface SlotStatus {
  slotName: string;
  /**
   * `mesh`: a peer's subscription slot (`geospool_<self>_to_<peer>`); `mesh_unknown`: a mesh
   * slot for a subscriber this node does not list; `tablesync`: a peer's initial copy in
   * progress (or a leftover of one); `other`: not ours.
   */
  kind: "mesh" | "mesh_unknown" | "tablesync" | "other";
  /** The subscribing peer, when the slot is a mesh slot of a known peer. */
  subscriberId: string | null;
  plugin: string | null;
  database: string | null;
  temporary: boolean;
  active: boolean;
  activePid: number | null;
  /** reserved | extended | unreserved (to be invalidated at the next checkpoint) | lost. */
  walStatus: string | null;
  /** Bytes that can still be written before the slot is invalidated; null when unlimited. */
  safeWalSizeBytes: number | null;
  /** WAL the slot holds back (current LSN minus restart LSN). */
  retainedBytes: number | null;
  /** WAL not yet confirmed by the subscriber (current LSN minus confirmed flush LSN). */
  lagBytes: number | null;
  inactiveSince: Date | null;
  /** Why the slot was invalidated (wal_removed, idle_timeout, ...); it can no longer stream. */
  invalidationReason: string | null;
  /** From the walsender streaming it, when active. */
  writeLagMs: number | null;
  flushLagMs: number | null;
  replayLagMs: number | null;
  replyTime: Date | null;
}

export interface SlotStatusReport {
  slots: SlotStatus[];
  settings: ReplicationSettings;
  warnings: string[];
}

const SETTINGS = [
  "wal_level",
  "max_slot_wal_keep_size",
  "idle_replication_slot_timeout",
  "checkpoint_timeout",
  "max_replication_slots",
  "max_wal_senders",
  "max_logical_replication_workers",
  "max_sync_workers_per_subscription",
  "wal_sender_timeout",
  "wal_receiver_timeout",
  "wal_retrieve_retry_interval",
] as const;

/** The server settings that bound WAL retention and size the mesh. */
export async function replicationSettings(
  db: pg.Pool | pg.ClientBase,
): Promise<ReplicationSettings> {
  const { rows } = await db.query<{ name: string; setting: string; unit: string | null }>(
    "select name, setting, unit from pg_settings where name = any($1)",
    [SETTINGS],
  );
  const get = (name: (typeof SETTINGS)[number]) => {
    const row = rows.find((r) => r.name === name);
    return { setting: row?.setting ?? "", unit: row?.unit ?? null };
  };
  const keep = get("max_slot_wal_keep_size");
  const idle = get("idle_replication_slot_timeout");
  const keepBytes = Number(keep.setting) * unitBytes(keep.unit);
  const idleMs = Number(idle.setting) * unitMs(idle.unit);
  const ms = (name: (typeof SETTINGS)[number]) => {
    const s = get(name);
    return Number(s.setting) * unitMs(s.unit);
  };
  const int = (name: (typeof SETTINGS)[number]) => Number(get(name).setting);
  return {
    walLevel: get("wal_level").setting,
    maxSlotWalKeepSizeBytes:
      Number(keep.setting) < 0 || !Number.isFinite(keepBytes) ? null : keepBytes,
    idleReplicationSlotTimeoutMs: idleMs > 0 ? idleMs : null,
    checkpointTimeoutMs: ms("checkpoint_timeout"),
    maxReplicationSlots: int("max_replication_slots"),
    maxWalSenders: int("max_wal_senders"),
    maxLogicalReplicationWorkers: int("max_logical_replication_workers"),
    maxSyncWorkersPerSubscription: int("max_sync_workers_per_subscription"),
    walSenderTimeoutMs: ms("wal_sender_timeout"),
    walReceiverTimeoutMs: ms("wal_receiver_timeout"),
    walRetrieveRetryIntervalMs: ms("wal_retrieve_retry_interval"),
  };
}

export function settingsWarnings(s: ReplicationSettings): string[] {
  const warnings: string[] = [];
  if (s.walLevel !== "logical") {
    warnings.push(`wal_level is ${s.walLevel}, not logical: this node cannot publish its rows`);
  }
  if (s.maxSlotWalKeepSizeBytes === null) {
    warnings.push(
      "max_slot_wal_keep_size is unlimited: a dead peer's slot can hold back WAL until the disk fills",
    );
  }
  if (s.idleReplicationSlotTimeoutMs === null) {
    warnings.push("idle_replication_slot_timeout is disabled: a dead peer's slot is kept forever");
  }
  return warnings;
}

const SYNC_STATES: Record<string, PeerStatus["syncState"]> = {
  i: "init",
  d: "datasync",
  f: "finishedcopy",
  s: "syncdone",
  r: "ready",
};

/** Every subscription of the mesh on this database (and every recorded peer), by name. */
export async function meshStatus(pool: pg.Pool): Promise<MeshStatus> {
  const settings = await replicationSettings(pool);
  const { rows } = await pool.query<{
    subscription: string;
    sub_exists: boolean;
    peer_id: string | null;
    enabled: boolean | null;
    slot_name: string | null;
    pid: number | null;
    sync_workers: number;
    srsubstate: string | null;
    received_lsn: string | null;
    latest_end_lsn: string | null;
    last_msg_send_time: Date | null;
    last_msg_receipt_time: Date | null;
    latest_end_time: Date | null;
    last_message_age_ms: number | null;
    transit_ms: number | null;
    apply_error_count: string | null;
    sync_error_count: string | null;
    confl_insert_exists: string | null;
    joined_at: Date | null;
  }>(
    `with subs as (
       select s.oid, s.subname, s.subenabled, s.subslotname
       from pg_subscription s
       where s.subdbid = (select oid from pg_database where datname = current_database())
         and s.subname like 'geospool\\_from\\_%'
     )
     select coalesce(s.subname, p.subscription) as subscription,
            s.oid is not null as sub_exists,
            p.peer_id, s.subenabled as enabled, coalesce(s.subslotname, p.slot_name) as slot_name,
            w.pid,
            (select count(*)::int from pg_stat_subscription x
              where x.subid = s.oid and x.relid is not null) as sync_workers,
            r.srsubstate,
            w.received_lsn::text, w.latest_end_lsn::text,
            w.last_msg_send_time, w.last_msg_receipt_time, w.latest_end_time,
            (extract(epoch from (now() - w.last_msg_receipt_time)) * 1000)::float8
              as last_message_age_ms,
            (extract(epoch from (w.last_msg_receipt_time - w.last_msg_send_time)) * 1000)::float8
              as transit_ms,
            st.apply_error_count, st.sync_error_count, st.confl_insert_exists,
            p.joined_at
     from subs s
     full join node_peers p on p.subscription = s.subname
     left join pg_stat_subscription w
       on w.subid = s.oid and w.relid is null and w.leader_pid is null
     left join pg_stat_subscription_stats st on st.subid = s.oid
     left join pg_subscription_rel r on r.srsubid = s.oid and r.srrelid = 'journal'::regclass
     order by 1`,
  );
  const peers: PeerStatus[] = rows.map((r) => ({
    peerId: r.peer_id,
    subscription: r.subscription,
    subscriptionExists: r.sub_exists,
    enabled: r.enabled ?? false,
    slotName: r.slot_name,
    workerRunning: r.pid !== null,
    workerPid: r.pid,
    syncWorkers: r.sync_workers,
    syncState: r.srsubstate === null ? "none" : (SYNC_STATES[r.srsubstate] ?? ("unknown" as const)),
    receivedLsn: r.received_lsn,
    latestEndLsn: r.latest_end_lsn,
    lastMsgSendTime: r.last_msg_send_time,
    lastMsgReceiptTime: r.last_msg_receipt_time,
    latestEndTime: r.latest_end_time,
    lastMessageAgeMs: r.last_message_age_ms,
    transitMs: r.transit_ms,
    applyErrorCount: Number(r.apply_error_count ?? 0),
    syncErrorCount: Number(r.sync_error_count ?? 0),
    insertConflicts: Number(r.confl_insert_exists ?? 0),
    joinedAt: r.joined_at,
  }));
  const warnings = settingsWarnings(settings);
  for (const p of peers) {
    const name = p.peerId ?? p.subscription;
    if (!p.subscriptionExists)
      warnings.push(`peer ${name}: recorded as joined, but no subscription`);
    else if (p.peerId === null) warnings.push(`${name}: join not completed`);
    if (p.subscriptionExists && !p.enabled) warnings.push(`peer ${name}: subscription disabled`);
    if (p.subscriptionExists && p.enabled && !p.workerRunning) {
      warnings.push(`peer ${name}: apply worker not running (peer unreachable?)`);
    }
    if (p.applyErrorCount + p.syncErrorCount > 0) {
      warnings.push(
        `peer ${name}: ${p.applyErrorCount} apply and ${p.syncErrorCount} sync errors (see the server log)`,
      );
    }
  }
  const subscriptions = peers.filter((p) => p.subscriptionExists).length;
  if (subscriptions > settings.maxLogicalReplicationWorkers - 1) {
    warnings.push(
      `${subscriptions} subscriptions but max_logical_replication_workers is ` +
        `${settings.maxLogicalReplicationWorkers}: some peers get no apply worker`,
    );
  }
  return { peers, settings, warnings };
}

/**
 * Every replication slot on this server, publisher side. `selfId` (default: `node_info`'s
 * node id) and the peers in `node_peers` (plus `peerIds`) name the mesh slots' subscribers.
 */
export async function slotStatus(
  pool: pg.Pool,
  opts: { selfId?: string; peerIds?: readonly string[] } = {},
): Promise<SlotStatusReport> {
  const settings = await replicationSettings(pool);
  const selfId = opts.selfId ?? (await nodeIdOf(pool));
  const peerIds = new Set(opts.peerIds ?? []);
  const { rows: recorded } = await pool.query<{ peer_id: string }>(
    "select peer_id from node_peers",
  );
  for (const r of recorded) peerIds.add(r.peer_id);
  const prefix = selfId === null ? null : `geospool_${nodeTag(selfId)}_to_`;
  const byTag = new Map<string, string>();
  for (const id of peerIds) byTag.set(nodeTag(id), id);

  const { rows } = await pool.query<{
    slot_name: string;
    plugin: string | null;
    database: string | null;
    temporary: boolean;
    active: boolean;
    active_pid: number | null;
    wal_status: string | null;
    safe_wal_size: string | null;
    retained_bytes: string | null;
    lag_bytes: string | null;
    inactive_since: Date | null;
    invalidation_reason: string | null;
    write_lag_ms: number | null;
    flush_lag_ms: number | null;
    replay_lag_ms: number | null;
    reply_time: Date | null;
  }>(
    `select s.slot_name, s.plugin, s.database, s.temporary, s.active, s.active_pid,
            s.wal_status, s.safe_wal_size::text,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::text as retained_bytes,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text as lag_bytes,
            s.inactive_since, s.invalidation_reason,
            (extract(epoch from r.write_lag) * 1000)::float8 as write_lag_ms,
            (extract(epoch from r.flush_lag) * 1000)::float8 as flush_lag_ms,
            (extract(epoch from r.replay_lag) * 1000)::float8 as replay_lag_ms,
            r.reply_time
     from pg_replication_slots s
     left join pg_stat_replication r on r.pid = s.active_pid
     order by s.slot_name`,
  );
  const slots: SlotStatus[] = rows.map((r) => {
    let kind: SlotStatus["kind"] = "other";
    let subscriberId: string | null = null;
    if (prefix !== null && r.slot_name.startsWith(prefix)) {
      subscriberId = byTag.get(r.slot_name.slice(prefix.length)) ?? null;
      kind = subscriberId === null ? "mesh_unknown" : "mesh";
    } else if (r.slot_name.startsWith("geospool_")) {
      kind = "mesh_unknown";
    } else if (/^pg_\d+_sync_\d+_\d+$/.test(r.slot_name)) {
      kind = "tablesync";
    }
    return {
      slotName: r.slot_name,
      kind,
      subscriberId,
      plugin: r.plugin,
      database: r.database,
      temporary: r.temporary,
      active: r.active,
      activePid: r.active_pid,
      walStatus: r.wal_status,
      safeWalSizeBytes: numberOrNull(r.safe_wal_size),
      retainedBytes: numberOrNull(r.retained_bytes),
      lagBytes: numberOrNull(r.lag_bytes),
      inactiveSince: r.inactive_since,
      invalidationReason: r.invalidation_reason,
      writeLagMs: r.write_lag_ms,
      flushLagMs: r.flush_lag_ms,
      replayLagMs: r.replay_lag_ms,
      replyTime: r.reply_time,
    };
  });
  const warnings = settingsWarnings(settings);
  for (const s of slots) {
    const who = s.subscriberId === null ? s.slotName : `${s.slotName} (peer ${s.subscriberId})`;
    if (s.invalidationReason !== null) {
      warnings.push(
        `slot ${who} invalidated (${s.invalidationReason}): its subscriber must re-join`,
      );
    } else if (s.walStatus === "unreserved" || s.walStatus === "lost") {
      warnings.push(`slot ${who} holds back too much WAL and is about to be invalidated`);
    } else if (!s.active && s.kind !== "other") {
      warnings.push(
        `slot ${who} inactive since ${s.inactiveSince?.toISOString() ?? "?"}, holding ` +
          `${s.retainedBytes ?? "?"} bytes of WAL`,
      );
    }
  }
  return { slots, settings, warnings };
}

async function nodeIdOf(pool: pg.Pool): Promise<string | null> {
  const { rows } = await pool.query<{ node_id: string }>("select node_id from node_info");
  return rows[0]?.node_id ?? null;
}

function numberOrNull(value: string | null): number | null {
  return value === null ? null : Number(value);
}

function unitBytes(unit: string | null): number {
  const match = /^(\d*)(B|kB|MB|GB|TB)$/.exec(unit ?? "B");
  if (!match) return 1;
  const scale = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[
    match[2] as "B" | "kB" | "MB" | "GB" | "TB"
  ];
  return (match[1] ? Number(match[1]) : 1) * scale;
}

function unitMs(unit: string | null): number {
  switch (unit) {
    case "us":
      return 0.001;
    case "s":
      return 1000;
    case "min":
      return 60_000;
    case "h":
      return 3_600_000;
    case "d":
      return 86_400_000;
    default:
      return 1; // ms, or no unit
  }
}
