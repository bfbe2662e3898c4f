import { usageError } from "./cli-error.js";

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
/** A year: longer than any lease, wait or interval that makes sense. */
const MAX_MS = 365 * 24 * 3_600_000;

/**
 * `500ms`, `30s`, `10m`, `1h` or plain milliseconds. A bad value is a usage error naming
 * `flag`. Zero is accepted only with `allowZero`.
 */
export function parseDuration(
  flag: string,
  text: string,
  options: { allowZero?: boolean } = {},
): number {
  const m = PATTERN.exec(text.trim());
  if (!m) {
    throw usageError(
      `${flag}: invalid duration ${JSON.stringify(text)} (use e.g. 500ms, 30s, 10m, 1h or milliseconds)`,
    );
  }
  const unit = (m[2] ?? "ms") as keyof typeof UNIT_MS;
  const ms = Math.round(Number(m[1]) * UNIT_MS[unit]);
  if (ms === 0 && !options.allowZero) throw usageError(`${flag}: duration must be more than 0`);
  if (ms > MAX_MS) throw usageError(`${flag}: duration ${JSON.stringify(text)} is over a year`);
  return ms;
}

/** The shortest exact rendering: 90000 → `90s`, 600000 → `10m`. */
export function formatDuration(ms: number): string {
  for (const unit of ["h", "m", "s"] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
