/**
 * The stamp of an accepted upload: when, in the cluster's causal order, a node accepted it.
 * It is the served rule's "first upload" (served-rule.ts) and the GC's age (gc-walk.ts).
 *
 * A stamp is a value of the cluster's hybrid logical clock (the one the replication journal
 * stamps its rows with: physical milliseconds × 65536 + a logical counter), taken from the
 * accepting node's clock, which has observed every journal row the node has applied. So an
 * upload accepted after the node held another upload of the same path is stamped later,
 * whatever the two nodes' wall clocks say, and a later upload never displaces a served one
 * by clock skew. Two uploads accepted concurrently in two regions are ordered by their
 * stamps, then by origin node and entry name (unique), the same way on every node.
 *
 * In a cache record the stamp is `stamp`, the clock value as a decimal string (it does not
 * fit a JSON number), beside `hlc`, its physical part in ms. Records written before stamps
 * were clock values have only `hlc` (the accepting node's wall clock, in ms): they read as
 * that millisecond with logical part 0, which is where the clock itself stood then, so old
 * and new records compare as the clock would have stamped them. Nodes that know only `hlc`
 * keep reading the new records (by their physical part).
 */

/** Bits of the logical part (the replication clock's encoding, src/replication/hlc.ts). */
const LOGICAL_BITS = 16n;
/** The largest stamp (a PostgreSQL bigint). */
export const MAX_STAMP = (1n << 63n) - 1n;

/** The stamp of physical time `ms` (logical part 0): the first stamp of that millisecond. */
export function stampOfMs(ms: number): bigint {
  return BigInt(Math.max(0, Math.floor(ms))) << LOGICAL_BITS;
}

/** A stamp's physical part, in ms since the epoch. */
export function stampMs(stamp: bigint): number {
  return Number(stamp >> LOGICAL_BITS);
}

/** A stamp as a record writes it (decimal). */
export function formatStamp(stamp: bigint): string {
  return stamp.toString(10);
}

/** A stamp a record wrote, or undefined when it is not one. */
export function parseStamp(text: unknown): bigint | undefined {
  if (typeof text !== "string" || !/^(0|[1-9][0-9]{0,18})$/.test(text)) return undefined;
  const v = BigInt(text);
  return v <= MAX_STAMP ? v : undefined;
}

/**
 * The stamp of a record: its `stamp`, else (a record from before stamps were clock values)
 * its `hlc` in ms. undefined when neither is usable.
 */
export function recordStamp(r: {
  readonly stamp?: unknown;
  readonly hlc?: unknown;
}): bigint | undefined {
  if (r.stamp !== undefined) return parseStamp(r.stamp);
  return Number.isSafeInteger(r.hlc) && (r.hlc as number) >= 0
    ? stampOfMs(r.hlc as number)
    : undefined;
}
