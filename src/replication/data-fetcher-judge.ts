import type * as grpc from "@grpc/grpc-js";
import { StatusKind, statusKind } from "../common/grpc-status.js";
import { SourceFailureKind } from "./data-fetcher-errors.js";
import type { AttemptOutcome } from "./data-fetcher-stream.js";

/** What one failed attempt against a source means for the fetch (data-fetcher.ts). */

export interface Verdict {
  kind: SourceFailureKind;
  message: string;
  grpcCode?: grpc.status;
  /** The bytes in the file cannot be trusted: delete them. */
  discard: boolean;
}

/** Why an attempt that did not complete the data failed, and what to do about it. */
export function judge(outcome: AttemptOutcome, size: number, have: number, wrote: number): Verdict {
  switch (outcome.kind) {
    case "ended":
      return {
        kind: SourceFailureKind.Truncated,
        message: `stream ended at ${have} of ${size} bytes`,
        discard: true,
      };
    case "rejected":
      return outcome.reason === "too_long"
        ? { kind: SourceFailureKind.TooLong, message: outcome.message, discard: true }
        : { kind: SourceFailureKind.BadOffset, message: outcome.message, discard: false };
    case "timeout":
      return { kind: SourceFailureKind.Timeout, message: outcome.message, discard: false };
    case "failed": {
      const base = { message: outcome.message, grpcCode: outcome.code, discard: false };
      if (wrote > 0) return { ...base, kind: SourceFailureKind.Broken };
      return { ...base, kind: kindOfStatus(outcome.code) };
    }
    case "aborted":
      return { kind: SourceFailureKind.Error, message: "aborted", discard: false };
  }
}

function kindOfStatus(code: grpc.status): SourceFailureKind {
  switch (statusKind(code)) {
    case StatusKind.NotFound:
      return SourceFailureKind.NotFound;
    case StatusKind.OutOfRange:
      return SourceFailureKind.OutOfRange;
    case StatusKind.Denied:
      return SourceFailureKind.Denied;
    // A peer shutting down (cancelled) or out of disk or files (exhausted): try another.
    case StatusKind.Retry:
    case StatusKind.Cancelled:
    case StatusKind.Exhausted:
      return SourceFailureKind.Unavailable;
    default:
      return SourceFailureKind.Error;
  }
}
