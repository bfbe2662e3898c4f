import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import type { Logger } from "pino";
import { describeFilesystem, filesystemWarning } from "../common/filesystem.js";
import { migrate } from "../db/migrate.js";
import { HybridLogicalClock } from "../replication/hlc.js";
import { Monitor, Spool, timeSortableNames } from "../spool/index.js";
import { Authorizer } from "./auth/authorizer.js";
import { startCacheListener } from "./cache-http/cache-listener.js";
import type { NodeCache } from "./cache-http/node-cache.js";
import { startCacheFromConfig } from "./cache-http/node-cache-config.js";
import { ClusterStatus } from "./cluster-status.js";
import { type Config, grpcTlsEnabled } from "./config/index.js";
import { type GrpcServer, startGrpcServer } from "./grpc/grpc-server.js";
import { principalOf, spoolHandlers } from "./grpc/spool-server.js";
import {
  type HttpServer,
  Metrics,
  registerCacheRequestMetrics,
  startHttpServer,
} from "./observability/index.js";
import { POOL_IDLE_TIMEOUT_MS } from "./postgres/pool-settings.js";
import { type NodeReplication, startReplication } from "./replication-wiring.js";
import { nodeEntryCodec } from "./service/entry-meta.js";
import { IdempotencyStore } from "./service/idempotency-store.js";
import { inlineDataFitting, type NodeSpool, SpoolService } from "./service/spool-service.js";

export interface RunningNode {
  readonly config: Config;
  readonly grpcPort: number;
  readonly httpPort: number;
  /**
   * Where the binary cache is served: its own listener's port when `cache.listen` is set,
   * else `httpPort`; undefined when the cache is off.
   */
  readonly cachePort: number | undefined;
  /** The binary cache, when `cache.enabled`. */
  readonly cache: NodeCache | undefined;
  readonly spool: NodeSpool;
  readonly service: SpoolService;
  readonly metrics: Metrics;
  readonly replication: NodeReplication;
  /** Drain and stop: gRPC (with the shutdown deadline), HTTP, reaper, monitor, database. */
  stop(): Promise<void>;
}

export class NodeStartError extends Error {
  readonly code = "node_start";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NodeStartError";
  }
}

/** For tests: what a node takes from outside instead of the real thing. */
export interface NodeHooks {
  /**
   * The wall clock of the node's hybrid logical clock (the journal's row stamps and the
   * cache's upload stamps) and of the cache (GC ages, staging): a test gives nodes skewed
   * clocks. Default Date.now.
   */
  clock?: () => number;
}

const LEASE_REAP_EVERY_MS = 1_000;
const IDEMPOTENCY_PURGE_EVERY_MS = 10 * 60_000;

/**
 * Start one node: its database (migrated), its spool, the gRPC and HTTP servers, the lease
 * reaper and the fsck monitor. Fails fast, undoing what it started, if any part fails.
 */
export async function startNode(
  config: Config,
  logger: Logger,
  hooks: NodeHooks = {},
): Promise<RunningNode> {
  const log = logger.child({ node: config.node.id });
  if (!config.postgres.url) throw new NodeStartError("postgres.url is required to run a node");
  const cleanups: Array<() => Promise<void>> = [];
  const undo = async () => {
    for (const c of cleanups.reverse())
      await c().catch((err) => log.warn({ err }, "cleanup failed"));
  };
  try {
    const pool = new pg.Pool({
      connectionString: config.postgres.url,
      max: 10,
      idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS,
    });
    pool.on("error", (err) =>
      log.child({ component: "postgres" }).error({ err }, "idle client error"),
    );
    cleanups.push(() => pool.end());
    await migrate(pool, { logger: log.child({ component: "migrate" }) });
    await claimDatabase(pool, config);

    let leaseHoldBack: ((name: string) => Promise<number>) | undefined;
    const spool: NodeSpool = await Spool.load(
      config.spool.dir,
      {
        metadata: nodeEntryCodec,
        queues: config.spool.queues,
        nameGenerator: timeSortableNames(config.node.id),
        filePool: config.spool.filePool,
        leases: {
          defaultLeaseMs: config.spool.leases.defaultLease,
          graceMs: config.spool.leases.grace,
          maxAttempts: config.spool.leases.maxAttempts,
          deadLetterQueue: config.spool.leases.deadLetterQueue,
          // Replicated leases: the holder's node reaps first (set once replication runs).
          holdBack: (name: string) => leaseHoldBack?.(name) ?? 0,
        },
      },
      { createIfMissing: true },
    );
    // Stop steps run in reverse: this one after every user of the spool has stopped.
    cleanups.push(() => spool.close());
    // A filesystem that makes every file the spool creates slow: say so once, at start.
    const fsWarning = filesystemWarning(
      config.spool.dir,
      await describeFilesystem(config.spool.dir),
    );
    if (fsWarning !== undefined) log.warn({ dir: config.spool.dir }, fsWarning);

    const metrics = new Metrics({
      defaultLabels: { node: config.node.id },
      queues: config.spool.queues,
    });
    const store = new IdempotencyStore(pool, config.idempotency.window);
    const service = new SpoolService({
      spool,
      nodeId: config.node.id,
      logger: log.child({ component: "service" }),
      idempotency: store,
      maxDequeueWaitMs: config.grpc.maxDequeueWait,
      maxInlineDataBytes: inlineDataFitting(
        config.grpc.maxMessageBytes,
        config.limits.metadataSize,
      ),
      limits: config.limits,
      onOperation: metrics.recordOperation,
    });
    cleanups.push(() => service.close());
    metrics.setQueueDepthSource(() => service.queueDepths());

    // Made once replication runs; ClusterStatus lists no peers before.
    let clusterStatus: ClusterStatus | undefined;
    const tls = grpcTlsEnabled(config)
      ? {
          cert: config.grpc.tls.cert as string,
          key: config.grpc.tls.key as string,
          clientCa: config.grpc.tls.clientCa,
          requireClientCert: config.grpc.tls.requireClientCert,
        }
      : undefined;
    const authorizer = new Authorizer(config.auth.tokens);
    const handlers = spoolHandlers({
      service,
      authorizer,
      logger: log.child({ component: "grpc" }),
      nodeId: config.node.id,
      region: config.node.region,
      peers: async () => (await clusterStatus?.peers()) ?? [],
      // The status by name (OK, NOT_FOUND, ...), as the metric's help says.
      onCall: (method, code) =>
        metrics.recordGrpcRequest(method, grpc.status[code] ?? String(code)),
      uploadIdleTimeoutMs: config.limits.uploadIdleTimeout,
    });
    const grpcServer: GrpcServer = await startGrpcServer({
      listen: config.grpc.listen,
      logger: log,
      tls,
      maxMessageBytes: config.grpc.maxMessageBytes,
      keepalive: { timeMs: config.grpc.keepalive.time, timeoutMs: config.grpc.keepalive.timeout },
      handlers: handlers.handlers,
      healthAuth: config.auth.allowUnauthenticatedHealth
        ? undefined
        : (metadata) => void principalOf(authorizer, metadata),
    });
    cleanups.push(() => grpcServer.shutdown(0));

    // The cache's index follows its queue entry by entry: the service's transitions here
    // (noted from before the cache opens, so none made while it builds is missed), the
    // replicator's placements below. It opens (catching up with the queue) before either.
    // One hybrid logical clock per node: the replicator stamps journal rows with it (and
    // advances it past every peer row it applies), the cache stamps accepted uploads.
    const hlc = new HybridLogicalClock(hooks.clock ?? Date.now);
    let cache: NodeCache | undefined;
    if (config.cache.enabled) {
      const early = new Set<string>();
      const stopNoting = service.onTransition((t) => {
        if (t.queue !== config.cache.queue && t.fromQueue !== config.cache.queue) return;
        if (cache === undefined) early.add(t.name);
        else cache.entryChanged(t.name);
      });
      cleanups.push(async () => stopNoting());
      const opened = await startCacheFromConfig(
        config,
        spool,
        pool,
        authorizer,
        log,
        metrics.registry,
        { ...(hooks.clock === undefined ? {} : { clock: hooks.clock }), stamp: () => hlc.now() },
      );
      cleanups.push(() => opened.stop());
      cache = opened;
      for (const name of early) opened.entryChanged(name);
      registerCacheRequestMetrics(metrics.registry, () => opened.stats.totals);
    }

    // Peers fetch data from this node's gRPC server, so replication starts after it.
    const replication = await startReplication({
      onReplicaChange: cache?.entryChanged,
      hlc,
      config,
      pool,
      spool,
      service,
      idempotency: store,
      metrics,
      logger: log,
    });
    cleanups.push(() => replication.stop());
    leaseHoldBack = (name) => replication.replicator.leaseHoldBack(name);
    const status = new ClusterStatus({
      nodeId: config.node.id,
      peers: config.peers,
      pool,
      replication,
      logger: log,
    });
    clusterStatus = status;
    metrics.setReplicationSource(() => status.metrics());
    cleanups.push(() => status.close());

    // The cache is served beside /metrics and /healthz, or on its own cache.listen.
    const ownListener = cache !== undefined && config.cache.listen !== undefined;
    let ready = false;
    const http: HttpServer = await startHttpServer({
      listen: config.http.listen,
      metrics,
      ready: () => ready,
      logger: log,
      fallback: ownListener ? undefined : cache?.handle,
      checkContinue: ownListener ? undefined : cache?.checkContinue,
    });
    cleanups.push(() => http.close());
    let cachePort = cache === undefined ? undefined : http.port;
    if (cache !== undefined && config.cache.listen !== undefined) {
      const cacheHttp = await startCacheListener({
        listen: config.cache.listen,
        handle: cache.handle,
        checkContinue: cache.checkContinue,
        logger: log,
      });
      cleanups.push(() => cacheHttp.close());
      cachePort = cacheHttp.port;
    }

    const reaper = spool.startLeaseReaper(LEASE_REAP_EVERY_MS, {
      onExpired: (e) => {
        metrics.recordLeaseExpiry(e.queue, e.to);
        service.leaseExpired(e.name, e.queue, e.to);
        log.info(
          { entry: e.name, queue: e.queue, to: e.to, attempts: e.attempts },
          "lease expired",
        );
      },
      onError: (err) => log.error({ err }, "lease reaper failed"),
    });
    cleanups.push(async () => reaper.stop());

    const monitorStop = new AbortController();
    const monitor = new Monitor(spool, {
      maxCheckedOutAgeMs: Math.max(config.spool.leases.defaultLease * 2, 600_000),
    });
    const monitorLog = log.child({ component: "monitor" });
    const monitorRun = monitor.daemon({
      checkEveryMs: config.monitor.checkEvery,
      alertAfterCycles: config.monitor.alertAfterCycles,
      repair: config.monitor.repair,
      signal: monitorStop.signal,
      onEvent: (e) => {
        const level = e.kind === "start" ? "warn" : "info";
        monitorLog[level](
          { problem: e.problem },
          `fsck problem ${e.kind === "start" ? "started" : "ended"}`,
        );
      },
      onRepair: (a) => monitorLog.info({ problem: a.problem, action: a.action }, "repaired"),
      onError: (err) => monitorLog.error({ err }, "fsck failed"),
      onProblems: (problems) => {
        const counts: Record<string, number> = {};
        for (const p of problems) counts[p.kind] = (counts[p.kind] ?? 0) + 1;
        metrics.setFsckProblems(counts);
      },
    });
    cleanups.push(async () => {
      monitorStop.abort();
      await monitorRun;
    });

    const purge = setInterval(() => {
      store.purge().catch((err) => log.warn({ err }, "idempotency purge failed"));
    }, IDEMPOTENCY_PURGE_EVERY_MS);
    purge.unref();
    cleanups.push(async () => clearInterval(purge));

    ready = true;
    grpcServer.setServing(true);
    log.info(
      { grpcPort: grpcServer.port, httpPort: http.port, cachePort, spool: config.spool.dir },
      "node ready",
    );

    let stopping: Promise<void> | undefined;
    return {
      config,
      grpcPort: grpcServer.port,
      httpPort: http.port,
      cachePort,
      cache,
      spool,
      service,
      metrics,
      replication,
      stop() {
        stopping ??= (async () => {
          log.info("node stopping");
          ready = false;
          // Waiting dequeues and watches end now; other calls get the drain deadline.
          service.beginShutdown();
          await grpcServer.shutdown(config.shutdown.deadline);
          // Calls cut at the deadline finish their cleanup (an unfinished upload removes
          // its files) before the spool and the database go away.
          await handlers.idle();
          // The gRPC server is drained; its cleanup (a forced shutdown) is then harmless.
          for (const c of cleanups.reverse()) {
            await c().catch((err) => log.warn({ err }, "stop step failed"));
          }
          log.info("node stopped");
        })();
        return stopping;
      },
    };
  } catch (err) {
    await undo();
    throw err;
  }
}

/**
 * A node's database belongs to that node: the first start records its id, and a start
 * with another id against the same database is refused.
 */
async function claimDatabase(pool: pg.Pool, config: Config): Promise<void> {
  await pool.query(
    "insert into node_info (node_id, region) values ($1, $2) on conflict (singleton) do nothing",
    [config.node.id, config.node.region],
  );
  const r = await pool.query<{ node_id: string }>("select node_id from node_info");
  const owner = r.rows[0]?.node_id;
  if (owner !== config.node.id) {
    throw new NodeStartError(
      `database at postgres.url belongs to node ${JSON.stringify(owner)}, not ${JSON.stringify(config.node.id)}`,
    );
  }
}
