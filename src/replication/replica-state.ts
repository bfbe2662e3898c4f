import { createHash } from "node:crypto";
import type { EntryState } from "./fold.js";
import type { DistributiveOmit, NewJournalRow } from "./journal-store.js";

/**
 * An entry's place in the local spool, as the replicator compares it: which queue, checked
 * out or waiting (with the lease deadline), the failed-delivery count and a digest of the
 * metadata payload. `null` is "not in the spool".
 */
export interface Placed {
  readonly queue: string;
  readonly checkedOut: boolean;
  /** The lease deadline (ms) when checked out, else null. */
  readonly leaseUntil: number | null;
  readonly attempts: number;
  readonly payloadSha256: string;
}

export type LocalState = Placed | null;

/** Lease deadlines live in file mtimes: equal when within this much of each other. */
const LEASE_SLACK_MS = 1_000;

export function payloadDigest(payload: Buffer): string {
  return createHash("sha256").update(payload).digest("hex");
}

export function sameState(a: LocalState, b: LocalState): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.queue === b.queue &&
    a.checkedOut === b.checkedOut &&
    a.attempts === b.attempts &&
    a.payloadSha256 === b.payloadSha256 &&
    (!a.checkedOut || Math.abs((a.leaseUntil ?? 0) - (b.leaseUntil ?? 0)) <= LEASE_SLACK_MS)
  );
}

/**
 * What the fold asks the local spool to hold: nothing (removed; or pending, which has no
 * enqueue yet and so nothing to show), or the entry placed as `placed` with `payload`.
 */
export type Target =
  | { readonly kind: "absent"; readonly pending: boolean }
  | {
      readonly kind: "placed";
      readonly placed: Placed;
      readonly payload: Buffer;
      readonly dataSha256: string;
      readonly dataSize: number;
      /** The data itself when the enqueue row carried it (unverified). */
      readonly inlineData?: Buffer;
    };

export function targetOf(state: EntryState): Target {
  switch (state.kind) {
    case "removed":
      return { kind: "absent", pending: false };
    case "pending":
      return { kind: "absent", pending: true };
    case "queued":
    case "checked_out": {
      const checkedOut = state.kind === "checked_out";
      return {
        kind: "placed",
        placed: {
          queue: state.queue,
          checkedOut,
          leaseUntil: state.kind === "checked_out" ? state.leaseUntil : null,
          attempts: state.attempts,
          payloadSha256: payloadDigest(state.metadata),
        },
        payload: state.metadata,
        dataSha256: state.dataSha256,
        dataSize: state.dataSize,
        ...(state.inlineData === undefined ? {} : { inlineData: state.inlineData }),
      };
    }
  }
}

/**
 * Whether the local state is what the target asks for. With `lenient`, a pending entry
 * (rows but no enqueue yet) asks for nothing, so any local state will do (the applier leaves
 * it alone); without, only absence matches it (a local entry with no enqueue row in the
 * journal is a transition still to record).
 */
export function satisfies(local: LocalState, target: Target, lenient = true): boolean {
  if (target.kind === "absent") return (lenient && target.pending) || local === null;
  return sameState(local, target.placed);
}

/**
 * The journal rows (without origin, seq and hlc) that record a local transition from
 * `from` (as last recorded) to `to` (as found on disk, with its payload). `dataOf` reads the
 * data digest and size out of a payload (for an enqueue); undefined when it cannot.
 */
export function transitionRows(
  entry: string,
  from: LocalState,
  to: LocalState,
  payload: Buffer | null,
  dataOf: (payload: Buffer) => { sha256: string; size: number } | undefined,
): UnstampedRow[] | { problem: string } {
  if (to === null) {
    if (from === null) return [];
    return [
      {
        op: "remove",
        entry,
        queue: from.queue,
        attempts: from.attempts,
        metadata: null,
        dataSha256: null,
        dataSize: null,
        leaseUntil: null,
      },
    ];
  }
  if (payload === null) return { problem: "no payload for a present entry" };
  const changed = from === null || from.payloadSha256 !== to.payloadSha256;
  const rows: UnstampedRow[] = [];
  if (from === null) {
    const data = dataOf(payload);
    if (data === undefined) return { problem: "its metadata does not name its data's digest" };
    rows.push({
      op: "enqueue",
      entry,
      queue: to.queue,
      attempts: to.attempts,
      metadata: payload,
      dataSha256: data.sha256,
      dataSize: data.size,
      leaseUntil: null,
    });
    if (!to.checkedOut) return rows;
  }
  if (to.checkedOut) {
    rows.push({
      op: "checkout",
      entry,
      queue: to.queue,
      attempts: to.attempts,
      metadata: changed && from !== null ? payload : null,
      dataSha256: null,
      dataSize: null,
      leaseUntil: to.leaseUntil ?? 0,
    });
    return rows;
  }
  const released = from?.checkedOut === true && to.attempts !== from.attempts;
  if (released) {
    rows.push({
      op: "release",
      entry,
      queue: to.queue,
      attempts: to.attempts,
      metadata: changed ? payload : null,
      dataSha256: null,
      dataSize: null,
      leaseUntil: null,
    });
  } else {
    rows.push({
      op: "move",
      entry,
      queue: to.queue,
      attempts: to.attempts,
      metadata: payload,
      dataSha256: null,
      dataSize: null,
      leaseUntil: null,
    });
  }
  return rows;
}

/** A journal row to append, before its hlc is stamped. */
export type UnstampedRow = DistributiveOmit<NewJournalRow, "hlc">;
