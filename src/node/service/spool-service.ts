import type { Logger } from "pino";
import { BatchEnqueue, type BatchEntryInput } from "./batch-enqueue.js";
import { EntryReads } from "./entry-reads.js";
import type { IdempotencyStore } from "./idempotency-store.js";
import { type EnqueueHeader, IdempotentEnqueue } from "./idempotent-enqueue.js";
import { LeaseHolders, MAX_INLINE_DATA } from "./lease-holders.js";
import {
  DEFAULT_LIMITS,
  type NodeSpool,
  ServiceContext,
  type ServiceLimits,
} from "./service-context.js";
import { type Transition, TransitionBus } from "./transitions.js";

export type { BatchEntryInput, BatchOutcome } from "./batch-enqueue.js";
export type { EnqueueHeader } from "./idempotent-enqueue.js";
export { type CompleteAction, inlineDataFitting, MAX_INLINE_DATA } from "./lease-holders.js";
export { DEFAULT_LIMITS, type NodeSpool, type ServiceLimits } from "./service-context.js";

export interface SpoolServiceOptions {
  spool: NodeSpool;
  nodeId: string;
  logger: Logger;
  idempotency?: IdempotencyStore;
  /** Longest a Dequeue may wait (ms). */
  maxDequeueWaitMs?: number;
  /**
   * The most data a Dequeue returns inline (default and at most MAX_INLINE_DATA; a node
   * sets what its gRPC message size leaves room for: `inlineDataFitting`).
   */
  maxInlineDataBytes?: number;
  limits?: Partial<ServiceLimits>;
  clock?: () => number;
  /** Called after each operation, for metrics. */
  onOperation?: (op: string, queue: string, outcome: string, seconds: number) => void;
}

/**
 * The operations a node offers its clients (over gRPC), on its local spool. Transport
 * independent: inputs are plain values, failures are ServiceErrors, and "nothing there"
 * is a value. Three parts do the work: idempotent enqueue (idempotent-enqueue.ts), the
 * holders of checkouts (lease-holders.ts) and reads (entry-reads.ts); this class puts
 * them together with the transitions they announce (Watch).
 */
export class SpoolService {
  readonly bus = new TransitionBus();
  private readonly ctx: ServiceContext;
  private readonly uploads: IdempotentEnqueue;
  private readonly batches: BatchEnqueue;
  private readonly leases: LeaseHolders;
  private readonly reads: EntryReads;

  constructor(opts: SpoolServiceOptions) {
    this.ctx = new ServiceContext(
      opts.spool,
      opts.logger,
      opts.clock ?? Date.now,
      { ...DEFAULT_LIMITS, ...opts.limits },
      (t) => this.bus.publish(t),
      opts.onOperation,
    );
    this.uploads = new IdempotentEnqueue(this.ctx, opts.idempotency);
    this.batches = new BatchEnqueue(this.ctx, opts.idempotency, this.uploads);
    this.leases = new LeaseHolders(
      this.ctx,
      opts.maxDequeueWaitMs ?? 60_000,
      Math.min(opts.maxInlineDataBytes ?? MAX_INLINE_DATA, MAX_INLINE_DATA),
    );
    this.reads = new EntryReads(this.ctx);
  }

  get queues(): readonly string[] {
    return this.ctx.spool.queues;
  }

  /** Fail with not_found unless `queue` is one of the spool's queues. */
  checkQueue(queue: string): void {
    this.ctx.checkQueue(queue);
  }

  enqueue(header: EnqueueHeader, chunks: AsyncIterable<Uint8Array>) {
    return this.uploads.enqueue(header, chunks);
  }

  /** Many small entries at once, each whole or absent; one outcome per entry (batch-enqueue.ts). */
  enqueueBatch(
    principal: string,
    entries: readonly BatchEntryInput[],
    authorize?: (queue: string) => void,
  ) {
    return this.batches.enqueueBatch(principal, entries, authorize);
  }

  checkDequeue(req: Parameters<LeaseHolders["checkDequeue"]>[0]): void {
    this.leases.checkDequeue(req);
  }

  dequeue(req: Parameters<LeaseHolders["dequeue"]>[0]) {
    return this.leases.dequeue(req);
  }

  complete(req: Parameters<LeaseHolders["complete"]>[0]) {
    return this.leases.complete(req);
  }

  /** Return a checkout to its queue untouched (the client that asked for it is gone). */
  putBack(queue: string, name: string, leaseToken: string) {
    return this.leases.putBack(queue, name, leaseToken);
  }

  release(req: Parameters<LeaseHolders["release"]>[0]) {
    return this.leases.release(req);
  }

  extendLease(req: Parameters<LeaseHolders["extendLease"]>[0]) {
    return this.leases.extendLease(req);
  }

  list(req: Parameters<EntryReads["list"]>[0]) {
    return this.reads.list(req);
  }

  stat(req: Parameters<EntryReads["stat"]>[0]) {
    return this.reads.stat(req);
  }

  readData(req: Parameters<EntryReads["readData"]>[0]) {
    return this.reads.readData(req);
  }

  queueDepths() {
    return this.reads.queueDepths();
  }

  watch(queues: readonly string[], signal: AbortSignal): AsyncGenerator<Transition> {
    for (const q of queues) this.checkQueue(q);
    return this.bus.watch(queues, AbortSignal.any([signal, this.ctx.stopping]));
  }

  /** Call `listener` with every transition this service makes; returns the unsubscribe. */
  onTransition(listener: (t: Transition) => void): () => void {
    return this.bus.subscribe(listener);
  }

  /** Announce a lease the reaper took back (for Watch). */
  leaseExpired(name: string, fromQueue: string, to: string): void {
    this.leases.forget(fromQueue, name);
    this.ctx.publish({ kind: "lease_expired", name, queue: to, fromQueue });
  }

  /** Aborted once the node begins to shut down (`beginShutdown`). */
  get stopping(): AbortSignal {
    return this.ctx.stopping;
  }

  /** End waiting dequeues (they return nothing) and watches, so a drain can finish. */
  beginShutdown(): void {
    this.ctx.beginShutdown();
  }

  async close(): Promise<void> {
    this.beginShutdown();
    await this.leases.close();
  }
}
