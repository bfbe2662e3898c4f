import { type ServiceError as GrpcServiceError, Metadata, status } from "@grpc/grpc-js";
import { ServiceErrorCode, toServiceError } from "../service/errors.js";

/** The one place where service failures become gRPC statuses. */
const TO_GRPC: Record<ServiceErrorCode, status> = {
  [ServiceErrorCode.InvalidArgument]: status.INVALID_ARGUMENT,
  [ServiceErrorCode.NotFound]: status.NOT_FOUND,
  [ServiceErrorCode.OutOfRange]: status.OUT_OF_RANGE,
  [ServiceErrorCode.LeaseLost]: status.FAILED_PRECONDITION,
  [ServiceErrorCode.InProgress]: status.ABORTED,
  [ServiceErrorCode.DataMismatch]: status.DATA_LOSS,
  [ServiceErrorCode.Unauthenticated]: status.UNAUTHENTICATED,
  [ServiceErrorCode.PermissionDenied]: status.PERMISSION_DENIED,
  [ServiceErrorCode.Unavailable]: status.UNAVAILABLE,
  [ServiceErrorCode.Cancelled]: status.CANCELLED,
  [ServiceErrorCode.ResourceExhausted]: status.RESOURCE_EXHAUSTED,
  [ServiceErrorCode.DeadlineExceeded]: status.DEADLINE_EXCEEDED,
  [ServiceErrorCode.Internal]: status.INTERNAL,
};

/** Trailer key carrying the service's own error code, so clients can branch on it. */
export const ERROR_CODE_KEY = "geospool-error-code";

export function toGrpcError(err: unknown): Partial<GrpcServiceError> {
  const e = toServiceError(err);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_KEY, e.code);
  // Internal errors do not leak details to clients.
  const details = e.code === ServiceErrorCode.Internal ? "internal error" : e.message;
  return { code: TO_GRPC[e.code], details, metadata };
}

/** Client side: the service error code a gRPC error carried, if any. */
export function serviceCodeOf(err: unknown): ServiceErrorCode | undefined {
  if (typeof err !== "object" || err === null || !("metadata" in err)) return undefined;
  const md = (err as { metadata?: Metadata }).metadata;
  const v = md?.get(ERROR_CODE_KEY)[0];
  return typeof v === "string" ? (v as ServiceErrorCode) : undefined;
}
