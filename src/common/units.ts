/**
 * Durations and sizes as operators write them. A duration is a non-negative number of
 * milliseconds, or a number with a unit: `500ms`, `30s`, `10m`, `1h`, `1d` (decimals allowed:
 * `1.5s`). A size is a non-negative number of bytes, or a number with a unit: `B`, `KB`, `MB`,
 * `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024), case-insensitive, optional
 * space: `4MiB`, `512 KiB`. Both parse to integers (rounded).
 */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const NUMBER_WITH_UNIT = /^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$/;

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(value: string | number): number | undefined {
  return parseWithUnits(value, DURATION_UNITS, "ms");
}

/** Bytes, or undefined when the text is not a size. */
export function parseSize(value: string | number): number | undefined {
  return parseWithUnits(value, SIZE_UNITS, "b");
}

function parseWithUnits(
  value: string | number,
  units: Record<string, number>,
  bare: string,
): number | undefined {
  if (typeof value === "number") {
    return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  }
  const match = NUMBER_WITH_UNIT.exec(value.trim());
  if (match === null) return undefined;
  const unit = (match[2] ?? "").toLowerCase() || bare;
  const factor = units[unit];
  if (factor === undefined) return undefined;
  const result = Math.round(Number(match[1]) * factor);
  return Number.isSafeInteger(result) ? result : undefined;
}

/** The shortest exact rendering of a duration: 600000 → "10m", 1500 → "1500ms". */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}

/** The shortest exact rendering of a size: 4194304 → "4MiB". */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
