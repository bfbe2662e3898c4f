import { status } from "@grpc/grpc-js";

/**
 * What a gRPC status means to the caller, in one place. The client fails over on `retry`,
 * the CLI maps kinds to exit codes, and the data fetcher moves to another source on `retry`,
 * `cancelled` and `exhausted` (a peer that is shutting down or out of disk or files).
 */
export const StatusKind = {
  /** The node could not serve the call now: another node, or the same one later, may. */
  Retry: "retry",
  /** The call was cancelled (by the caller, or by a server that is shutting down). */
  Cancelled: "cancelled",
  /** RESOURCE_EXHAUSTED: a message over a size limit, or the node out of disk or files. */
  Exhausted: "exhausted",
  NotFound: "not_found",
  OutOfRange: "out_of_range",
  /** UNAUTHENTICATED or PERMISSION_DENIED. */
  Denied: "denied",
  /** INVALID_ARGUMENT: the request itself is wrong; retrying cannot help. */
  Invalid: "invalid",
  /** FAILED_PRECONDITION: for geospool, a lost lease. */
  Precondition: "precondition",
  /** Anything else (INTERNAL, DATA_LOSS, UNKNOWN, UNIMPLEMENTED, ...). */
  Failed: "failed",
} as const;

export type StatusKind = (typeof StatusKind)[keyof typeof StatusKind];

export function statusKind(code: status): StatusKind {
  switch (code) {
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.ABORTED:
      return StatusKind.Retry;
    case status.CANCELLED:
      return StatusKind.Cancelled;
    case status.RESOURCE_EXHAUSTED:
      return StatusKind.Exhausted;
    case status.NOT_FOUND:
      return StatusKind.NotFound;
    case status.OUT_OF_RANGE:
      return StatusKind.OutOfRange;
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return StatusKind.Denied;
    case status.INVALID_ARGUMENT:
      return StatusKind.Invalid;
    case status.FAILED_PRECONDITION:
      return StatusKind.Precondition;
    default:
      return StatusKind.Failed;
  }
}

/** Statuses after which another node, or the same one later, may well succeed. */
export function isRetryableStatus(code: status): boolean {
  return statusKind(code) === StatusKind.Retry;
}
