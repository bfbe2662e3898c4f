import type { CheckoutRecord, SpoolCore } from "./core.js";
import { DataFile } from "./data.js";

export type FinishResult = { kind: "done" } | { kind: "lease_lost" };

/**
 * An entry this process holds: it has been renamed into its queue's .checkout directory
 * and carries a lease. No other process using the spool interferes with it until the
 * lease ends; after that, any action reports `lease_lost` and changes nothing.
 */
export class CheckedOutEntry<M, Q extends string> {
  readonly #core: SpoolCore<M, Q>;
  readonly #record: CheckoutRecord<M, Q>;
  #current: M;
  #data: Buffer | undefined;

  /** @internal */
  constructor(core: SpoolCore<M, Q>, record: CheckoutRecord<M, Q>, data?: Buffer) {
    this.#core = core;
    this.#record = record;
    this.#current = record.metadata;
    this.#data = data;
  }

  get name(): string {
    return this.#record.name;
  }
  /** The queue it was checked out of. */
  get queue(): Q {
    return this.#record.queue;
  }
  /** The metadata, as updated by `update`. */
  get contents(): M {
    return this.#current;
  }
  /** Deliveries of this entry that ended without a save or remove. */
  get attempts(): number {
    return this.#record.attempts;
  }
  /** Lease deadline, ms since the epoch. */
  get leaseUntil(): number {
    return this.#record.leaseUntil;
  }
  /** The checkout file's inode: it changes whenever the checkout passes to someone else. */
  get inode(): number {
    return this.#record.ino;
  }
  /**
   * The lease token: 128 random bits made at checkout and kept in the entry's registry
   * file, so a process that restarts can recognise the holder; undefined when this
   * checkout has none (made by the replicator, or read from disk with its record gone).
   * Compare with `leaseTokensEqual`.
   */
  get leaseToken(): string | undefined {
    return this.#record.token;
  }
  /**
   * The data as read at checkout, handed over once: present when the checkout asked for it
   * (`CheckoutOptions.readDataUpTo`) and it was no larger, undefined otherwise (read it with
   * `dataFile`) and on every later call, so a holder that keeps its checkouts around does
   * not keep their data too.
   */
  takeData(): Buffer | undefined {
    const data = this.#data;
    this.#data = undefined;
    return data;
  }
  get path(): string {
    return this.#core.layout.checkoutFile(this.#core.dirname(this.queue), this.name);
  }

  /** Replace the metadata that the next `save` writes. */
  update(f: (metadata: M) => M): this {
    this.#current = f(this.#current);
    return this;
  }

  dataFile(): DataFile {
    const l = this.#core.layout;
    return new DataFile(l.dataFile(this.name), this.#core.throttle, l.tmpFile(this.name, "data"));
  }

  /** True while the lease is ours. */
  held(): Promise<boolean> {
    return this.#core.holds(this.#record);
  }

  /** Push the deadline to now + `leaseMs`. */
  async extendLease(leaseMs: number): Promise<FinishResult> {
    return (await this.#core.extendLease(this.#record, leaseMs)) ? DONE : LOST;
  }

  /** Atomically put the entry (with the current metadata) into `queue`. */
  async save(queue: Q): Promise<FinishResult> {
    const ok = await this.#core.saveCheckout(
      this.#record,
      queue,
      this.#current,
      this.#record.attempts,
    );
    return ok ? DONE : LOST;
  }

  /** Delete the entry: its metadata, its data, then its registry file. */
  async remove(): Promise<FinishResult> {
    return (await this.#core.removeCheckout(this.#record)) ? DONE : LOST;
  }

  /**
   * Give the entry back without finishing it: it counts as a failed delivery and goes back
   * to its queue, or to the dead-letter queue once it has used up its attempts.
   */
  async release(): Promise<FinishResult & { to?: Q }> {
    const attempts = this.#record.attempts + 1;
    const to = this.#core.failedDeliveryTarget(this.queue, attempts);
    const ok = await this.#core.saveCheckout(this.#record, to, this.#record.metadata, attempts);
    return ok ? { kind: "done", to } : LOST;
  }
}

const DONE: FinishResult = { kind: "done" };
const LOST: FinishResult = { kind: "lease_lost" };
