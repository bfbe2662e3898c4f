/**
 * Hybrid logical clock (Kulkarni et al.): a bigint `physical_ms * 65536 + logical`, logical in
 * 0..65535. Every journal row carries one; rows are totally ordered by (hlc, origin, seq).
 *
 * - A local write takes `max(physical_now_ms * 65536, last + 1)`: strictly greater than every
 *   value this clock has issued or observed, even when the wall clock steps back.
 * - A logical part that would pass 65535 carries into the physical part (`last + 1` is plain
 *   integer addition), so the clock runs at most a little ahead of the wall clock under a burst
 *   of more than 65536 writes in one millisecond, and catches up when the burst ends.
 * - Every row applied from a peer is `observe`d: `last = max(last, remote)`. So a row written
 *   after observing another row has a greater hlc; the order is consistent with causality.
 *
 * A far-future remote value (a peer whose wall clock is wrong) is accepted all the same:
 * refusing to advance past an applied row would let a later local write order before it, and
 * last-writer-wins would then undo a causally later change. Instead `observe` returns how far
 * the remote value's physical part is ahead of the local wall clock, so the caller can log or
 * count skew beyond its tolerance. The cost of a far-future value is bounded: hlc values stop
 * tracking real time until the wall clock catches up, but their order stays correct, and leases
 * are wall-clock timestamps (`lease_until`), not hlc values, so lease expiry is unaffected.
 */

export const HLC_LOGICAL_BITS = 16n;
/** Logical values per millisecond (65536). */
export const HLC_LOGICAL_SPAN = 1n << HLC_LOGICAL_BITS;
/** The largest hlc a PostgreSQL bigint can hold (2^63 - 1; physical part ≈ year 6429). */
export const MAX_HLC = (1n << 63n) - 1n;

export const HlcErrorCode = {
  /** A value outside 0..MAX_HLC was given to the clock. */
  InvalidValue: "invalid_hlc",
  /** The next value would exceed MAX_HLC (only after observing a value at the very top). */
  Exhausted: "hlc_exhausted",
} as const;

export type HlcErrorCode = (typeof HlcErrorCode)[keyof typeof HlcErrorCode];

export class HlcError extends Error {
  readonly code: HlcErrorCode;

  constructor(code: HlcErrorCode, message: string) {
    super(message);
    this.name = "HlcError";
    this.code = code;
  }
}

/** The hlc of physical time `ms` with logical part `logical` (default 0). */
export function makeHlc(ms: number, logical = 0): bigint {
  return (BigInt(Math.floor(ms)) << HLC_LOGICAL_BITS) + BigInt(logical);
}

/** The physical part of an hlc, in milliseconds since the epoch. */
export function hlcPhysicalMs(h: bigint): number {
  return Number(h >> HLC_LOGICAL_BITS);
}

/** The logical part of an hlc (0..65535). */
export function hlcLogical(h: bigint): number {
  return Number(h & (HLC_LOGICAL_SPAN - 1n));
}

/** For logs: `2024-05-01T12:00:00.123Z+7` (physical time as ISO 8601, then the logical part). */
export function formatHlc(h: bigint): string {
  if (h < 0n || h > MAX_HLC) return `invalid-hlc(${h})`;
  return `${new Date(hlcPhysicalMs(h)).toISOString()}+${hlcLogical(h)}`;
}

function checkValue(h: bigint, what: string): void {
  if (typeof h !== "bigint" || h < 0n || h > MAX_HLC) {
    throw new HlcError(HlcErrorCode.InvalidValue, `${what} ${String(h)} is not in 0..2^63-1`);
  }
}

export class HybridLogicalClock {
  readonly #physicalNowMs: () => number;
  #last: bigint;

  /**
   * `physicalNowMs` is the wall clock (inject `Date.now`); a reading that is not a finite
   * non-negative number is ignored (the clock then advances by one logical tick). `initial`
   * is the largest hlc known from before (the node's journal), default 0.
   */
  constructor(physicalNowMs: () => number, initial = 0n) {
    checkValue(initial, "initial hlc");
    this.#physicalNowMs = physicalNowMs;
    this.#last = initial;
  }

  /** The hlc for a local write: greater than every value issued or observed so far. */
  now(): bigint {
    const physical = this.#physicalHlc();
    const next = physical > this.#last ? physical : this.#last + 1n;
    if (next > MAX_HLC) {
      throw new HlcError(HlcErrorCode.Exhausted, `hlc would exceed 2^63-1 after ${this.#last}`);
    }
    this.#last = next;
    return next;
  }

  /**
   * Advance past a value seen from a peer. Returns how many milliseconds the remote value's
   * physical part is ahead of the local wall clock (0 when it is not ahead): the caller
   * decides what skew is worth a warning. The value is accepted whatever the skew.
   */
  observe(remote: bigint): number {
    checkValue(remote, "observed hlc");
    if (remote > this.#last) this.#last = remote;
    const ahead = hlcPhysicalMs(remote) - hlcPhysicalMs(this.#physicalHlc());
    return ahead > 0 ? ahead : 0;
  }

  /** The largest value issued or observed. */
  get last(): bigint {
    return this.#last;
  }

  #physicalHlc(): bigint {
    const ms = this.#physicalNowMs();
    if (!Number.isFinite(ms) || ms < 0) return 0n;
    const h = makeHlc(ms);
    return h > MAX_HLC ? MAX_HLC : h;
  }
}
