import { createReadStream } from "node:fs";
import { constants, open, rm } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { type Spool, SpoolError, SpoolErrorCode } from "../spool/index.js";
import type { CacheReader, OpenNar } from "./cache-reader.js";
import type { AcceptedUpload, CacheWriter, RejectedUpload } from "./cache-writer.js";
import { formatHash, HashSink } from "./hash.js";
import { narDigester } from "./nar-digest.js";
import { compressionOfNarPath } from "./nar-staging.js";
import type { NixCacheInfo } from "./nix-cache-info.js";
import { type CandidateTrust, chooseServed, type ServedCandidate } from "./served-rule.js";

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
  /** Node and clock stamp of acceptance: the served-rule's "first upload". */
  readonly origin: string;
  readonly hlc: number;
  readonly listing?: string;
  readonly by: string;
}

/** How a cache record sits in the spool's metadata type (the node wraps it in its header). */
export interface CacheEntryCodec<M> {
  wrap(record: CacheRecord, data: { sha256: string; size: number }): M;
  /** undefined for an entry that is not a cache record. */
  unwrap(metadata: M): CacheRecord | undefined;
}

interface Indexed extends ServedCandidate {
  readonly record: CacheRecord;
}

/**
 * The binary cache over a spool queue: every accepted upload is one entry (so it
 * replicates like any entry), and the lookup index (hash part → candidates, nar path →
 * entries) is derived from the queue, rebuilt by `refresh()`, never the source of truth.
 * Of several entries for one hash part, the one served is `chooseServed`'s; a nar is
 * served while any entry holds it.
 */
export class SpoolCacheStore<M, Q extends string> implements CacheReader, CacheWriter {
  private readonly byName = new Map<string, Indexed>();
  private readonly byHash = new Map<string, Map<string, Indexed>>();
  private readonly byNar = new Map<string, Set<string>>();

  constructor(
    private readonly options: {
      spool: Spool<M, Q>;
      queue: Q;
      codec: CacheEntryCodec<M>;
      info: NixCacheInfo;
      origin: string;
      clock?: () => number;
      /** Where rejections go (the node keeps them in a `RejectionLog`). */
      onReject?: (r: RejectedUpload) => void | Promise<void>;
    },
  ) {}

  get info(): NixCacheInfo {
    return this.options.info;
  }

  /** Bring the index to the queue's contents: add new entries, drop removed ones. */
  async refresh(): Promise<void> {
    const { spool, queue, codec } = this.options;
    const entries = await spool.list(queue);
    const present = new Set(entries.map((e) => e.name));
    for (const name of [...this.byName.keys()]) if (!present.has(name)) this.drop(name);
    for (const entry of entries) {
      if (this.byName.has(entry.name)) continue;
      let metadata: M;
      try {
        metadata = await entry.direct.contents();
      } catch (err) {
        if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) continue;
        throw err;
      }
      const record = codec.unwrap(metadata);
      if (record === undefined) continue;
      this.add(entry.name, record);
    }
  }

  private add(name: string, record: CacheRecord): void {
    const indexed: Indexed = {
      entry: name,
      origin: record.origin,
      hlc: record.hlc,
      trust: record.trust,
      record,
    };
    this.byName.set(name, indexed);
    const candidates = this.byHash.get(record.hashPart) ?? new Map<string, Indexed>();
    candidates.set(name, indexed);
    this.byHash.set(record.hashPart, candidates);
    const holders = this.byNar.get(record.url) ?? new Set<string>();
    holders.add(name);
    this.byNar.set(record.url, holders);
  }

  private drop(name: string): void {
    const indexed = this.byName.get(name);
    if (indexed === undefined) return;
    this.byName.delete(name);
    const { hashPart, url } = indexed.record;
    this.byHash.get(hashPart)?.delete(name);
    if (this.byHash.get(hashPart)?.size === 0) this.byHash.delete(hashPart);
    this.byNar.get(url)?.delete(name);
    if (this.byNar.get(url)?.size === 0) this.byNar.delete(url);
  }

  /** The entry whose narinfo is served for `hashPart`. */
  served(hashPart: string): { entry: string; record: CacheRecord } | undefined {
    const best = chooseServed(this.byHash.get(hashPart)?.values() ?? []);
    return best === undefined ? undefined : { entry: best.entry, record: best.record };
  }

  async narinfo(hashPart: string): Promise<Buffer | undefined> {
    const served = this.served(hashPart);
    return served === undefined ? undefined : Buffer.from(served.record.narinfo, "utf8");
  }

  async listing(hashPart: string): Promise<Buffer | undefined> {
    const listing = this.served(hashPart)?.record.listing;
    return listing === undefined ? undefined : Buffer.from(listing, "utf8");
  }

  async openNar(path: string): Promise<OpenNar | undefined> {
    for (const name of this.byNar.get(path) ?? []) {
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

  async commit(upload: AcceptedUpload): Promise<"stored" | "already_served"> {
    const { spool, queue, codec } = this.options;
    const hashPart = upload.narinfo.storePath.hashPart;
    const url = upload.nar?.path ?? upload.narinfo.files.find((f) => this.byNar.has(f.url))?.url;
    if (url === undefined) throw new Error(`commit of ${hashPart}: no staged or stored nar`);
    const narinfo = upload.served.toString("utf8");
    const same = [...(this.byHash.get(hashPart)?.values() ?? [])].some(
      (c) => c.record.narinfo === narinfo && c.record.url === url,
    );
    if (same) {
      if (upload.nar !== undefined) await rm(upload.nar.file, { force: true });
      return "already_served";
    }
    const record: CacheRecord = {
      v: 1,
      hashPart,
      narinfo: upload.served.toString("utf8"),
      url,
      trust: upload.trust,
      origin: this.options.origin,
      hlc: (this.options.clock ?? Date.now)(),
      by: upload.by,
      ...(upload.listing === undefined ? {} : { listing: upload.listing.toString("utf8") }),
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
    this.add(entry.name, record);
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
