import { createHash } from "node:crypto";

/** One entry the node acknowledged, as the client last saw it acknowledged. */
export interface ModelEntry {
  name: string;
  /** The queue it is in (or checked out of), as last acknowledged. */
  queue: string;
  metadata: Buffer;
  data: Buffer;
  sha256: string;
  /** The lease the client holds, if any (it may have expired since). */
  lease?: { token: string; until: number };
  /**
   * A lease of it ran out or went unacknowledged: the reaper may have moved it back to
   * its queue or to the dead-letter queue, so its place is no longer exactly known.
   */
  drifted: boolean;
}

export const QUEUES = ["inbox", "outbox", "dead"] as const;
/** The node's limits in the campaign (small, so that inputs cross them). */
export const LIMITS = {
  entryDataSize: 100 * 1024,
  metadataSize: 16 * 1024,
  maxConcurrentUploads: 4,
  /** Uploads a client cut can linger this long (see `cuts`). */
  uploadIdleTimeout: 1_000,
  listPageBytes: 32 * 1024,
} as const;
export const DEAD_LETTER = "dead";
/** Time a lease may be over before the node must have noticed (reaper period + slack). */
export const LEASE_SLACK_MS = 3_000;

export const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/**
 * What a client knows from acknowledgements alone: every entry the node said it stored and
 * did not say it removed, with its data and last metadata, plus the lease tokens it handed
 * out. Only acknowledged answers change it.
 */
export class Model {
  readonly entries = new Map<string, ModelEntry>();
  /** Idempotency keys that created an entry: `queue\0key` -> name. */
  readonly keys = new Map<string, string>();
  /** Tokens that no longer hold anything (finished, released, or superseded). */
  readonly staleTokens: string[] = [];
  /** Finishing requests that succeeded, by their retry key (a retry gets the same answer). */
  readonly finished = new Set<string>();
  /**
   * When uploads were cut. grpc-js sometimes sends a call's first messages but not the
   * cancel that follows them at once, so the node sees an idle upload, which holds its slot
   * until limits.uploadIdleTimeout ends it.
   */
  readonly cuts: number[] = [];
  /** Checkouts (in a batch) of entries whose enqueue's answer had not been seen yet. */
  readonly pending: { name: string; queue: string; token: string; until: number }[] = [];
  /** Every lease token handed out: a new one must never repeat one. */
  readonly tokens = new Set<string>();
  /** Entries removed with acknowledgement: they must never come back. */
  readonly removed = new Set<string>();

  /** Whether uploads cut lately may still fill every upload slot. */
  slotsMayBeHeld(now = Date.now()): boolean {
    const recent = this.cuts.filter((t) => t > now - LIMITS.uploadIdleTimeout - 2_000);
    return recent.length >= LIMITS.maxConcurrentUploads;
  }

  names(): string[] {
    return [...this.entries.keys()].sort();
  }

  pick(i: number): ModelEntry | undefined {
    const names = this.names();
    if (names.length === 0) return undefined;
    return this.entries.get(names[i % names.length] as string);
  }

  held(): ModelEntry[] {
    return [...this.entries.values()].filter((e) => e.lease);
  }

  enqueued(name: string, queue: string, metadata: Buffer, data: Buffer, key?: string): void {
    this.entries.set(name, { name, queue, metadata, data, sha256: sha256(data), drifted: false });
    if (key) this.keys.set(`${queue}\0${key}`, name);
  }

  checkedOut(e: ModelEntry, queue: string, token: string, until: number): void {
    this.tokens.add(token);
    if (e.lease) this.staleTokens.push(e.lease.token);
    e.queue = queue;
    e.lease = { token, until };
  }

  /** The lease is gone (finished, released, lost): the token is stale from now on. */
  dropLease(e: ModelEntry): void {
    if (e.lease) this.staleTokens.push(e.lease.token);
    delete e.lease;
  }

  removedEntry(e: ModelEntry): void {
    this.dropLease(e);
    this.entries.delete(e.name);
    this.removed.add(e.name);
  }

  /** Whether `e` is certainly waiting in `queue` (a Dequeue of it must not come back empty). */
  certainlyAvailable(queue: string): boolean {
    return [...this.entries.values()].some((e) => e.queue === queue && !e.lease && !e.drifted);
  }

  /** Whether the lease on `e` is certainly still running / certainly over. */
  leaseState(e: ModelEntry, now = Date.now()): "live" | "over" | "either" {
    if (!e.lease) return "over";
    if (e.lease.until > now + 1_000) return "live";
    if (e.lease.until < now - LEASE_SLACK_MS) return "over";
    return "either";
  }

  /** The queues `e` may be in now. */
  possibleQueues(e: ModelEntry): string[] {
    return e.drifted || e.lease ? [e.queue, DEAD_LETTER] : [e.queue];
  }
}
