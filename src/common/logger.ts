import { type Logger, pino } from "pino";

/** A logger that writes nothing, for library defaults and tests. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/**
 * The convention in one place: `logger.child({ component, ...bindings })`. Libraries take a
 * `Logger` as an option and call this; without one they log nothing.
 */
export function componentLogger(
  logger: Logger | undefined,
  component: string,
  bindings: Record<string, unknown> = {},
): Logger {
  return (logger ?? silentLogger()).child({ component, ...bindings });
}
