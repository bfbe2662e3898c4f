import { createReadStream } from "node:fs";
import { constants, open, rm } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { type Spool, SpoolError, SpoolErrorCode } from "../spool/index.js";
import { CacheIndex, type IndexedEntry } from "./cache-index.js";
import type { CacheReader, OpenNar } from "./cache-reader.js";
import type { AcceptedUpload, CacheWriter, CommitOutcome, RejectedUpload } from "./cache-writer.js";
import { formatHash, HashSink } from "./hash.js";
import { narDigester } from "./nar-digest.js";
import { compressionOfNarPath } from "./nar-staging.js";
import { referenceHashParts } from "./narinfo.js";
import type { NixCacheInfo } from "./nix-cache-info.js";
import type { CandidateTrust } from "./served-rule.js";
import { formatStamp, recordStamp, stampMs, stampOfMs } from "./upload-stamp.js";

/**
 * What one cache entry's metadata holds: an accepted upload of one nar file with the
 * narinfo to serve for it. Small (a narinfo, a listing), so it travels in the journal row;
 * the entry's data is the compressed nar itself, so its sha256 is the FileHash.
 */
export interface CacheRecord {
  readonly v: 1;
  readonly hashPart: string;
  /** The narinfo's bytes to serve (UTF-8 text, as parseNarinfo accepted them). */
  readonly narinfo: string;
  /** The nar path (`nar/...`) this entry's data answers. */
  readonly url: string;
  readonly trust: CandidateTrust;
  /** The node that accepted the upload. */
  readonly origin: string;
  /**
   * When it was accepted (upload-stamp.ts): `stamp` is the cluster clock's value (decimal),
   * the served rule's "first upload"; `hlc` its physical part in ms (records from before
   * stamps were clock values have only `hlc`, the accepting node's wall clock).
   */
  readonly hlc: number;
  readonly stamp?: string;
  readonly listing?: string;
  readonly by: string;
  /** Every nar path accepted with this narinfo (Guix lists several), `url` included. */
  readonly files?: readonly string[];
}

/** How a cache record sits in the spool's metadata type (the node wraps it in its header). */
export interface CacheEntryCodec<M> {
  wrap(record: CacheRecord, data: { sha256: string; size: number }): M;
  /** undefined for an entry that is not a cache record. */
  unwrap(metadata: M): CacheRecord | undefined;
}

/** Cache-record fields the index relies on, checked (a peer's record is input like any). */
function indexable(name: string, r: CacheRecord): IndexedEntry | undefined {
  const stamp = recordStamp(r);
  if (
    stamp === undefined ||
    typeof r.hashPart !== "string" ||
    typeof r.url !== "string" ||
    typeof r.narinfo !== "string" ||
    !["trusted", "node_signed", "unsigned"].includes(r.trust) ||
    typeof r.origin !== "string" ||
    (r.listing !== undefined && typeof r.listing !== "string") ||
    (r.files !== undefined &&
      !(Array.isArray(r.files) && r.files.every((f: unknown) => typeof f === "string")))
  ) {
    return undefined;
  }
  return {
    entry: name,
    hashPart: r.hashPart,
    url: r.url,
    trust: r.trust,
    origin: r.origin,
    stamp,
    narinfo: Buffer.from(r.narinfo, "utf8"),
    listing: r.listing === undefined ? undefined : Buffer.from(r.listing, "utf8"),
    by: typeof r.by === "string" ? r.by : "",
    files: r.files,
  };
}

/** Entries read from the spool at once while indexing, and indexed per transaction. */
const READ_AT_ONCE = 64;
const APPLY_AT_ONCE = 1000;
/** A failed index update is tried again after this (ms). */
const RETRY_MS = 1000;

export interface SpoolCacheStoreOptions<M, Q extends string> {
  spool: Spool<M, Q>;
  queue: Q;
  codec: CacheEntryCodec<M>;
  info: NixCacheInfo;
  origin: string;
  /** The node's PostgreSQL, migrated: the lookup index lives there (cache-index.ts). */
  pool: pg.Pool;
  /**
   * The stamp of an upload accepted now (upload-stamp.ts): the node passes the cluster's
   * hybrid logical clock. Default: the wall clock's millisecond (for tests and tools).
   */
  stamp?: () => bigint;
  /**
   * May an upload of these hash parts (its own and its references) be stored now? The GC
   * handshake refuses paths a GC is removing (gc-handshake.ts `admit`); `release` once the
   * upload is indexed or failed. Default: always.
   */
  admit?: (
    hashParts: readonly string[],
  ) => { kind: "ok"; release(): void } | { kind: "refused"; message: string };
  /** Where rejections go (the node keeps them in a `RejectionLog`). */
  onReject?: (r: RejectedUpload) => void | Promise<void>;
}

/**
 * The binary cache over a spool queue: every accepted upload is one entry (so it
 * replicates like any entry), and the lookup index (cache-index.ts: hash part → served
 * entry, nar path → entries, references) is derived from the queue into the node's
 * PostgreSQL, never the source of truth. It follows the queue entry by entry (`changed`,
 * called for the node's own uploads and transitions and for the replicator's placements and
 * drops) and as a whole (`refresh`: at open, rebuilding what is missing, and as a safety
 * net for writers outside this process). Of several entries for one hash part, the one
 * served is `chooseServable`'s; a nar is served while any entry holds it.
 */
export class SpoolCacheStore<M, Q extends string> implements CacheReader, CacheWriter {
  private readonly dirty = new Set<string>();
  private wholeQueue = false;
  private running: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly options: SpoolCacheStoreOptions<M, Q>,
    private readonly index: CacheIndex,
  ) {}

  /**
   * Open the store: its index in PostgreSQL (dropped when it was derived from another
   * spool, queue or format), brought to the queue's contents before this returns.
   */
  static async open<M, Q extends string>(
    options: SpoolCacheStoreOptions<M, Q>,
  ): Promise<SpoolCacheStore<M, Q>> {
    const { index } = await CacheIndex.open(options.pool, {
      spoolId: options.spool.identity?.id ?? "",
      queue: options.queue,
    });
    const store = new SpoolCacheStore(options, index);
    await store.refresh();
    return store;
  }

  get info(): NixCacheInfo {
    return this.options.info;
  }

  /** How many entries the index holds. */
  get size(): number {
    return this.index.size;
  }

  /** Bring the index to the queue's contents as a whole: add new entries, drop removed ones. */
  refresh(): Promise<void> {
    this.wholeQueue = true;
    return this.schedule();
  }

  /**
   * Index what is waiting to be indexed now (entries changed, failed updates); throws when
   * the index cannot be brought up to date.
   */
  settle(): Promise<void> {
    return this.schedule();
  }

  /** Entry `name` may have come, gone or moved: index it as the queue now holds it. */
  changed(name: string): Promise<void> {
    this.dirty.add(name);
    return this.schedule();
  }

  /**
   * No more index updates: waits for the one running (failures are the callers'). Until
   * then a failed update is tried again after `RETRY_MS`, so an entry whose change failed
   * to index (the database away for a moment) does not wait for the next `refresh`.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    let at: Promise<void>;
    do {
      at = this.running;
      await at.catch(() => undefined);
    } while (at !== this.running);
  }

  /** One sync at a time; calls made while one runs share the next. */
  private schedule(): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    const next = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.sync();
      });
    this.queued = next;
    this.running = next;
    return next;
  }

  private async sync(): Promise<void> {
    const whole = this.wholeQueue;
    const names = [...this.dirty];
    this.wholeQueue = false;
    this.dirty.clear();
    try {
      if (whole) {
        const present = new Set(
          (await this.options.spool.list(this.options.queue)).map((e) => e.name),
        );
        const indexed = await this.index.names();
        for (const name of present) if (!indexed.has(name)) names.push(name);
        for (const name of indexed) if (!present.has(name)) names.push(name);
      }
      // In slices, so a rebuild of a large queue holds two slices of records at a time: the
      // next slice is read from the spool while the last one is written to PostgreSQL.
      let writing: Promise<void> = Promise.resolve();
      for (let at = 0; at < names.length; at += APPLY_AT_ONCE) {
        const slice = names.slice(at, at + APPLY_AT_ONCE);
        const put: IndexedEntry[] = [];
        const remove: string[] = [];
        for (let i = 0; i < slice.length; i += READ_AT_ONCE) {
          const part = slice.slice(i, i + READ_AT_ONCE);
          const read = await Promise.all(part.map((n) => this.read(n)));
          for (const [j, e] of read.entries()) {
            if (e !== undefined) put.push(e);
            else remove.push(part[j] as string); // a no-op for a name never indexed
          }
        }
        await writing;
        writing = this.index.apply(put, remove);
        writing.catch(() => undefined); // awaited below or at the next slice
      }
      await writing;
    } catch (err) {
      for (const name of names) this.dirty.add(name);
      if (whole) this.wholeQueue = true;
      if (!this.closed && this.retry === undefined) {
        this.retry = setTimeout(() => {
          this.retry = undefined;
          if (!this.closed) this.schedule().catch(() => undefined); // retried again if need be
        }, RETRY_MS);
        this.retry.unref();
      }
      throw err;
    }
  }

  /** The entry as the index takes it; undefined when it is not (or no longer) a cache entry. */
  private async read(name: string): Promise<IndexedEntry | undefined> {
    const { spool, queue, codec } = this.options;
    let metadata: M;
    try {
      metadata = await spool.entry(queue, name).direct.contents();
    } catch (err) {
      if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) return undefined;
      throw err;
    }
    const record = codec.unwrap(metadata);
    return record === undefined ? undefined : indexable(name, record);
  }

  /** The entry whose narinfo is served for `hashPart`, and that narinfo's bytes. */
  served(hashPart: string): Promise<{ entry: string; narinfo: Buffer } | undefined> {
    return this.index.servedOf(hashPart);
  }

  /** The store paths (hash parts) the entries of `hashPart` reference. */
  references(hashPart: string): Promise<string[]> {
    return this.index.references(hashPart);
  }

  narinfo(hashPart: string): Buffer | undefined {
    return this.index.narinfo(hashPart);
  }

  listing(hashPart: string): Promise<Buffer | undefined> {
    return this.index.listing(hashPart);
  }

  async openNar(path: string): Promise<OpenNar | undefined> {
    for (const name of await this.index.narEntries(path)) {
      const data = this.options.spool.entry(this.options.queue, name).dataFile();
      let file: Awaited<ReturnType<typeof open>>;
      try {
        file = await open(data.path, constants.O_RDONLY);
      } catch (err) {
        if ((err as { code?: unknown }).code === "ENOENT") continue; // removed meanwhile
        throw err;
      }
      const st = await file.stat();
      return {
        size: st.size,
        etag: `"${name}"`,
        read: (range) =>
          file.createReadStream({ autoClose: true, start: range?.start, end: range?.end }),
        readAt: async (buffer, position) =>
          (await file.read(buffer, 0, buffer.length, position)).bytesRead,
        close: () => file.close(),
      };
    }
    return undefined;
  }

  async storedNarFacts(path: string) {
    const nar = await this.openNar(path);
    if (nar === undefined) return undefined;
    const { sink, facts } = narDigester(compressionOfNarPath(path));
    await pipeline(nar.read(), sink);
    return facts;
  }

  async commit(upload: AcceptedUpload): Promise<CommitOutcome> {
    const hashPart = upload.narinfo.storePath.hashPart;
    const admission = this.options.admit?.([hashPart, ...referenceHashParts(upload.narinfo)]) ?? {
      kind: "ok",
      release: () => undefined,
    };
    if (admission.kind === "refused") {
      if (upload.nar !== undefined) await rm(upload.nar.file, { force: true });
      return { kind: "refused", message: admission.message };
    }
    try {
      return await this.store(upload);
    } finally {
      admission.release();
    }
  }

  private async store(upload: AcceptedUpload): Promise<"stored" | "already_served"> {
    const { spool, queue, codec } = this.options;
    const hashPart = upload.narinfo.storePath.hashPart;
    let url = upload.nar?.path;
    for (const f of upload.nar === undefined ? upload.narinfo.files : []) {
      if ((await this.index.narEntries(f.url)).length > 0) {
        url = f.url;
        break;
      }
    }
    if (url === undefined) throw new Error(`commit of ${hashPart}: no staged or stored nar`);
    if (await this.index.holds(hashPart, upload.served, url)) {
      if (upload.nar !== undefined) await rm(upload.nar.file, { force: true });
      return "already_served";
    }
    const stamp = (this.options.stamp ?? (() => stampOfMs(Date.now())))();
    const record: CacheRecord = {
      v: 1,
      hashPart,
      narinfo: upload.served.toString("utf8"),
      url,
      trust: upload.trust,
      origin: this.options.origin,
      hlc: stampMs(stamp),
      stamp: formatStamp(stamp),
      by: upload.by,
      ...(upload.listing === undefined ? {} : { listing: upload.listing.toString("utf8") }),
      ...(upload.files === undefined ? {} : { files: [...upload.files] }),
    };
    const source =
      upload.nar !== undefined
        ? createReadStream(upload.nar.file)
        : (await this.openNar(url))!.read();
    const sha = new HashSink("sha256");
    const tee = async function* () {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        sha.update(chunk);
        yield chunk;
      }
    };
    const entry = await spool.enqueueDeferred(queue, tee(), ({ size }) => {
      const { hash } = sha.finish();
      return codec.wrap(record, { sha256: Buffer.from(hash.digest).toString("hex"), size });
    });
    if (upload.nar !== undefined) await rm(upload.nar.file, { force: true });
    await this.changed(entry.name);
    return "stored";
  }

  async reject(rejection: RejectedUpload): Promise<void> {
    await this.options.onReject?.(rejection);
  }
}

/** `sha256:<nix32>` of an entry's data digest (lowercase hex), as a narinfo writes FileHash. */
export function fileHashOfDigest(sha256Hex: string): string {
  return formatHash({
    algorithm: "sha256",
    digest: Uint8Array.from(Buffer.from(sha256Hex, "hex")),
  });
}
