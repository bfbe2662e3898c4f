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

export interface MetricsOptions {
  /** Read at every scrape to fill geospool_queue_depth. Can also be set later. */
  queueDepth?: QueueDepthSource;
  /** Labels on every series, e.g. `{ node: "eu-1" }`. */
  defaultLabels?: Record<string, string>;
  /** Told when a scrape-time source fails (the daemon logs it); also counted. */
  onCollectError?: (collector: string, err: unknown) => void;
  /** Also export prom-client's process metrics (CPU, memory, event loop, GC). Default true. */
  processMetrics?: boolean;
}

/** Histogram buckets for spool operations (seconds): 1ms to 30s. */
export const OPERATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

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
   * transitions), placed and dropped (peer changes applied), apply_errors, quarantined.
   */
  readonly replicationEvents: Counter<"event">;
  /**
   * geospool_metrics_collect_errors_total{collector}: scrape-time sources that failed. A
   * source that rejects asynchronously is counted in the next scrape's output.
   */
  readonly collectErrors: Counter<"collector">;

  private depthSource: QueueDepthSource | undefined;
  private readonly fsckKindsSeen = new Set<string>();

  constructor(options: MetricsOptions = {}) {
    this.depthSource = options.queueDepth;
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
      help: "Replication events: local_rows, placed, dropped, apply_errors, quarantined.",
      labelNames: ["event"] as const,
      registers,
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Sets (or replaces) the source read for geospool_queue_depth at each scrape. */
  setQueueDepthSource(source: QueueDepthSource | undefined): void {
    this.depthSource = source;
  }

  /** Counts one finished operation and its duration. Bound: pass it as a callback. */
  readonly recordOperation = (op: string, queue: string, outcome: string, seconds: number) => {
    this.operations.inc({ op, queue, outcome });
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
    this.leaseExpiries.inc({ queue, to });
  };

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
