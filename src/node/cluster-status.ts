import pg from "pg";
import type { Logger } from "pino";
import {
  meshStatus,
  type PeerStatus,
  type SlotStatus,
  slotName,
  slotStatus,
  subscriptionName,
} from "../replication/mesh.js";
import type { Peer } from "./config/index.js";
import type { PeerInfo } from "./grpc/spool-server.js";
import type { ReplicationSnapshot } from "./observability/metrics.js";
import type { NodeReplication } from "./replication-wiring.js";

/**
 * A node's view of its replication peers, for the ClusterStatus RPC and /metrics.
 *
 * Per peer (every configured peer, and any other peer this node subscribes to):
 * - `connected`: this node's subscription to the peer has its apply worker running and has
 *   received a message from the peer (pg_stat_subscription), and the peer's database
 *   answers the status query. A peer whose server is stopped shows as disconnected within
 *   seconds; one cut off without closing its connections, once the status query times out
 *   (the worker itself runs on until `wal_receiver_timeout`).
 * - `slotState`: the slot on the peer's server that feeds this node
 *   (`geospool_<peer>_to_<self>`), read on the peer: the walsender's state (`streaming`,
 *   `catchup`, `startup`) when a subscriber streams from it, `inactive`, `missing`,
 *   `invalidated:<reason>`, `wal_unreserved`/`wal_lost` (about to be invalidated); or what
 *   this node knows without asking the peer: `not_joined`, `joining`, `disabled`,
 *   `unreachable` (the peer's database did not answer in time), `unknown` (no `postgres` URL
 *   for the peer), `local_error` (this node's own database did not answer).
 * - lag in bytes: WAL the peer has written and this node has not confirmed, on the peer:
 *   `pg_current_wal_lsn() - confirmed_flush_lsn` of that slot. It counts all of the peer's
 *   WAL, not only journal rows. null (0 over gRPC) when it cannot be measured now.
 * - lag in time: while connected, the peer's walsender `replay_lag` for that slot (the time
 *   between the peer writing WAL and this node's subscription confirming it applied; 0 once
 *   caught up and idle); while disconnected, the time since the last contact (the last
 *   message received, or the last status that saw the link up, or this node's start).
 * - apply errors: rows from the peer the subscription failed to apply
 *   (pg_stat_subscription_stats.apply_error_count) plus journal rows of that origin the
 *   replicator quarantined (replica_quarantine).
 * - reachable: the peer's node answers this node's heartbeats (peer-liveness.ts, a health
 *   check every second with a 2 s deadline); while not, since when. This is the signal
 *   that a peer is cut off or frozen within seconds (the subscription's apply worker shows
 *   connected until `wal_receiver_timeout`, and `connected` also turns false only once the
 *   peer's database stops answering the status query).
 * - pending fetches: entries created by the peer (entry names embed the creating node's id)
 *   whose data is being fetched or whose change waits for a retry (replica_pending).
 *
 * Both lags stop at this node's journal: the replicator's own backlog (peer rows in the
 * journal not yet placed in the spool) is reported apart (`backlog`, and the metric
 * geospool_replication_backlog).
 *
 * Nothing here waits on a peer for long: each peer's database is asked with `peerTimeoutMs`
 * (one question at a time per peer; a peer still owing an answer is `unreachable`), this
 * node's own with `localTimeoutMs`, and a snapshot younger than `maxAgeMs` is reused, so a
 * scrape and a ClusterStatus call close together cost one round.
 */

export interface ClusterStatusOptions {
  nodeId: string;
  /** The configured peers (`config.peers`). */
  peers: readonly Peer[];
  /** This node's database. */
  pool: pg.Pool;
  replication: Pick<NodeReplication, "replicator" | "fetcher"> &
    Partial<Pick<NodeReplication, "liveness">>;
  logger: Logger;
  clock?: () => number;
  /** Limit for a peer's database to connect and answer. Default 2 s. */
  peerTimeoutMs?: number;
  /** Limit for this node's own database to answer. Default 3 s. */
  localTimeoutMs?: number;
  /** A snapshot younger than this is returned again. Default 1 s. */
  maxAgeMs?: number;
}

export interface PeerView {
  nodeId: string;
  region: string;
  grpcEndpoint: string;
  /** Listed in `peers` of the configuration (else only subscribed to, e.g. by `cluster join`). */
  configured: boolean;
  connected: boolean;
  lagMs: number;
  /** null: not measurable now (see slotState). */
  lagBytes: number | null;
  slotState: string;
  /** The slot on the peer that feeds this node. */
  slotName: string;
  subscriptionApplyErrors: number;
  quarantinedRows: number;
  pendingFetches: number;
  /** When this node last had a sign the link was up (ms since epoch), if ever. */
  lastContactMs: number | null;
  /** The peer's node answers this node's heartbeats (null: no gRPC endpoint to ask). */
  reachable: boolean | null;
  /** While not reachable: since when (the last answer, or this node's start). */
  unreachableSinceMs: number | null;
}

export interface ClusterSnapshot {
  takenAtMs: number;
  peers: PeerView[];
  /** This server's replication slots (publisher side); empty when `localError`. */
  localSlots: SlotStatus[];
  /** Distinct entries waiting for data or a retry, from any origin. */
  pendingFetches: number;
  backlog: { dirty: number; retrying: number; unacknowledgedCommits: number };
  /** Why this node's own database could not be read, if it could not. */
  localError?: string;
}

const DEFAULT_PEER_TIMEOUT_MS = 2_000;
const DEFAULT_LOCAL_TIMEOUT_MS = 3_000;
const DEFAULT_MAX_AGE_MS = 1_000;
/** `<12 hex ms>-<8 hex counter>-`: where the node id starts in a time-sortable name. */
const NAME_ORIGIN_OFFSET = 22;

interface PeerSlotRow {
  active: boolean;
  wal_status: string | null;
  invalidation_reason: string | null;
  lag_bytes: string | null;
  replay_lag_ms: number | null;
  sender_state: string | null;
}

type PeerProbe =
  | { kind: "ok"; slot: PeerSlotRow | undefined }
  | { kind: "unreachable"; error?: unknown };

interface PeerMemory {
  pool?: pg.Pool;
  inFlight?: Promise<PeerProbe>;
  lastContactMs?: number;
  lastLagMs?: number;
}

interface LocalView {
  mesh: Map<string, PeerStatus>;
  slots: SlotStatus[];
  pendingByPeer: Map<string, number>;
  pendingTotal: number;
  quarantinedByOrigin: Map<string, number>;
}

const PEER_SLOT_SQL = `
select s.active, s.wal_status, s.invalidation_reason,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text as lag_bytes,
       (extract(epoch from r.replay_lag) * 1000)::float8 as replay_lag_ms,
       r.state as sender_state
from pg_replication_slots s
left join pg_stat_replication r on r.pid = s.active_pid
where s.slot_name = $1`;

/**
 * Entries waiting for their data: the retry list and the fetches under way, counted per
 * peer by the creating node's id in the name, and in all.
 */
const PENDING_SQL = `
with waiting as (
  select entry from replica_pending
  union
  select unnest($1::text[])
)
select p.id as peer, count(w.entry)::int as n
from unnest($2::text[]) as p(id)
left join waiting w
  on substr(w.entry, ${NAME_ORIGIN_OFFSET + 1}, length(p.id) + 1) = p.id || '-'
 and substr(w.entry, ${NAME_ORIGIN_OFFSET + 2} + length(p.id)) ~ '^[0-9a-f]{12}(-[0-9]+)?$'
group by p.id
union all
select null, count(*)::int from waiting`;

export class ClusterStatus {
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly startedAtMs: number;
  private readonly memory = new Map<string, PeerMemory>();
  private last: ClusterSnapshot | undefined;
  private running: Promise<ClusterSnapshot> | undefined;
  private closed = false;

  constructor(private readonly opts: ClusterStatusOptions) {
    this.log = opts.logger.child({ component: "cluster-status" });
    this.clock = opts.clock ?? Date.now;
    this.startedAtMs = this.clock();
  }

  /** The current view (or one taken less than `maxAgeMs` ago). Never rejects. */
  snapshot(): Promise<ClusterSnapshot> {
    const maxAge = this.opts.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    if (this.last !== undefined && this.clock() - this.last.takenAtMs < maxAge) {
      return Promise.resolve(this.last);
    }
    this.running ??= this.take().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** For the ClusterStatus RPC (`spoolHandlers({peers})`). */
  async peers(): Promise<PeerInfo[]> {
    const s = await this.snapshot();
    return s.peers.map((p) => ({
      nodeId: p.nodeId,
      region: p.region,
      grpcEndpoint: p.grpcEndpoint,
      connected: p.connected,
      replicationLagMs: Math.round(p.lagMs),
      lagBytes: p.lagBytes ?? 0,
      slotState: p.slotState,
      applyErrors: p.subscriptionApplyErrors + p.quarantinedRows,
      pendingFetches: p.pendingFetches,
      reachable: p.reachable !== false,
      unreachableSinceMs: p.unreachableSinceMs,
    }));
  }

  /** For /metrics (`Metrics.setReplicationSource`). Rejects when this node's database failed. */
  async metrics(): Promise<ReplicationSnapshot> {
    const s = await this.snapshot();
    if (s.localError !== undefined) throw new Error(s.localError);
    return {
      peers: s.peers.map((p) => ({
        peer: p.nodeId,
        connected: p.connected,
        lagSeconds: p.lagMs / 1000,
        lagBytes: p.lagBytes,
        subscriptionApplyErrors: p.subscriptionApplyErrors,
        reachable: p.reachable,
        unreachableSeconds:
          p.unreachableSinceMs === null
            ? 0
            : Math.max(0, (s.takenAtMs - p.unreachableSinceMs) / 1000),
      })),
      slots: s.localSlots.map((slot) => ({
        slot: slot.slotName,
        kind: slotKind(slot),
        peer: slot.subscriberId ?? "",
        active: slot.active,
        retainedBytes: slot.retainedBytes,
      })),
      pendingFetches: s.pendingFetches,
      backlog: s.backlog,
    };
  }

  /** Close the connections to the peers' databases. */
  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.memory.values()].flatMap((m) => (m.pool ? [m.pool] : []));
    for (const m of this.memory.values()) m.pool = undefined;
    await Promise.allSettled(pools.map((p) => p.end()));
  }

  // ---------------------------------------------------------------------------------------

  private async take(): Promise<ClusterSnapshot> {
    const { nodeId, peers, replication } = this.opts;
    // Ask the peers first: their answers (or timeouts) run alongside the local queries.
    const probes = new Map<string, Promise<PeerProbe>>();
    for (const p of peers) {
      if (p.postgres !== undefined) probes.set(p.id, this.probe(p.id, p.postgres));
    }
    let local: LocalView | undefined;
    let localError: string | undefined;
    try {
      local = await withTimeout(
        this.readLocal(),
        this.opts.localTimeoutMs ?? DEFAULT_LOCAL_TIMEOUT_MS,
        () => new Error("this node's database did not answer in time"),
      );
    } catch (err) {
      localError = err instanceof Error ? err.message : String(err);
      this.log.warn({ err }, "cluster status: cannot read this node's database");
    }
    const now = this.clock();

    const configured = new Map(peers.map((p) => [p.id, p]));
    const ids = new Set(configured.keys());
    for (const s of local?.mesh.values() ?? []) if (s.peerId !== null) ids.add(s.peerId);

    const views: PeerView[] = [];
    for (const id of [...ids].sort()) {
      const conf = configured.get(id);
      const sub = local?.mesh.get(subscriptionName(id));
      const probe = probes.has(id) ? await probes.get(id) : undefined;
      const mem = this.remember(id);
      // The apply worker shows connected until wal_receiver_timeout after a link is cut; a
      // peer database that does not answer now is taken as the sign it is.
      const connected =
        sub?.workerRunning === true &&
        sub.lastMsgReceiptTime !== null &&
        probe?.kind !== "unreachable";
      const live = replication.liveness?.view(id);
      const slot = probe?.kind === "ok" ? probe.slot : undefined;
      const lagBytes =
        slot !== undefined && slot.invalidation_reason === null && slot.lag_bytes !== null
          ? Math.max(0, Number(slot.lag_bytes))
          : null;
      let lagMs: number;
      if (connected) {
        mem.lastContactMs = now;
        if (slot?.active) mem.lastLagMs = Math.max(0, slot.replay_lag_ms ?? 0);
        lagMs = mem.lastLagMs ?? 0;
      } else {
        const receipt = sub?.lastMsgReceiptTime?.getTime();
        const since = Math.max(mem.lastContactMs ?? this.startedAtMs, receipt ?? 0);
        lagMs = Math.max(0, now - since);
      }
      views.push({
        nodeId: id,
        region: conf?.region ?? "",
        grpcEndpoint: conf?.grpc ?? "",
        configured: conf !== undefined,
        connected,
        lagMs,
        lagBytes,
        slotState: localError !== undefined ? "local_error" : slotState(sub, probe),
        slotName: slotName(id, nodeId),
        subscriptionApplyErrors: sub?.applyErrorCount ?? 0,
        quarantinedRows: local?.quarantinedByOrigin.get(id) ?? 0,
        pendingFetches: local?.pendingByPeer.get(id) ?? 0,
        lastContactMs: mem.lastContactMs ?? null,
        reachable: live?.reachable ?? null,
        unreachableSinceMs: live?.unreachableSinceMs ?? null,
      });
    }
    const status = replication.replicator.status();
    const snapshot: ClusterSnapshot = {
      takenAtMs: now,
      peers: views,
      localSlots: local?.slots ?? [],
      pendingFetches: local?.pendingTotal ?? replication.fetcher.pending(),
      backlog: {
        dirty: status.dirty,
        retrying: status.retrying,
        unacknowledgedCommits: status.unacknowledgedCommits,
      },
      ...(localError !== undefined ? { localError } : {}),
    };
    this.last = snapshot;
    return snapshot;
  }

  private async readLocal(): Promise<LocalView> {
    const { pool, nodeId, peers, replication } = this.opts;
    const fetching: string[] = [];
    replication.fetcher.pending((entry) => {
      fetching.push(entry);
      return true;
    });
    const [mesh, slots, pending, quarantined] = await Promise.all([
      meshStatus(pool),
      slotStatus(pool, { selfId: nodeId, peerIds: peers.map((p) => p.id) }),
      pool.query<{ peer: string | null; n: number }>(PENDING_SQL, [
        fetching,
        [...new Set([...peers.map((p) => p.id)])],
      ]),
      pool.query<{ origin: string; n: number }>(
        "select origin, count(*)::int as n from replica_quarantine group by origin",
      ),
    ]);
    const pendingByPeer = new Map<string, number>();
    let pendingTotal = 0;
    for (const r of pending.rows) {
      if (r.peer === null) pendingTotal = r.n;
      else pendingByPeer.set(r.peer, r.n);
    }
    return {
      mesh: new Map(mesh.peers.map((p) => [p.subscription, p])),
      slots: slots.slots,
      pendingByPeer,
      pendingTotal,
      quarantinedByOrigin: new Map(quarantined.rows.map((r) => [r.origin, r.n])),
    };
  }

  /** Ask the peer's database about the slot that feeds this node; bounded by peerTimeoutMs. */
  private probe(peerId: string, url: string): Promise<PeerProbe> {
    const mem = this.remember(peerId);
    // One question at a time: a peer that has not answered the last one is unreachable.
    if (mem.inFlight !== undefined || this.closed) return Promise.resolve({ kind: "unreachable" });
    const timeoutMs = this.opts.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
    if (mem.pool === undefined) {
      const pool = new pg.Pool({
        connectionString: url,
        max: 1,
        idleTimeoutMillis: 60_000,
        connectionTimeoutMillis: timeoutMs,
        statement_timeout: timeoutMs,
        query_timeout: timeoutMs,
        application_name: "geospool-status",
        keepAlive: true,
      });
      pool.on("error", (err) =>
        this.log.debug({ err, peer: peerId }, "connection to a peer's database failed"),
      );
      mem.pool = pool;
    }
    const pool = mem.pool;
    const asked = pool
      .query<PeerSlotRow>(PEER_SLOT_SQL, [slotName(peerId, this.opts.nodeId)])
      .then(
        (r): PeerProbe => ({ kind: "ok", slot: r.rows[0] }),
        (error): PeerProbe => {
          this.log.debug({ err: error, peer: peerId }, "a peer's database did not answer");
          return { kind: "unreachable", error };
        },
      )
      .finally(() => {
        mem.inFlight = undefined;
      });
    mem.inFlight = asked;
    return withTimeout(asked, timeoutMs, () => undefined).catch(
      (): PeerProbe => ({ kind: "unreachable" }),
    );
  }

  private remember(peerId: string): PeerMemory {
    let m = this.memory.get(peerId);
    if (m === undefined) {
      m = {};
      this.memory.set(peerId, m);
    }
    return m;
  }
}

function slotState(sub: PeerStatus | undefined, probe: PeerProbe | undefined): string {
  if (sub === undefined || !sub.subscriptionExists) return "not_joined";
  if (sub.peerId === null) return "joining";
  if (!sub.enabled) return "disabled";
  if (probe === undefined) return "unknown";
  if (probe.kind === "unreachable") return "unreachable";
  const slot = probe.slot;
  if (slot === undefined) return "missing";
  if (slot.invalidation_reason !== null) return `invalidated:${slot.invalidation_reason}`;
  if (slot.wal_status === "lost" || slot.wal_status === "unreserved") {
    return `wal_${slot.wal_status}`;
  }
  if (!slot.active) return "inactive";
  return slot.sender_state ?? "active";
}

/** `mesh` (a peer subscribes through it), `apply` (this node's applier), or as slotStatus says. */
function slotKind(slot: SlotStatus): string {
  if (slot.slotName.startsWith("geospool_apply_")) return "apply";
  return slot.kind;
}

/** `p`, or what `onTimeout` makes (rejecting when it returns an Error) after `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error | undefined): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout() ?? new Error("timed out")), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
