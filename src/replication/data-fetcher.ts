import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";
import { SpoolClient } from "../proto/service-definition.js";
import { nameProblem } from "../spool/index.js";
import {
  DataFetchError,
  DataFetchErrorCode,
  describeFailures,
  type SourceFailure,
  SourceFailureKind,
} from "./data-fetcher-errors.js";
import { FetchFile } from "./data-fetcher-file.js";
import { judge } from "./data-fetcher-judge.js";
import { FifoSlots } from "./data-fetcher-slots.js";
import { readDataAttempt } from "./data-fetcher-stream.js";

export {
  DataFetchError,
  DataFetchErrorCode,
  type SourceFailure,
  SourceFailureKind,
} from "./data-fetcher-errors.js";

/**
 * # Fetching a replicated entry's data
 *
 * When a peer's enqueue row arrives, the entry's data (sha256 and size known from the row)
 * must be on local disk, whole and verified, before the entry may become visible. The
 * `DataFetcher` streams it with the `ReadData` RPC from the nodes that may hold it into
 * `<tmpDir>/<entry>~fetch` (a spool tmp file name, so fsck maps it to its entry), and
 * hands back the path of a complete, fsynced, verified file.
 *
 * Promises:
 * - Bounded memory: chunks go to disk as they arrive; the call is paused while a chunk is
 *   written (gRPC flow control pushes back on the source). Nothing holds the whole data.
 * - Verified: the sha256 is computed while writing (the hash state lives across resumes,
 *   so nothing is read back), and compared, with the size, before returning. A chunk past
 *   the size, a stream that ends short, or a digest mismatch deletes the bytes and drops
 *   that source.
 * - Resumable: a stream that fails after delivering bytes is resumed at once from the
 *   byte reached (ReadData `offset`), from the same source (after the other sources when
 *   the connection was lost: UNAVAILABLE makes it a suspect); a source that fails without
 *   progress is dropped and the next one continues from the same byte. In-process resumes
 *   need no fsync (the hash state is in memory); the file is fsynced once, at the end.
 *   A `~fetch` file left by an earlier fetch (a crash, or every source failing) is reused:
 *   its prefix is hashed from disk first. Such a prefix was maybe never fsynced, so if the
 *   digest then fails, the file is restarted from byte 0 without blaming the source.
 * - Sources are tried in the order `sources(entry)` gives, except that a source which was
 *   unreachable or stalled in the last `suspectMs` goes last. NOT_FOUND, OUT_OF_RANGE,
 *   denied, unavailable or timed out: skip to the next.
 * - A dead or stalled source is found in seconds: the channels send HTTP/2 keepalive pings
 *   while a call is open (`keepaliveMs`; a ping unanswered for as long ends the connection
 *   and the call), and a call with no message for `chunkTimeoutMs` is given up (a connection
 *   that never completes its handshake sends none). When none is left, the fetch fails
 *   with `all_sources_failed` listing every failed attempt; the bytes received so far stay
 *   on disk for a later fetch to resume, until the caller gives the entry up (`discard`).
 *   `leftovers` lists the files an earlier process left, for the caller to resume or discard
 *   (a `~fetch` file has no registry entry, so fsck reports it until it is gone).
 * - At most `maxConcurrent` transfers run at once; the others wait in FIFO order.
 * - Concurrent requests for one entry share one transfer (and one file). A caller's
 *   AbortSignal ends only its own wait; the transfer stops, and its file is deleted, when
 *   every caller has aborted (or the fetcher is closed).
 * - A second fetch of an entry whose complete file is still in `tmpDir` verifies it and
 *   returns it without network (`source: "local"`).
 *
 * The returned file belongs to the caller (move it into the spool, or delete it). It
 * should be consumed promptly: the spool monitor's repair deletes tmp files older than its
 * `maxTmpFileAgeMs`.
 */
export class DataFetcher {
  private readonly slots: FifoSlots;
  private readonly jobs = new Map<string, Job>();
  private readonly clients = new Map<string, SpoolClient>();
  private readonly log: Logger;
  private readonly credentials: grpc.ChannelCredentials;
  private readonly chunkTimeoutMs: number;
  private readonly clock: () => number;
  /** Sources that were unreachable or stalled, and until when they are tried last. */
  private readonly suspects = new Map<string, number>();
  private closed = false;

  constructor(private readonly opts: DataFetcherOptions) {
    this.slots = new FifoSlots(opts.maxConcurrent ?? DEFAULT_MAX_CONCURRENT);
    this.log = componentLogger(opts.logger, "data-fetcher");
    this.credentials = opts.credentials ?? grpc.credentials.createInsecure();
    this.chunkTimeoutMs = opts.chunkTimeoutMs ?? DEFAULT_CHUNK_TIMEOUT_MS;
    this.clock = opts.clock ?? Date.now;
  }

  /**
   * Fetch the data of `entry` into `<tmpDir>/<entry>~fetch` and verify it. Rejects with a
   * `DataFetchError` (see its codes); never leaves a file that failed verification.
   */
  fetch(req: FetchRequest): Promise<FetchResult> {
    const problem = requestProblem(req);
    if (problem) {
      return Promise.reject(
        new DataFetchError(DataFetchErrorCode.InvalidRequest, req.entry, problem),
      );
    }
    if (this.closed) return Promise.reject(aborted(req.entry, "the fetcher is closed"));
    if (req.signal?.aborted) return Promise.reject(aborted(req.entry, "aborted before start"));
    let job = this.jobs.get(req.entry);
    if (job && !job.abandoned && (job.sha256 !== req.sha256 || job.size !== req.size)) {
      return Promise.reject(
        new DataFetchError(
          DataFetchErrorCode.ConflictingRequest,
          req.entry,
          `${req.entry} is being fetched as ${job.sha256}/${job.size} bytes, not ${req.sha256}/${req.size}`,
        ),
      );
    }
    if (!job || job.abandoned) job = this.start(req, job);
    job.callers++;
    return this.follow(job, req.signal);
  }

  /**
   * Distinct entries being fetched or waiting for a slot; only those `filter` accepts, when
   * given (entry names embed their origin node, so ClusterStatus can count per peer).
   */
  pending(filter?: (entry: string) => boolean): number {
    let n = 0;
    for (const job of this.jobs.values()) if (!job.abandoned && (!filter || filter(job.entry))) n++;
    return n;
  }

  /** Entries with a `~fetch` file in `tmpDir` (left by an earlier fetch or process). */
  async leftovers(): Promise<string[]> {
    const names = await readdir(this.opts.tmpDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    return names
      .filter((n) => n.endsWith(FETCH_TMP_SUFFIX))
      .map((n) => n.slice(0, -FETCH_TMP_SUFFIX.length))
      .filter((entry) => nameProblem(entry) === undefined);
  }

  /**
   * Delete the `~fetch` file of `entry` (kept bytes of a failed fetch, or a complete file no
   * one took), unless a transfer of it is under way. Returns whether nothing is left.
   */
  async discard(entry: string): Promise<boolean> {
    const job = this.jobs.get(entry);
    if (job !== undefined && !job.abandoned) return false;
    if (nameProblem(entry) !== undefined) return true;
    await job?.done.catch(noop);
    await unlink(join(this.opts.tmpDir, `${entry}${FETCH_TMP_SUFFIX}`)).catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      },
    );
    return true;
  }

  /** Abort every fetch (their files are deleted), wait for them to end, close the channels. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.jobs.values()];
    for (const job of all) {
      job.abandoned = true;
      job.ac.abort();
    }
    await Promise.allSettled(all.map((j) => j.done));
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private start(req: FetchRequest, previous: Job | undefined): Job {
    const job: Job = {
      entry: req.entry,
      sha256: req.sha256,
      size: req.size,
      ac: new AbortController(),
      callers: 0,
      abandoned: false,
      done: Promise.resolve() as unknown as Promise<FetchResult>,
    };
    // An abandoned transfer of the same entry deletes its file: let it finish first.
    job.done = (previous ? previous.done.then(noop, noop) : Promise.resolve()).then(() =>
      this.run(job),
    );
    job.done.catch(noop);
    this.jobs.set(req.entry, job);
    job.done
      .finally(() => {
        if (this.jobs.get(req.entry) === job) this.jobs.delete(req.entry);
      })
      .catch(noop);
    return job;
  }

  private follow(job: Job, signal: AbortSignal | undefined): Promise<FetchResult> {
    if (!signal) return job.done;
    return new Promise<FetchResult>((resolve, reject) => {
      const onAbort = () => {
        reject(aborted(job.entry, "aborted by the caller", signal.reason));
        job.callers--;
        if (job.callers === 0) {
          job.abandoned = true;
          job.ac.abort(signal.reason);
        }
      };
      signal.addEventListener("abort", onAbort, { once: true });
      job.done.then(
        (r) => {
          signal.removeEventListener("abort", onAbort);
          resolve(r);
        },
        (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      );
    });
  }

  private async run(job: Job): Promise<FetchResult> {
    const t0 = this.clock();
    const log = this.log.child({ entry: job.entry });
    const signal = job.ac.signal;
    const release = await this.slots.acquire(signal);
    if (!release) {
      this.opts.metrics?.finished?.(DataFetchErrorCode.Aborted, 0, 0);
      throw aborted(job.entry, "aborted while waiting for a slot");
    }
    let file: FetchFile | undefined;
    try {
      const sources = this.sourcesOf(job.entry);
      file = await FetchFile.open(
        join(this.opts.tmpDir, `${job.entry}${FETCH_TMP_SUFFIX}`),
        job.size,
      ).catch((err) => {
        throw io(job.entry, "open the tmp file", err);
      });
      const result = await this.transfer(job, file, sources, log);
      this.opts.metrics?.finished?.("ok", (this.clock() - t0) / 1000, result.bytes);
      log.debug({ source: result.source, bytes: result.bytes }, "data fetched");
      return result;
    } catch (err) {
      const e =
        err instanceof DataFetchError
          ? err
          : signal.aborted
            ? aborted(job.entry, "aborted", err)
            : io(job.entry, "write the tmp file", err);
      // Keep received bytes no check has condemned, for a later fetch to resume from.
      const keep = e.code === DataFetchErrorCode.AllSourcesFailed && (file?.bytes ?? 0) > 0;
      if (keep) await file?.close().catch(noop);
      else await file?.discard().catch(noop);
      this.opts.metrics?.finished?.(e.code, (this.clock() - t0) / 1000, file?.bytes ?? 0);
      if (e.code !== DataFetchErrorCode.Aborted) log.warn({ code: e.code }, e.message);
      throw e;
    } finally {
      release();
    }
  }

  private sourcesOf(entry: string): string[] {
    let list: readonly string[];
    try {
      list = this.opts.sources(entry);
    } catch (cause) {
      throw new DataFetchError(DataFetchErrorCode.NoSources, entry, `no sources for ${entry}`, {
        cause,
      });
    }
    const unique = [...new Set(list)];
    if (unique.length === 0) {
      throw new DataFetchError(DataFetchErrorCode.NoSources, entry, `no sources for ${entry}`);
    }
    return unique;
  }

  /** `sources` in their order, except that the suspects go last. */
  private bySuspicion(sources: readonly string[]): string[] {
    const now = this.clock();
    const suspect = (s: string) => (this.suspects.get(s) ?? 0) > now;
    return [...sources.filter((s) => !suspect(s)), ...sources.filter(suspect)];
  }

  private async transfer(
    job: Job,
    file: FetchFile,
    sources: readonly string[],
    log: Logger,
  ): Promise<FetchResult> {
    const failures: SourceFailure[] = [];
    const dropped = new Set<string>();
    const contributors: string[] = [];
    let attempts = 0;
    const done = async (source: string): Promise<FetchResult> => {
      this.suspects.delete(source);
      const reusedBytes = file.reusedBytes;
      await file.finish();
      return { path: file.path, bytes: file.bytes, source, reusedBytes, attempts };
    };
    const fail = (f: SourceFailure) => {
      failures.push(f);
      const lost =
        f.kind === SourceFailureKind.Unavailable ||
        f.kind === SourceFailureKind.Timeout ||
        (f.kind === SourceFailureKind.Broken && f.grpcCode === grpc.status.UNAVAILABLE);
      if (lost) {
        this.suspects.set(f.source, this.clock() + (this.opts.suspectMs ?? DEFAULT_SUSPECT_MS));
      }
      this.opts.metrics?.sourceFailed?.(f);
      log.info({ ...f }, "source attempt failed");
    };

    if (file.bytes === job.size) {
      if (file.digest() === job.sha256) return done(LOCAL_SOURCE);
      await file.reset();
    }
    for (;;) {
      // Suspects last, at every step: a connection lost mid-stream makes its source one.
      const source = this.bySuspicion(sources.filter((s) => !dropped.has(s)))[0];
      if (source === undefined) {
        throw new DataFetchError(
          DataFetchErrorCode.AllSourcesFailed,
          job.entry,
          `every source failed for ${job.entry}: ${describeFailures(failures)}`,
          { failures, partialBytes: file.bytes },
        );
      }
      attempts++;
      const from = file.bytes;
      const outcome = await readDataAttempt({
        client: this.client(source),
        metadata: this.metadata(),
        name: job.entry,
        offset: from,
        size: job.size,
        chunkTimeoutMs: this.chunkTimeoutMs,
        signal: job.ac.signal,
        write: async (chunk) => {
          await file.append(chunk);
          this.opts.metrics?.received?.(source, chunk.length);
        },
      });
      if (outcome.kind === "aborted") throw aborted(job.entry, "aborted");
      const wrote = file.bytes - from;
      if (wrote > 0 && contributors.at(-1) !== source) contributors.push(source);
      const failure = (kind: SourceFailureKind, message: string, grpcCode?: grpc.status) => {
        const f: SourceFailure = { source, kind, fromOffset: from, bytes: wrote, message };
        if (grpcCode !== undefined) f.grpcCode = grpcCode;
        return f;
      };

      // Everything arrived (even if the stream then failed or stalled): check it.
      if (file.bytes === job.size && outcome.kind !== "rejected") {
        const digest = file.digest();
        if (digest === job.sha256) return done(source);
        if (file.reusedBytes > 0) {
          // The prefix found on disk may be torn (never fsynced before a crash): start over
          // without blaming the source.
          log.info({ reused: file.reusedBytes }, "digest mismatch over a reused prefix");
          await file.reset();
          contributors.length = 0;
          continue;
        }
        fail(
          failure(
            SourceFailureKind.DigestMismatch,
            `sha256 ${digest}, expected ${job.sha256} (bytes from ${contributors.join(", ")})`,
          ),
        );
        await file.reset();
        contributors.length = 0;
        dropped.add(source);
        continue;
      }

      const verdict = judge(outcome, job.size, file.bytes, wrote);
      fail(failure(verdict.kind, verdict.message, verdict.grpcCode));
      if (verdict.discard) {
        await file.reset();
        contributors.length = 0;
      }
      if (verdict.kind !== SourceFailureKind.Broken) dropped.add(source);
    }
  }

  private client(endpoint: string): SpoolClient {
    let c = this.clients.get(endpoint);
    if (!c) {
      const keepalive = this.opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
      c = new SpoolClient(endpoint, this.credentials, {
        "grpc.max_receive_message_length": 16 * 1024 * 1024,
        "grpc.keepalive_time_ms": keepalive,
        "grpc.keepalive_timeout_ms": keepalive,
        // After a heal, fetches reach the peer again within seconds, not after grpc-js's
        // reconnect backoff (which grows to two minutes).
        "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
        ...this.opts.channelOptions,
      });
      this.clients.set(endpoint, c);
    }
    return c;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.opts.token) md.set("authorization", `Bearer ${this.opts.token}`);
    return md;
  }
}

/** The tmp file of a fetch is `<tmpDir>/<entry>~fetch`. */
export const FETCH_TMP_SUFFIX = "~fetch";
/** `FetchResult.source` when the complete file was already in `tmpDir`. */
export const LOCAL_SOURCE = "local";
export const DEFAULT_MAX_CONCURRENT = 4;
export const DEFAULT_CHUNK_TIMEOUT_MS = 10_000;
export const DEFAULT_KEEPALIVE_MS = 2_000;
export const DEFAULT_SUSPECT_MS = 30_000;
const MAX_RECONNECT_BACKOFF_MS = 5_000;

export interface DataFetcherOptions {
  /** gRPC endpoints (`host:port`) that may hold the entry's data, most preferred first. */
  sources: (entry: string) => readonly string[];
  /** Where the `<entry>~fetch` files go: the spool's `.tmp` directory. */
  tmpDir: string;
  /** Channel credentials (TLS / mTLS). Default: insecure. */
  credentials?: grpc.ChannelCredentials;
  /** Bearer token sent with every call (it needs `dequeue` on the entry's queue). */
  token?: string;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Transfers at once; the rest wait in FIFO order. Default 4. */
  maxConcurrent?: number;
  /** Give up on a source when no message arrives for this long while waiting. Default 10 s. */
  chunkTimeoutMs?: number;
  /**
   * Keepalive ping interval on the channels while a call is open, and how long a ping may go
   * unanswered before the connection (and the call) is given up. Default 2 s.
   */
  keepaliveMs?: number;
  /** How long a source that was unreachable or stalled is tried last. Default 30 s. */
  suspectMs?: number;
  logger?: Logger;
  metrics?: DataFetcherMetrics;
  /** Milliseconds, for durations. Default `Date.now`. */
  clock?: () => number;
}

/** Hooks for metrics; every one optional, called synchronously. */
export interface DataFetcherMetrics {
  /** `bytes` from `source` were written to disk. */
  received?(source: string, bytes: number): void;
  /** One attempt against one source failed. */
  sourceFailed?(failure: SourceFailure): void;
  /** A transfer ended (`"ok"` or an error code); seconds include the wait for a slot. */
  finished?(outcome: "ok" | DataFetchErrorCode, seconds: number, bytes: number): void;
}

export interface FetchRequest {
  /** The entry's name (a valid spool name). */
  entry: string;
  /** sha256 of the data: 64 lowercase hex digits. */
  sha256: string;
  /** Size of the data in bytes. */
  size: number;
  /** Stops this caller's wait; the transfer stops once every caller sharing it has aborted. */
  signal?: AbortSignal;
}

export interface FetchResult {
  /** `<tmpDir>/<entry>~fetch`: complete, verified, fsynced. */
  path: string;
  bytes: number;
  /** The endpoint that delivered the last bytes, or `"local"` if the file was already whole. */
  source: string;
  /** Bytes that were reused from a `~fetch` file found on disk. */
  reusedBytes: number;
  /** ReadData calls made. */
  attempts: number;
}

interface Job {
  entry: string;
  sha256: string;
  size: number;
  ac: AbortController;
  /** Callers waiting for this transfer. */
  callers: number;
  /** Every caller aborted (or the fetcher closed): a new request starts a new transfer. */
  abandoned: boolean;
  done: Promise<FetchResult>;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

function requestProblem(req: FetchRequest): string | undefined {
  const bad = nameProblem(req.entry);
  if (bad) return `bad entry name: ${bad}`;
  if (!SHA256_HEX.test(req.sha256)) return "sha256 must be 64 lowercase hex digits";
  if (!Number.isSafeInteger(req.size) || req.size < 0) {
    return "size must be a non-negative integer";
  }
  return undefined;
}

function aborted(entry: string, why: string, cause?: unknown): DataFetchError {
  return new DataFetchError(DataFetchErrorCode.Aborted, entry, `fetch of ${entry}: ${why}`, {
    cause,
  });
}

function io(entry: string, what: string, cause: unknown): DataFetchError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new DataFetchError(DataFetchErrorCode.Io, entry, `fetch of ${entry}: ${what}: ${detail}`, {
    cause,
  });
}

function noop(): void {}
