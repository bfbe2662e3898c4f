import { type SpoolErrorCode as Code, SpoolErrorCode } from "../../spool/index.js";

/** The process exit codes of `geospool`. Scripts branch on these; keep them stable. */
export const ExitCode = {
  Ok: 0,
  /** fsck: problems remain; cache verify: a corrupt nar. */
  ProblemsRemain: 1,
  /** A bad flag, argument, name or value; the message names it. */
  Usage: 2,
  /** dequeue found nothing (or its --wait ran out). */
  NothingAvailable: 3,
  /** The entry or checkout named does not exist. */
  NotFound: 4,
  /** The checkout's lease ended before it was finished; nothing was changed. */
  LeaseLost: 5,
  /** client: the node refused the credentials (UNAUTHENTICATED or PERMISSION_DENIED). */
  AccessDenied: 6,
  /** client: no endpoint answered (UNAVAILABLE, DEADLINE_EXCEEDED) before retries ran out. */
  Unavailable: 7,
  /** Anything else; the error code is printed. */
  Failure: 10,
  /** Stopped by SIGINT/SIGTERM before it could finish (a daemon stopping exits 0). */
  Interrupted: 130,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** For `--help`. */
export const EXIT_CODES_HELP = `Exit codes:
  0    ok
  1    fsck: problems remain; cache verify: a corrupt nar
  2    usage error: bad flag, argument, duration, name or queue (the message names it)
  3    nothing available: dequeue found no entry, or --wait ran out
  4    not found: the entry or checkout does not exist
  5    lease lost: the checkout's lease ended before it was finished (nothing changed)
  10   any other error (its code is printed)
  130  interrupted by SIGINT/SIGTERM (a daemon stopped by a signal exits 0)`;

/** The one place where spool failures become exit codes. */
export function exitCodeOfSpoolError(code: Code): ExitCode {
  switch (code) {
    case SpoolErrorCode.InvalidName:
    case SpoolErrorCode.UnknownQueue:
    case SpoolErrorCode.InvalidArgument:
      return ExitCode.Usage;
    case SpoolErrorCode.EntryNotFound:
      return ExitCode.NotFound;
    case SpoolErrorCode.LeaseLost:
      return ExitCode.LeaseLost;
    default:
      return ExitCode.Failure;
  }
}
