/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

export interface Distribution {
  count: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

export function distribution(samples: readonly number[]): Distribution {
  const s = Float64Array.from(samples).sort();
  const arr = Array.from(s);
  const sum = arr.reduce((a, b) => a + b, 0);
  return {
    count: arr.length,
    p50: percentile(arr, 50),
    p99: percentile(arr, 99),
    mean: arr.length === 0 ? Number.NaN : sum / arr.length,
    max: arr.length === 0 ? Number.NaN : (arr[arr.length - 1] as number),
  };
}

/** Rounded for the JSON and the table: 3 significant digits below 100, integers above. */
export function sig3(x: number): number {
  if (!Number.isFinite(x)) return x;
  if (Math.abs(x) >= 100) return Math.round(x);
  return Number(x.toPrecision(3));
}
