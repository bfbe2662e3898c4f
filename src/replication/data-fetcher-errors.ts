import type { status } from "@grpc/grpc-js";

/**
 * Why one attempt against one source did not deliver the data. Every kind except `broken`
 * drops the source for the rest of the fetch.
 */
export const SourceFailureKind = {
  /** The stream failed after delivering some bytes: resumed at once, from the same source. */
  Broken: "broken",
  /** The source does not hold the entry or its data (gRPC NOT_FOUND). */
  NotFound: "not_found",
  /** The call could not start or failed before any byte (UNAVAILABLE, CANCELLED, ...). */
  Unavailable: "unavailable",
  /** No message arrived within `chunkTimeoutMs` while the fetcher was waiting for one. */
  Timeout: "timeout",
  /** The source refused the caller's credentials (UNAUTHENTICATED, PERMISSION_DENIED). */
  Denied: "denied",
  /** The source's data is shorter than the offset asked for (OUT_OF_RANGE). */
  OutOfRange: "out_of_range",
  /** The stream ended normally before `size` bytes: the source holds other data. */
  Truncated: "truncated",
  /** The source sent more than `size` bytes: it holds other data. */
  TooLong: "too_long",
  /** A chunk's `offset` was not the next expected byte (a protocol violation). */
  BadOffset: "bad_offset",
  /** `size` bytes arrived but their sha256 is not the expected one. */
  DigestMismatch: "digest_mismatch",
  /** Any other gRPC status (INTERNAL, INVALID_ARGUMENT, ...). */
  Error: "error",
} as const;

export type SourceFailureKind = (typeof SourceFailureKind)[keyof typeof SourceFailureKind];

/** One failed attempt against one source, as reported in `DataFetchError.failures`. */
export interface SourceFailure {
  /** The gRPC endpoint (`host:port`). */
  source: string;
  kind: SourceFailureKind;
  /** The gRPC status, when the call ended with one. */
  grpcCode?: status;
  /** The byte offset the attempt started from. */
  fromOffset: number;
  /** Bytes this attempt wrote before failing. */
  bytes: number;
  message: string;
}

/** Failures of `DataFetcher.fetch`. Branch on `code`, never on the message. */
export const DataFetchErrorCode = {
  /** A malformed request: bad entry name, sha256 not 64 lowercase hex digits, bad size. */
  InvalidRequest: "invalid_request",
  /** The same entry is being fetched right now with another sha256 or size. */
  ConflictingRequest: "conflicting_request",
  /** `sources(entry)` returned no endpoint. */
  NoSources: "no_sources",
  /** Every source failed; `failures` says why, per attempt, in order. */
  AllSourcesFailed: "all_sources_failed",
  /** The caller's AbortSignal fired (or the fetcher was closed); the tmp file is gone. */
  Aborted: "aborted",
  /** A local disk failure (open, write, fsync, ...); `cause` is the system error. */
  Io: "io",
} as const;

export type DataFetchErrorCode = (typeof DataFetchErrorCode)[keyof typeof DataFetchErrorCode];

export class DataFetchError extends Error {
  readonly code: DataFetchErrorCode;
  readonly entry: string;
  /** Every failed source attempt, in order (empty unless sources were tried). */
  readonly failures: readonly SourceFailure[];
  /**
   * Bytes left in the tmp file for a later fetch to resume from (only after
   * `all_sources_failed`, and only bytes no check has condemned; 0 otherwise: the file is gone).
   */
  readonly partialBytes: number;

  constructor(
    code: DataFetchErrorCode,
    entry: string,
    message: string,
    options: { failures?: readonly SourceFailure[]; partialBytes?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DataFetchError";
    this.code = code;
    this.entry = entry;
    this.failures = options.failures ?? [];
    this.partialBytes = options.partialBytes ?? 0;
  }
}

/** A one-line summary of the failures, for messages and logs. */
export function describeFailures(failures: readonly SourceFailure[]): string {
  return failures
    .map((f) => `${f.source}: ${f.kind} at ${f.fromOffset}+${f.bytes} (${f.message})`)
    .join("; ");
}
