import * as grpc from "@grpc/grpc-js";
import { StatusKind, statusKind } from "../../../common/grpc-status.js";
import { ClientError } from "../../client/geospool-client.js";
import { serviceCodeOf } from "../../grpc/status.js";
import { CliError, toCliError } from "../cli-error.js";
import { formatDuration } from "../duration.js";
import { ExitCode } from "../exit-codes.js";

/** The one place where gRPC statuses become `geospool client` exit codes. */
export function exitCodeOfStatus(code: grpc.status): ExitCode {
  switch (statusKind(code)) {
    case StatusKind.Invalid:
      return ExitCode.Usage;
    case StatusKind.NotFound:
      return ExitCode.NotFound;
    case StatusKind.Precondition:
      return ExitCode.LeaseLost;
    case StatusKind.Denied:
      return ExitCode.AccessDenied;
    case StatusKind.Retry:
      return ExitCode.Unavailable;
    default:
      return ExitCode.Failure;
  }
}

export const CLIENT_EXIT_CODES_HELP = `Exit codes:
  0    ok
  2    usage error (bad flag, argument, duration, endpoint), or INVALID_ARGUMENT from the
       node (a malformed queue or entry name, ...)
  3    dequeue: nothing available (after --wait)
  4    NOT_FOUND: no such queue, entry or checkout (or this node lacks the data yet)
  5    FAILED_PRECONDITION: the lease is lost (expired, released, taken by another, or a
       wrong lease token); nothing was changed
  6    UNAUTHENTICATED or PERMISSION_DENIED: missing or unknown token, or the token may
       not do this on that queue
  7    unavailable: no endpoint answered (UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED on every try)
       before --retry-for ran out; trying again later may succeed
  10   any other failure (the gRPC status is in the message; --json prints its code)
  130  interrupted by SIGINT/SIGTERM (watch stopped by a signal exits 0)`;

/** A gRPC error as thrown by grpc-js: a numeric status and its details. */
function isGrpcError(err: unknown): err is grpc.ServiceError {
  return (
    err instanceof Error && typeof (err as { code?: unknown }).code === "number" && "details" in err
  );
}

/** Any failure of a client command as a CliError with the exit code its status means. */
export function toClientCliError(err: unknown, retryForMs: number | undefined): CliError {
  if (err instanceof CliError) return err;
  const failure =
    err instanceof ClientError
      ? err
      : isGrpcError(err)
        ? new ClientError(
            `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`,
            err.code,
            undefined,
            { cause: err },
          )
        : undefined;
  if (failure === undefined) return toCliError(err);
  const code =
    serviceCodeOf(failure.cause) ?? (grpc.status[failure.code] ?? "unknown").toLowerCase();
  const exitCode = exitCodeOfStatus(failure.code);
  let message = oneLine(failure.message);
  if (exitCode === ExitCode.Unavailable && retryForMs !== undefined) {
    message = `no endpoint answered within --retry-for ${formatDuration(retryForMs)}; last error: ${message}`;
  }
  return new CliError(code, message, exitCode, { cause: err });
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
