import type { Readable } from "node:stream";
import type { NixCacheInfo } from "./nix-cache-info.js";

/** A nar ready to be sent: opened once, so its size and ETag describe what is read. */
export interface OpenNar {
  readonly size: number;
  /** A strong ETag, quoted. */
  readonly etag: string;
  /** Stream bytes `start`..`end` inclusive (the whole file by default); closes the nar. */
  read(range?: { start: number; end: number }): Readable;
  /** Read up to `buffer.length` bytes at `position` into `buffer`: how many were read (0 at the end). */
  readAt(buffer: Buffer, position: number): Promise<number>;
  /** Release the nar (after `readAt`, or without reading it: HEAD, 304, 416). */
  close(): Promise<void>;
}

/**
 * What the HTTP routes serve from: a node answers from its own disk and database. Misses
 * are `undefined`, never errors; an error means the store itself failed.
 */
export interface CacheReader {
  readonly info: NixCacheInfo;
  /**
   * The narinfo's bytes exactly as they are to be served: at once where the reader holds
   * them in memory (a node's store), else a promise.
   */
  narinfo(hashPart: string): Buffer | undefined | Promise<Buffer | undefined>;
  /** The `.ls` listing uploaded with a path, if any. */
  listing(hashPart: string): Promise<Buffer | undefined>;
  /** The nar a narinfo's URL names (`nar/...`, already checked by `narPathProblem`). */
  openNar(path: string): Promise<OpenNar | undefined>;
}
