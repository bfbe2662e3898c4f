import type { NameGenerator } from "./names.js";
import type { Throttle } from "./throttle.js";

/** How metadata is written to and read from disk. Metadata should be small. */
export interface MetadataCodec<M> {
  encode(metadata: M): Uint8Array | string;
  /** Throw on bad input; the spool reports the entry's name with the error. */
  decode(bytes: Buffer): M;
}

/** Lease policy of a spool. */
export interface LeasePolicy<Q extends string> {
  /** Lease given to a checkout that does not ask for one (default 10 minutes). */
  defaultLeaseMs: number;
  /**
   * How long past its deadline a lease is still honoured (default 5 s). A holder acts only
   * before its deadline and a reaper only after deadline + grace, so a holder that checked
   * its deadline and is mid-rename is never overtaken by a reaper.
   */
  graceMs: number;
  /** After this many failed deliveries an expired entry goes to `deadLetterQueue`. */
  maxAttempts: number;
  /** Where entries go after `maxAttempts` failed deliveries; none: back to their queue. */
  deadLetterQueue: Q | undefined;
  /**
   * Asked once a checkout is past deadline + grace, before this process takes it back:
   * how many more milliseconds to leave it (0: take it now; Infinity: not this time). A
   * replicated spool uses it so the node whose client holds the lease reaps first and
   * the others only after it had time to say so (see the replicator's `leaseHoldBack`).
   */
  holdBack?(name: string, queue: Q): number | Promise<number>;
}

/**
 * What a spool holds and how: the metadata codec, the queues and their directory names,
 * the name generator, the throttle, and the lease policy.
 */
export interface Spoolable<M, Q extends string = string> {
  readonly metadata: MetadataCodec<M>;
  /** Every queue of the spool. Each gets a directory (by default named as the queue). */
  readonly queues: readonly Q[];
  readonly queueDirname?: (queue: Q) => string;
  readonly nameGenerator?: NameGenerator;
  readonly throttle?: Throttle;
  readonly leases?: Partial<LeasePolicy<Q>>;
  /**
   * Whether the batch writer makes its files ahead, in a pool (index.ts, "The file pool"):
   * true by default. Off, every file is made when it is needed.
   */
  readonly filePool?: boolean;
}

/** Metadata as JSON. */
export function jsonCodec<M = unknown>(): MetadataCodec<M> {
  return {
    encode: (m) => JSON.stringify(m),
    decode: (bytes) => JSON.parse(bytes.toString("utf8")) as M,
  };
}

/** Metadata as UTF-8 text. */
export const textCodec: MetadataCodec<string> = {
  encode: (m) => m,
  decode: (bytes) => bytes.toString("utf8"),
};

/** Metadata as raw bytes (the node daemon's spools: metadata is opaque to it). */
export const bytesCodec: MetadataCodec<Buffer> = {
  encode: (m) => m,
  decode: (bytes) => Buffer.from(bytes),
};
