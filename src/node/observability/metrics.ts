import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The depth of one queue, as the daemon reports it when /metrics is scraped. */
export interface QueueDepth {
  queue: string;
  /** Entries waiting in the queue. */
  queued: number;
  /** Entries checked out of it (under lease). */
  checkedOut: number;
}

export type QueueDepthSource = () => readonly QueueDepth[] | Promise<readonly QueueDepth[]>;

/** What the replication gauges show, read when /metrics is scraped (see cluster-status.ts). */
export interface ReplicationSnapshot {
  peers: ReadonlyArray<{
    peer: string;
    /** This node's subscription to the peer is up. */
    connected: boolean;
    lagSeconds: number;
    /** null: not measurable now (the peer's database did not answer); the series is left out. */
    lagBytes: number | null;
    /** pg_stat_subscription_stats.apply_error_count of the subscription to the peer. */
    subscriptionApplyErrors: number;
    /** The peer's node answers heartbeats; null: not asked (the series is left out). */
    reachable?: boolean | null;
    /** Seconds since the peer last answered, while it does not; 0 while it does. */
    unreachableSeconds?: number;
  }>;
  /** This server's replication slots. */
  slots: ReadonlyArray<{
    slot: string;
    /** mesh (a peer subscribes through it), apply (this node's applier), tablesync, other... */
    kind: string;
    /** The subscribing peer of a mesh slot, else "". */
    peer: string;
    active: boolean;
    /** WAL the slot holds back; null when it holds none (invalidated). */
    retainedBytes: number | null;
  }>;
  /** Distinct entries whose data is being fetched or waits for a retry. */
  pendingFetches: number;
  /** The replicator: entries to sync, entries waiting to retry, commits not acknowledged. */
  backlog: { dirty: number; retrying: number; unacknowledgedCommits: number };
}

export type ReplicationSource = () => Promise<ReplicationSnapshot>;

export interface MetricsOptions {
  /** Read at every scrape to fill geospool_queue_depth. Can also be set later. */
  queueDepth?: QueueDepthSource;
  /** Labels on every series, e.g. `{ node: "eu-1" }`. */
  defaultLabels?: Record<string, string>;
  /** Told when a scrape-time source fails (the daemon logs it); also counted. */
  onCollectError?: (collector: string, err: unknown) => void;
  /** Also export prom-client's process metrics (CPU, memory, event loop, GC). Default true. */
  processMetrics?: boolean;
  /** Longest wait for the replication source at a scrape. Default 5 s. */
  replicationTimeoutMs?: number;
  /**
   * The configured queues. When given, a `queue` label that is not one of them is recorded
   * as UNKNOWN_QUEUE: queue names come from requests, and must not grow /metrics.
   */
  queues?: readonly string[];
}

/** The queue label of operations on a queue that is not configured. */
export const UNKNOWN_QUEUE = "(unknown)";

/** Histogram buckets for spool operations (seconds): 1ms to 30s. */
export const OPERATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** The gauges filled from a `ReplicationSnapshot` at each scrape. */
export interface ReplicationGauges {
  /** geospool_replication_peer_connected{peer}: 1 while the subscription to the peer is up. */
  peerConnected: Gauge<"peer">;
  /** geospool_replication_peer_reachable{peer}: 1 while the peer's node answers heartbeats. */
  peerReachable: Gauge<"peer">;
  /** geospool_replication_peer_unreachable_seconds{peer}: since its last answer, while it gives none. */
  peerUnreachableSeconds: Gauge<"peer">;
  /** geospool_replication_lag_seconds{peer} (see cluster-status.ts for its definition). */
  lagSeconds: Gauge<"peer">;
  /** geospool_replication_lag_bytes{peer}: the peer's WAL this node has not confirmed. */
  lagBytes: Gauge<"peer">;
  /** geospool_replication_subscription_apply_errors{peer}: PostgreSQL's count for the subscription. */
  subscriptionApplyErrors: Gauge<"peer">;
  /** geospool_replication_slot_active{slot, kind, peer}: 1 while something streams from the slot. */
  slotActive: Gauge<"slot" | "kind" | "peer">;
  /** geospool_replication_slot_retained_bytes{slot, kind, peer}: WAL the slot holds back. */
  slotRetainedBytes: Gauge<"slot" | "kind" | "peer">;
  /** geospool_replication_pending_fetches: entries waiting for their data. */
  pendingFetches: Gauge;
  /** geospool_replication_backlog{kind="dirty"|"retrying"|"unacknowledged_commits"}. */
  backlog: Gauge<"kind">;
}

/**
 * A node's metrics, on a Registry of its own (never prom-client's global one), so several
 * nodes in one process, and tests, never collide.
 */
export class Metrics {
  readonly registry = new Registry();

  /** geospool_queue_depth{queue, state="queued"|"checked_out"} (filled at scrape time). */
  readonly queueDepth: Gauge<"queue" | "state">;
  /** geospool_operations_total{op, queue, outcome} */
  readonly operations: Counter<"op" | "queue" | "outcome">;
  /** geospool_operation_duration_seconds{op} */
  readonly operationDuration: Histogram<"op">;
  /** geospool_lease_expiries_total{queue, to}: `to` is the queue the entry went to. */
  readonly leaseExpiries: Counter<"queue" | "to">;
  /** geospool_fsck_problems{kind}: problems found by the latest fsck, by kind. */
  readonly fsckProblems: Gauge<"kind">;
  /** geospool_grpc_requests_total{method, code}: code is the gRPC status name (OK, NOT_FOUND, ...). */
  readonly grpcRequests: Counter<"method" | "code">;
  /**
   * geospool_replication_events_total{event}: local_rows (journal rows written for local
   * transitions), placed and dropped (peer changes applied), apply_errors, quarantined,
   * diverged (entries the replicator's self-check found differing from the journal).
   */
  readonly replicationEvents: Counter<"event">;
  /**
   * geospool_metrics_collect_errors_total{collector}: scrape-time sources that failed. A
   * source that rejects asynchronously is counted in the next scrape's output.
   */
  readonly collectErrors: Counter<"collector">;

  /** The geospool_replication_* gauges, registered with the first replication source. */
  replicationGauges: ReplicationGauges | undefined;

  private depthSource: QueueDepthSource | undefined;
  private replicationSource: ReplicationSource | undefined;
  private readonly replicationTimeoutMs: number;
  private readonly onCollectError: MetricsOptions["onCollectError"];
  /** One read of the replication source shared by the gauges of one scrape. */
  private replicationRead: Promise<ReplicationSnapshot | undefined> | undefined;
  private readonly fsckKindsSeen = new Set<string>();
  private readonly queues: ReadonlySet<string> | undefined;

  constructor(options: MetricsOptions = {}) {
    this.depthSource = options.queueDepth;
    this.queues = options.queues && new Set(options.queues);
    if (options.defaultLabels !== undefined) this.registry.setDefaultLabels(options.defaultLabels);
    const registers = [this.registry];
    const self = this;
    const onCollectError = options.onCollectError;
    this.queueDepth = new Gauge({
      name: "geospool_queue_depth",
      help: "Entries per queue: waiting (state=queued) or under lease (state=checked_out).",
      labelNames: ["queue", "state"] as const,
      registers,
      async collect() {
        const source = self.depthSource;
        if (source === undefined) return;
        let depths: readonly QueueDepth[];
        try {
          depths = await source();
        } catch (err) {
          this.reset();
          self.collectErrors.inc({ collector: "queue_depth" });
          onCollectError?.("queue_depth", err);
          return;
        }
        this.reset();
        for (const { queue, queued, checkedOut } of depths) {
          this.set({ queue, state: "queued" }, queued);
          this.set({ queue, state: "checked_out" }, checkedOut);
        }
      },
    });
    this.collectErrors = new Counter({
      name: "geospool_metrics_collect_errors_total",
      help: "Scrape-time metric sources that failed, by collector.",
      labelNames: ["collector"] as const,
      registers,
    });
    this.operations = new Counter({
      name: "geospool_operations_total",
      help: "Spool operations served, by operation, queue and outcome.",
      labelNames: ["op", "queue", "outcome"] as const,
      registers,
    });
    this.operationDuration = new Histogram({
      name: "geospool_operation_duration_seconds",
      help: "Time to serve a spool operation, by operation.",
      labelNames: ["op"] as const,
      buckets: OPERATION_BUCKETS,
      registers,
    });
    this.leaseExpiries = new Counter({
      name: "geospool_lease_expiries_total",
      help: "Checkouts whose lease expired, by queue and the queue the entry went to.",
      labelNames: ["queue", "to"] as const,
      registers,
    });
    this.fsckProblems = new Gauge({
      name: "geospool_fsck_problems",
      help: "Problems found by the latest spool fsck, by kind.",
      labelNames: ["kind"] as const,
      registers,
    });
    this.grpcRequests = new Counter({
      name: "geospool_grpc_requests_total",
      help: "gRPC requests finished, by method and status code.",
      labelNames: ["method", "code"] as const,
      registers,
    });
    this.replicationEvents = new Counter({
      name: "geospool_replication_events_total",
      help: "Replication events: local_rows, placed, dropped, apply_errors, quarantined, diverged.",
      labelNames: ["event"] as const,
      registers,
    });
    this.replicationTimeoutMs = options.replicationTimeoutMs ?? 5_000;
    this.onCollectError = onCollectError;
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Sets (or replaces) the source read for the geospool_replication_* gauges at each scrape.
   * The gauges are registered with the first source: a node without replication has none.
   */
  setReplicationSource(source: ReplicationSource | undefined): void {
    this.replicationSource = source;
    if (source !== undefined) this.replicationGauges ??= this.registerReplicationGauges();
  }

  private registerReplicationGauges(): ReplicationGauges {
    /** The snapshot for this scrape, undefined when there is no source or it failed. */
    const readReplication = (): Promise<ReplicationSnapshot | undefined> => {
      const source = this.replicationSource;
      if (source === undefined) return Promise.resolve(undefined);
      this.replicationRead ??= within(source(), this.replicationTimeoutMs)
        .catch((err: unknown) => {
          this.collectErrors.inc({ collector: "replication" });
          this.onCollectError?.("replication", err);
          return undefined;
        })
        .finally(() => {
          this.replicationRead = undefined;
        });
      return this.replicationRead;
    };
    /** A gauge filled from the replication snapshot (emptied when there is none). */
    const replicationGauge = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      fill: (gauge: Gauge<L>, s: ReplicationSnapshot) => void,
    ): Gauge<L> =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers: [this.registry],
        async collect() {
          const s = await readReplication();
          this.reset();
          if (s !== undefined) fill(this, s);
        },
      });
    const peerConnected = replicationGauge(
      "geospool_replication_peer_connected",
      "1 while this node's subscription to the peer is up (apply worker running, messages received).",
      ["peer"] as const,
      (g, s) => {
        for (const p of s.peers) g.set({ peer: p.peer }, p.connected ? 1 : 0);
      },
    );
    const peerReachable = replicationGauge(
      "geospool_replication_peer_reachable",
      "1 while the peer's node answers this node's heartbeats (a health check every second, 2 s deadline); 0 while it does not.",
      ["peer"] as const,
      (g, s) => {
        for (const p of s.peers) {
          if (p.reachable !== undefined && p.reachable !== null) {
            g.set({ peer: p.peer }, p.reachable ? 1 : 0);
          }
        }
      },
    );
    const peerUnreachableSeconds = replicationGauge(
      "geospool_replication_peer_unreachable_seconds",
      "Seconds since the peer's node last answered a heartbeat, while it does not answer; 0 while it does.",
      ["peer"] as const,
      (g, s) => {
        for (const p of s.peers) {
          if (p.reachable !== undefined && p.reachable !== null) {
            g.set({ peer: p.peer }, p.unreachableSeconds ?? 0);
          }
        }
      },
    );
    const lagSeconds = replicationGauge(
      "geospool_replication_lag_seconds",
      "How far this node is behind the peer's WAL in time: the peer's replay_lag while connected, the time since the last contact while not.",
      ["peer"] as const,
      (g, s) => {
        for (const p of s.peers) g.set({ peer: p.peer }, p.lagSeconds);
      },
    );
    const lagBytes = replicationGauge(
      "geospool_replication_lag_bytes",
      "WAL the peer has written that this node has not confirmed (absent while the peer's database cannot be asked).",
      ["peer"] as const,
      (g, s) => {
        for (const p of s.peers) if (p.lagBytes !== null) g.set({ peer: p.peer }, p.lagBytes);
      },
    );
    const subscriptionApplyErrors = replicationGauge(
      "geospool_replication_subscription_apply_errors",
      "Errors applying the peer's rows to this node's journal (pg_stat_subscription_stats.apply_error_count).",
      ["peer"] as const,
      (g, s) => {
        for (const p of s.peers) g.set({ peer: p.peer }, p.subscriptionApplyErrors);
      },
    );
    const slotActive = replicationGauge(
      "geospool_replication_slot_active",
      "1 while something streams from this server's replication slot (kind=mesh: a peer's subscription; kind=apply: this node's applier).",
      ["slot", "kind", "peer"] as const,
      (g, s) => {
        for (const x of s.slots) {
          g.set({ slot: x.slot, kind: x.kind, peer: x.peer }, x.active ? 1 : 0);
        }
      },
    );
    const slotRetainedBytes = replicationGauge(
      "geospool_replication_slot_retained_bytes",
      "WAL this server keeps for the replication slot (current LSN minus its restart LSN).",
      ["slot", "kind", "peer"] as const,
      (g, s) => {
        for (const x of s.slots) {
          if (x.retainedBytes !== null) {
            g.set({ slot: x.slot, kind: x.kind, peer: x.peer }, x.retainedBytes);
          }
        }
      },
    );
    const pendingFetches = replicationGauge(
      "geospool_replication_pending_fetches",
      "Peers' entries whose data is being fetched or waits for a retry.",
      [] as const,
      (g, s) => g.set(s.pendingFetches),
    );
    const backlog = replicationGauge(
      "geospool_replication_backlog",
      "The replicator's work: entries to sync (dirty), entries waiting to retry, peer commits not acknowledged yet.",
      ["kind"] as const,
      (g, s) => {
        g.set({ kind: "dirty" }, s.backlog.dirty);
        g.set({ kind: "retrying" }, s.backlog.retrying);
        g.set({ kind: "unacknowledged_commits" }, s.backlog.unacknowledgedCommits);
      },
    );
    return {
      peerConnected,
      peerReachable,
      peerUnreachableSeconds,
      lagSeconds,
      lagBytes,
      subscriptionApplyErrors,
      slotActive,
      slotRetainedBytes,
      pendingFetches,
      backlog,
    };
  }

  /** Sets (or replaces) the source read for geospool_queue_depth at each scrape. */
  setQueueDepthSource(source: QueueDepthSource | undefined): void {
    this.depthSource = source;
  }

  /** Counts one finished operation and its duration. Bound: pass it as a callback. */
  readonly recordOperation = (op: string, queue: string, outcome: string, seconds: number) => {
    this.operations.inc({ op, queue: this.queueLabel(queue), outcome });
    this.operationDuration.observe({ op }, seconds);
  };

  /** Starts timing an operation; call the result with its outcome when it finishes. */
  startOperation(op: string, queue: string): (outcome: string) => void {
    const start = process.hrtime.bigint();
    return (outcome) => {
      this.recordOperation(op, queue, outcome, Number(process.hrtime.bigint() - start) / 1e9);
    };
  }

  /** Counts a lease expiry of an entry of `queue` sent back to `to` (its queue or the dead-letter queue). */
  readonly recordLeaseExpiry = (queue: string, to: string) => {
    this.leaseExpiries.inc({ queue: this.queueLabel(queue), to: this.queueLabel(to) });
  };

  private queueLabel(queue: string): string {
    return this.queues === undefined || this.queues.has(queue) ? queue : UNKNOWN_QUEUE;
  }

  /**
   * Publishes the counts of the latest fsck. Kinds reported before and absent now are
   * set to 0, so a resolved problem shows as 0, not as a stale value.
   */
  readonly setFsckProblems = (counts: Readonly<Record<string, number>>) => {
    for (const kind of Object.keys(counts)) this.fsckKindsSeen.add(kind);
    for (const kind of this.fsckKindsSeen) this.fsckProblems.set({ kind }, counts[kind] ?? 0);
  };

  /** Counts replication events (see replicationEvents). Bound: pass it as a callback. */
  readonly recordReplication = (event: string, n: number) => {
    this.replicationEvents.inc({ event }, n);
  };

  /** Counts one finished gRPC request. */
  readonly recordGrpcRequest = (method: string, code: string) => {
    this.grpcRequests.inc({ method, code });
  };

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** `p`, or a rejection after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
