import { SpoolError, SpoolErrorCode } from "../../spool/index.js";

/**
 * Failures of the node's service, independent of the transport. The gRPC layer maps each
 * code to a status in one place (src/node/grpc/status.ts).
 */
export const ServiceErrorCode = {
  InvalidArgument: "invalid_argument",
  NotFound: "not_found",
  /** A read past the end of the data. */
  OutOfRange: "out_of_range",
  /** The lease is gone (expired, taken back, or a wrong token). */
  LeaseLost: "lease_lost",
  /** The same idempotency key is being enqueued right now; retry later. */
  InProgress: "in_progress",
  /** Data did not match the size or digest the client announced. */
  DataMismatch: "data_mismatch",
  Unauthenticated: "unauthenticated",
  PermissionDenied: "permission_denied",
  /** The node is shutting down or a dependency is down. */
  Unavailable: "unavailable",
  /** The client went away (cancelled its call). */
  Cancelled: "cancelled",
  ResourceExhausted: "resource_exhausted",
  /** The client took too long (an upload that stayed idle). */
  DeadlineExceeded: "deadline_exceeded",
  Internal: "internal",
} as const;

export type ServiceErrorCode = (typeof ServiceErrorCode)[keyof typeof ServiceErrorCode];

export class ServiceError extends Error {
  readonly code: ServiceErrorCode;
  constructor(code: ServiceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ServiceError";
    this.code = code;
  }
}

/** Any error to a ServiceError: spool failures keep their meaning, the rest is internal. */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  if (err instanceof Error && err.name === "WatchOverflowError") {
    return new ServiceError(ServiceErrorCode.ResourceExhausted, err.message, { cause: err });
  }
  if (err instanceof SpoolError) {
    switch (err.code) {
      case SpoolErrorCode.InvalidName:
      case SpoolErrorCode.UnknownQueue:
      case SpoolErrorCode.InvalidArgument:
        return new ServiceError(ServiceErrorCode.InvalidArgument, err.message, { cause: err });
      case SpoolErrorCode.EntryNotFound:
        return new ServiceError(ServiceErrorCode.NotFound, err.message, { cause: err });
      case SpoolErrorCode.LeaseLost:
        return new ServiceError(ServiceErrorCode.LeaseLost, err.message, { cause: err });
      case SpoolErrorCode.Io:
        if (err.errno === "ENOSPC" || err.errno === "EMFILE" || err.errno === "ENFILE") {
          return new ServiceError(ServiceErrorCode.ResourceExhausted, err.message, { cause: err });
        }
        return new ServiceError(ServiceErrorCode.Internal, err.message, { cause: err });
      default:
        return new ServiceError(ServiceErrorCode.Internal, err.message, { cause: err });
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ServiceError(ServiceErrorCode.Internal, message, { cause: err });
}
