import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import { type Spool, validateName } from "../../spool/index.js";
import type { Config } from "../config/index.js";
import type { NodeEntryMeta } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode, toServiceError } from "./errors.js";
import type { Transition } from "./transitions.js";

export type NodeSpool = Spool<NodeEntryMeta, string>;

/** What one call may ask of the service: config `limits.*` (documented there). */
export type ServiceLimits = Omit<Config["limits"], "uploadIdleTimeout">;

/** The config's defaults (schema.ts), for a service made without a config. */
export const DEFAULT_LIMITS: ServiceLimits = {
  entryDataSize: 8 * 1024 ** 3,
  metadataSize: 256 * 1024,
  maxConcurrentUploads: 64,
  listPageBytes: 512 * 1024,
  maxBatchEntries: 1000,
  maxBatchBytes: 2 * 1024 * 1024,
};

/**
 * What the parts of the service (idempotent enqueue, lease holders, reads) share: the
 * spool, the limits, the clock, the node's shutdown signal, and the service's own
 * habits (queue checks, transitions, timing for metrics).
 */
export class ServiceContext {
  private readonly stopper = new AbortController();

  constructor(
    readonly spool: NodeSpool,
    readonly log: Logger,
    readonly clock: () => number,
    readonly limits: ServiceLimits,
    private readonly onPublish: (t: Transition) => void,
    private readonly onOperation?: (
      op: string,
      queue: string,
      outcome: string,
      seconds: number,
    ) => void,
  ) {
    // Every open Session stream and waiting Dequeue listens for it: no warning past ten.
    setMaxListeners(0, this.stopper.signal);
  }

  /** Aborted once the node begins to shut down. */
  get stopping(): AbortSignal {
    return this.stopper.signal;
  }

  beginShutdown(): void {
    this.stopper.abort();
  }

  /** Fail with not_found unless `queue` is one of the spool's queues (invalid_argument if bad). */
  checkQueue(queue: string): void {
    if (!this.spool.queues.includes(queue)) {
      validateName("queue", queue);
      throw new ServiceError(ServiceErrorCode.NotFound, `no queue ${JSON.stringify(queue)}`);
    }
  }

  /** Refuse client metadata over limits.metadataSize. */
  checkMetadata(metadata: Buffer): void {
    if (metadata.length > this.limits.metadataSize) {
      throw new ServiceError(
        ServiceErrorCode.ResourceExhausted,
        `metadata of ${metadata.length} bytes is over the ${this.limits.metadataSize} bytes of limits.metadataSize`,
      );
    }
  }

  publish(t: Omit<Transition, "at">): void {
    this.onPublish({ ...t, at: this.clock() });
  }

  /** Run `f` as operation `op` on `queue`: failures become ServiceErrors, and it is counted. */
  async timed<T>(op: string, queue: string, f: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    let outcome = "ok";
    try {
      return await f();
    } catch (err) {
      const e = toServiceError(err);
      outcome = e.code;
      throw e;
    } finally {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.onOperation?.(op, queue, outcome, seconds);
    }
  }
}
