import pg from "pg";
import type { Logger } from "pino";
import { DataFetcher } from "../replication/data-fetcher.js";
import type { HybridLogicalClock } from "../replication/hlc.js";
import { ensurePublication, joinPeer, MeshError } from "../replication/mesh.js";
import { replicationSettings, settingsWarnings } from "../replication/mesh-status.js";
import { PeerLiveness } from "../replication/peer-liveness.js";
import { Replicator } from "../replication/replicator.js";
import { Expert, type ReplicaSpool } from "../spool/index.js";
import type { Config } from "./config/index.js";
import type { Metrics } from "./observability/index.js";
import { POOL_IDLE_TIMEOUT_MS } from "./postgres/pool-settings.js";
import { type NodeEntryMeta, nodeEntryCodec } from "./service/entry-meta.js";
import type { IdempotencyStore, KeyScope } from "./service/idempotency-store.js";
import type { NodeSpool, SpoolService } from "./service/spool-service.js";

export interface NodeReplication {
  readonly replicator: Replicator;
  readonly fetcher: DataFetcher;
  /** Heartbeats to every configured peer's gRPC endpoint: is its node answering? */
  readonly liveness: PeerLiveness;
  /** Peers this node subscribes to, by id, and how the last join attempt went. */
  peerJoins(): Map<string, string>;
  stop(): Promise<void>;
}

/**
 * The node's wiring of replication (the layer itself is src/replication): its publication,
 * the subscriptions to its peers (joined in the background, retried while a peer is down or
 * not migrated yet), the data fetcher and the replicator (tailer and applier), fed by the
 * service's transitions.
 */
export async function startReplication(opts: {
  config: Config;
  pool: pg.Pool;
  spool: NodeSpool;
  service: SpoolService;
  idempotency: IdempotencyStore;
  metrics: Metrics;
  logger: Logger;
  /** An entry the replicator placed or dropped (after the spool changed). */
  onReplicaChange?: (entry: string) => void;
  /** The node's hybrid logical clock (shared with the cache, which stamps uploads with it). */
  hlc?: HybridLogicalClock;
}): Promise<NodeReplication> {
  const { config, pool, spool, service, logger } = opts;
  const log = logger.child({ component: "replication" });
  const nodeId = config.node.id;
  await ensurePublication(pool, nodeId, { logger: log });
  for (const warning of settingsWarnings(await replicationSettings(pool))) {
    log.warn({ warning }, "PostgreSQL replication setting needs attention");
  }

  if (config.peers.length > 0 && config.auth.tokens.length > 0 && !config.replication.token) {
    // Peers configured alike refuse its ReadData calls: only data small enough to travel in
    // the journal row would ever be placed here.
    log.warn(
      "auth.tokens is set but replication.token is not: peers that require tokens will refuse this node's data fetches",
    );
  }
  const peerGrpc = new Map(config.peers.map((p) => [p.id, p.grpc]));
  const preferred = new Map<string, string>();
  const replicaSpool = Expert.replicaSpool(spool);
  // Data staged from a row by an earlier process that stopped before placing it: the row
  // stages it again, and a file left in .tmp would fail fsck.
  await replicaSpool.removeStaged();
  const fetcher = new DataFetcher({
    tmpDir: replicaSpool.stagingDir,
    sources: (entry) => {
      const first = peerGrpc.get(preferred.get(entry) ?? "");
      const rest = [...peerGrpc.values()].filter((g) => g !== first);
      return first === undefined ? rest : [first, ...rest];
    },
    token: config.replication.token,
    maxConcurrent: config.replication.fetchConcurrency,
    logger: log,
    // geospool_replication_events_total{event="fetch_<ok|aborted|all_sources_failed|...>"}
    metrics: { finished: (outcome) => opts.metrics.recordReplication(`fetch_${outcome}`, 1) },
  });

  // The replicator has connections of its own: under load, client calls queued on the
  // node's pool would otherwise hold back the journal (and so every peer).
  const replicatorPool = new pg.Pool({
    connectionString: config.postgres.url,
    max: 4,
    idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS,
  });
  replicatorPool.on("error", (err) => log.error({ err }, "idle replicator client error"));
  const replicator = new Replicator({
    nodeId,
    pool: replicatorPool,
    connectionString: config.postgres.url as string,
    spool: followedReplicaSpool(replicaSpool, (name) => opts.onReplicaChange?.(name)),
    dataOf(payload) {
      try {
        const m = nodeEntryCodec.decode(payload);
        return { sha256: m.sha256, size: m.size };
      } catch {
        return undefined;
      }
    },
    async fetchData(req) {
      preferred.set(req.entry, req.origin);
      try {
        const got = await fetcher.fetch({
          entry: req.entry,
          sha256: req.sha256,
          size: req.size,
          ...(req.signal ? { signal: req.signal } : {}),
        });
        return { path: got.path };
      } finally {
        preferred.delete(req.entry);
      }
    },
    fetchLeftovers: () => fetcher.leftovers(),
    async discardFetch(entry) {
      await fetcher.discard(entry);
    },
    async onPeerEnqueues(enqueues) {
      // Idempotency across the cluster: a key seen with a peer's entry answers retries here,
      // scoped as on the node that took it (its principal and queue). One statement a batch.
      const keys: Array<{ scope: KeyScope; name: string }> = [];
      for (const { entry, queue, payload } of enqueues) {
        let meta: NodeEntryMeta;
        try {
          meta = nodeEntryCodec.decode(payload);
        } catch {
          continue;
        }
        const key = meta.idempotencyKey;
        if (key !== undefined)
          keys.push({ scope: { principal: meta.principal ?? "", queue, key }, name: entry });
      }
      try {
        await opts.idempotency.recordCompletedMany(keys);
      } catch (err) {
        log.warn({ err, entries: keys.length }, "could not record peers' idempotency keys");
      }
    },
    logger: log,
    metrics: {
      localRows: (n) => opts.metrics.recordReplication("local_rows", n),
      applied: (kind) => opts.metrics.recordReplication(kind, 1),
      applyError: () => opts.metrics.recordReplication("apply_errors", 1),
      quarantined: () => opts.metrics.recordReplication("quarantined", 1),
      diverged: (n) => opts.metrics.recordReplication("diverged", n),
    },
    fullReconcileEveryMs: config.replication.fullReconcileEvery,
    batchIntervalMs: config.replication.batchInterval,
    ...(opts.hlc === undefined ? {} : { hlc: opts.hlc }),
    peerIds: config.peers.map((p) => p.id),
    leaseReapGraceMs: config.replication.leaseReapGrace,
  });
  try {
    await replicator.start();
  } catch (err) {
    await replicator.stop().catch(() => undefined);
    await replicatorPool.end().catch(() => undefined);
    throw err;
  }
  const stopListening = service.onTransition((t) => replicator.noteLocal(t.name));
  const liveness = new PeerLiveness({
    peers: config.peers,
    intervalMs: config.replication.heartbeatInterval,
    ...(config.replication.token ? { token: config.replication.token } : {}),
    logger: log,
  });
  liveness.start();

  // Join every peer with a PostgreSQL URL, in the background: a peer that is down or not
  // migrated yet is retried; the node serves meanwhile.
  const joins = new Map<string, string>();
  let stopping = false;
  const joiners = config.peers
    .filter((p) => p.postgres !== undefined)
    .map(async (peer) => {
      while (!stopping) {
        try {
          const r = await joinPeer(pool, {
            selfId: nodeId,
            peerId: peer.id,
            peerConninfo: peer.postgres as string,
            logger: log,
          });
          joins.set(peer.id, r.kind);
          if (r.kind !== "peer_not_ready") return;
        } catch (err) {
          joins.set(peer.id, err instanceof MeshError ? err.code : "error");
          log.warn({ err, peer: peer.id }, "joining a peer failed; retrying");
        }
        await new Promise((r) => setTimeout(r, config.replication.joinRetry).unref());
      }
    });

  return {
    replicator,
    fetcher,
    liveness,
    peerJoins: () => new Map(joins),
    async stop() {
      stopping = true;
      stopListening();
      liveness.close();
      // Closing the fetcher aborts transfers in flight, so the replicator's last batch ends.
      const stopped = replicator.stop();
      await fetcher.close();
      await stopped;
      await replicatorPool.end();
      await Promise.race([
        Promise.allSettled(joiners),
        new Promise((r) => setTimeout(r, 1_000).unref()),
      ]);
    },
  };
}

/**
 * The replica spool the node's replicator works on: `replicaSpool`, with `changed` told of
 * every entry it placed or dropped (it may be a cache entry: the node's index follows).
 * Every argument is passed on, `placeNew`'s `beforeVisible` gate included.
 */
export function followedReplicaSpool(
  replicaSpool: ReplicaSpool,
  changed: (name: string) => void,
): ReplicaSpool {
  return {
    ...replicaSpool,
    async place(name, placement, payload, attempts, data, seen) {
      const r = await replicaSpool.place(name, placement, payload, attempts, data, seen);
      changed(name);
      return r;
    },
    async placeNew(items, placeOpts) {
      const results = await replicaSpool.placeNew(items, placeOpts);
      items.forEach((it, i) => {
        if (results[i]?.kind !== "failed") changed(it.name);
      });
      return results;
    },
    async drop(name, seen) {
      const r = await replicaSpool.drop(name, seen);
      changed(name);
      return r;
    },
  };
}
