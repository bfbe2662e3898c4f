import { parseDuration as parseDurationText } from "../../common/units.js";
import { usageError } from "./cli-error.js";

export { formatDuration } from "../../common/units.js";

/** A year: longer than any lease, wait or interval that makes sense. */
const MAX_MS = 365 * 24 * 3_600_000;

/**
 * A duration flag, in the configuration's grammar (src/common/units.ts): `500ms`, `30s`,
 * `10m`, `1h`, `1d` or plain milliseconds. A bad value is a usage error naming `flag`. Zero
 * is accepted only with `allowZero`.
 */
export function parseDuration(
  flag: string,
  text: string,
  options: { allowZero?: boolean } = {},
): number {
  const ms = parseDurationText(text);
  if (ms === undefined) {
    throw usageError(
      `${flag}: invalid duration ${JSON.stringify(text)} (use e.g. 500ms, 30s, 10m, 1h, 1d or milliseconds)`,
    );
  }
  if (ms === 0 && !options.allowZero) throw usageError(`${flag}: duration must be more than 0`);
  if (ms > MAX_MS) throw usageError(`${flag}: duration ${JSON.stringify(text)} is over a year`);
  return ms;
}
