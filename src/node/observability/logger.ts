import { type DestinationStream, type LevelWithSilentOrString, type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  /** pino level: fatal, error, warn, info, debug, trace or silent. */
  level: LevelWithSilentOrString;
  /** Logged as `name` on every line (e.g. the node id). */
  name?: string;
  /**
   * Where lines go: a stream (tests collect lines this way), a file path (appended,
   * directories created), or a file descriptor. Default: standard output.
   */
  destination?: DestinationStream | string | number;
}

/** Keys whose values are never written to the log, wherever they appear. */
export const REDACTED_LOG_PATHS = [
  "token",
  "*.token",
  "password",
  "*.password",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "metadata.authorization",
];

/**
 * The process's root logger: JSON lines with a level label, an ISO time and, on every
 * line, `name` if given. Components get child loggers, never a logger of their own:
 *
 *     const log = logger.child({ component: "grpc" });
 *     const peerLog = logger.child({ component: "applier", peer: "eu-1" });
 *
 * Libraries take a `Logger` as an option (see `componentLogger` in src/common/logger.ts) and never create one.
 * Secrets under the keys in REDACTED_LOG_PATHS print as "[redacted]".
 */
export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    level: options.level,
    ...(options.name === undefined ? {} : { name: options.name }),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: REDACTED_LOG_PATHS, censor: "[redacted]" },
  };
  const destination = options.destination;
  if (destination === undefined) return pino(settings);
  if (typeof destination === "string") {
    return pino(settings, pino.destination({ dest: destination, mkdir: true, sync: false }));
  }
  if (typeof destination === "number") {
    return pino(settings, pino.destination({ dest: destination, sync: false }));
  }
  return pino(settings, destination);
}

export { componentLogger, silentLogger } from "../../common/logger.js";

/** Flushes buffered lines (asynchronous destinations); call before the process exits. */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush((err) => {
        void err;
        resolve();
      });
    } catch {
      resolve();
    }
  });
}
