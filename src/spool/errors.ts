import { errnoOf } from "../common/errno.js";
/**
 * Failures of the spool. Expected outcomes (`not_found`, `nothing_available`, `stopped`,
 * `lease_lost`) are values, not errors; these are for everything that should not happen
 * in normal operation. Branch on `code`, never on the message.
 */
export const SpoolErrorCode = {
  /** An entry or queue name that could escape the spool or is otherwise unusable. */
  InvalidName: "invalid_name",
  /** The directory exists, is non-empty, and is not a spool. */
  NotASpool: "not_a_spool",
  /** The spool is missing a directory it needs (and creation was not asked for). */
  MissingDirectory: "missing_directory",
  /** A queue that the spool's description does not list. */
  UnknownQueue: "unknown_queue",
  /** A metadata file that could not be decoded. The entry is left where it is. */
  MetadataDecode: "metadata_decode",
  /** An entry that was expected to exist does not. */
  EntryNotFound: "entry_not_found",
  /** Name reservation failed after the allowed number of attempts. */
  NameExhausted: "name_exhausted",
  /**
   * An entry of `enqueueBatch` whose `visibleIf` said no (or failed): it never became
   * visible, and nothing of it is left.
   */
  Withdrawn: "withdrawn",
  /** An operation on a checked-out entry whose lease has ended. */
  LeaseLost: "lease_lost",
  /** A bad argument (lease duration, options). */
  InvalidArgument: "invalid_argument",
  /** An operating-system failure (errno in `errno`). */
  Io: "io",
} as const;

export type SpoolErrorCode = (typeof SpoolErrorCode)[keyof typeof SpoolErrorCode];

export class SpoolError extends Error {
  readonly code: SpoolErrorCode;
  /** The errno code (`ENOSPC`, `EACCES`, ...) for `io` errors. */
  readonly errno: string | undefined;

  constructor(code: SpoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SpoolError";
    this.code = code;
    this.errno = errnoOf(options?.cause);
  }
}

/**
 * Wrap an OS error so the caller sees which operation on which path failed.
 * @internal
 */
export function ioError(op: string, path: string, cause: unknown): SpoolError {
  if (cause instanceof SpoolError) return cause;
  const errno = errnoOf(cause) ?? "unknown";
  return new SpoolError(SpoolErrorCode.Io, `${op} ${path}: ${errno}`, { cause });
}
