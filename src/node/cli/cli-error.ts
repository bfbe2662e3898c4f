import { CacheError } from "../../cache/errors.js";
import { SpoolError } from "../../spool/index.js";
import { ExitCode, exitCodeOfSpoolError } from "./exit-codes.js";

/**
 * A command's failure as the user sees it: a stable `code` (printed with --json), a
 * one-line message and the exit code. Commands throw these; only `runCli` prints them.
 */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "CliError";
  }
}

export function usageError(message: string): CliError {
  return new CliError("usage", message, ExitCode.Usage);
}

/** Any thrown value as a CliError: spool and cache errors keep their code, the rest are failures. */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof CacheError) {
    return new CliError(err.code, oneLine(err.message), ExitCode.Failure, { cause: err });
  }
  if (err instanceof SpoolError) {
    return new CliError(err.code, oneLine(err.message), exitCodeOfSpoolError(err.code), {
      cause: err,
    });
  }
  const errno =
    typeof err === "object" && err !== null && "code" in err && typeof err.code === "string"
      ? err.code
      : "error";
  const message = err instanceof Error ? err.message : String(err);
  return new CliError(errno, oneLine(message), ExitCode.Failure, { cause: err });
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
