import { Expert, type Spool, SpoolError, SpoolErrorCode } from "../spool/index.js";
import { parseHashPart, splitStorePath, storePathBaseName } from "./store-path.js";

/**
 * GC roots: store paths the cache's garbage collection keeps, with their closures. Each root
 * is one entry of a spool queue of its own (no data, the record as metadata), so roots travel
 * through the journal like every entry and every node walks from the same roots once their
 * rows have replicated. Adding a root twice (on one node or on two) makes two entries; the
 * path stays rooted while any unexpired one is there, and `remove` takes every entry of it
 * that this node holds. An expired root is ignored by the walk and removed by the next GC.
 */
export interface CacheRoot {
  readonly v: 1;
  readonly hashPart: string;
  /** The store path as given (absent when only the hash part was). */
  readonly storePath?: string;
  /** ms since the epoch after which the root no longer keeps anything. */
  readonly expiresAt?: number;
  /** Free text from whoever added it. */
  readonly note?: string;
  /** Who added it (the token's name). */
  readonly by: string;
  /** ms since the epoch it was added. */
  readonly at: number;
}

/** A root as listed: its entry and record. */
export interface StoredRoot {
  readonly entry: string;
  readonly root: CacheRoot;
}

/** How a root record sits in the spool's metadata type (the node wraps it in its header). */
export interface RootCodec<M> {
  wrap(root: CacheRoot): M;
  /** undefined for an entry that is not a root. */
  unwrap(metadata: M): CacheRoot | undefined;
}

/**
 * A root that cannot be added: an expiry in the past, a note too long. (A bad path is a
 * `CacheError` with code `invalid_store_path`.)
 */
export class RootInputError extends Error {
  readonly code = "invalid_root";
  constructor(message: string) {
    super(message);
    this.name = "RootInputError";
  }
}

/** Longest note kept with a root. */
export const MAX_ROOT_NOTE = 1024;

/** A root's path as given: a full store path, or a bare 32-character hash part. */
export function parseRootPath(text: string): { hashPart: string; storePath?: string } {
  if (!text.includes("/")) return { hashPart: parseHashPart(text) };
  const { storeDir, path } = splitStorePath(text);
  return { hashPart: path.hashPart, storePath: `${storeDir}/${storePathBaseName(path)}` };
}

/** Whether `r` is a well-formed root record (a peer's record is input like any). */
export function isCacheRoot(r: unknown): r is CacheRoot {
  if (typeof r !== "object" || r === null) return false;
  const x = r as Partial<CacheRoot>;
  try {
    if (x.v !== 1 || typeof x.hashPart !== "string") return false;
    parseHashPart(x.hashPart);
  } catch {
    return false;
  }
  return (
    (x.storePath === undefined || typeof x.storePath === "string") &&
    (x.expiresAt === undefined || Number.isSafeInteger(x.expiresAt)) &&
    (x.note === undefined || typeof x.note === "string") &&
    typeof x.by === "string" &&
    Number.isSafeInteger(x.at)
  );
}

/** Whether `root` still keeps its path at `now`. */
export function rootLive(root: CacheRoot, now: number): boolean {
  return root.expiresAt === undefined || root.expiresAt > now;
}

export interface RootStoreOptions<M, Q extends string> {
  spool: Spool<M, Q>;
  queue: Q;
  codec: RootCodec<M>;
  clock?: () => number;
}

/** The roots of one spool queue: add, list, remove, all through the spool. */
export class RootStore<M, Q extends string> {
  constructor(private readonly options: RootStoreOptions<M, Q>) {}

  get queue(): Q {
    return this.options.queue;
  }

  /** Root `path` (a store path or hash part) for `by`, until `expiresAt` if given. */
  async add(
    path: string,
    by: string,
    opts: { expiresAt?: number; note?: string } = {},
  ): Promise<StoredRoot> {
    const at = (this.options.clock ?? Date.now)();
    if (opts.expiresAt !== undefined && !(opts.expiresAt > at)) {
      throw new RootInputError("the root's expiry is not in the future");
    }
    if (opts.note !== undefined && opts.note.length > MAX_ROOT_NOTE) {
      throw new RootInputError(`the root's note is longer than ${MAX_ROOT_NOTE} characters`);
    }
    const root: CacheRoot = {
      v: 1,
      ...parseRootPath(path),
      ...(opts.expiresAt === undefined ? {} : { expiresAt: opts.expiresAt }),
      ...(opts.note === undefined ? {} : { note: opts.note }),
      by,
      at,
    };
    const entry = await this.options.spool.enqueue(
      this.options.queue,
      this.options.codec.wrap(root),
      Buffer.alloc(0),
    );
    return { entry: entry.name, root };
  }

  /**
   * Every root entry in the queue, expired ones included, in name order. Entries someone
   * has checked out (a client dequeuing the roots queue, a removal under way) are listed
   * too: a root keeps its closure until it is removed.
   */
  async list(): Promise<StoredRoot[]> {
    const { spool, queue, codec } = this.options;
    const found = new Map<string, M>();
    for (const entry of await spool.list(queue)) {
      try {
        found.set(entry.name, await entry.direct.contents());
      } catch (err) {
        if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) continue;
        throw err;
      }
    }
    // Read only (never finished here), so reading another holder's checkout is harmless.
    for (const held of await Expert.listCheckoutsUnsafe(spool, queue)) {
      if (!found.has(held.name)) found.set(held.name, held.contents);
    }
    const out: StoredRoot[] = [];
    for (const [name, meta] of [...found].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const root = codec.unwrap(meta);
      if (root !== undefined && isCacheRoot(root)) out.push({ entry: name, root });
    }
    return out;
  }

  /** Remove every root of `path`'s hash part; returns the entries removed. */
  async remove(path: string): Promise<StoredRoot[]> {
    const { hashPart } = parseRootPath(path);
    const mine = (await this.list()).filter((r) => r.root.hashPart === hashPart);
    const removed: StoredRoot[] = [];
    for (const r of mine) if (await this.removeEntry(r.entry)) removed.push(r);
    return removed;
  }

  /**
   * Remove one root entry (taken by checkout first, so a remove never races another
   * holder); false when it was gone already.
   */
  async removeEntry(name: string): Promise<boolean> {
    return removeSpoolEntry(this.options.spool, this.options.queue, name);
  }
}

/**
 * Remove entry `name` of `queue` through the spool: checked out (so exactly one process acts
 * on it), then removed, which the replication tailer journals as a remove. false when it was
 * not in the queue (gone already, or held by someone else).
 */
export async function removeSpoolEntry<M, Q extends string>(
  spool: Spool<M, Q>,
  queue: Q,
  name: string,
): Promise<boolean> {
  const taken = await spool.checkoutIfPresent(spool.entry(queue, name), { leaseMs: 60_000 });
  if (taken.kind !== "ok") return false;
  return (await taken.entry.remove()).kind === "done";
}
