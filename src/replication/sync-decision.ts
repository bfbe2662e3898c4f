import { createHash } from "node:crypto";
import type { ReplicaInspection, ReplicaPlacement } from "../spool/index.js";
import { compareRows, foldEntry } from "./fold.js";
import { rowKey, validateRow } from "./journal-row.js";
import type { NewJournalRow, RejectedJournalRow, StoredJournalRow } from "./journal-store.js";
import {
  type LocalState,
  payloadDigest,
  sameState,
  satisfies,
  type Target,
  targetOf,
} from "./replica-state.js";

/**
 * The replicator's decisions about one entry, as pure functions of what it found: the
 * entry's files (`disk`), its record (`rec`), and the journal's fold (`target`). Tested in
 * sync-decision.test.ts; entry-sync.ts does the I/O they ask for.
 */

/** An entry's journal rows as read (and as the apply stream added to them). */
export interface JournalView {
  rows: StoredJournalRow[];
  rejected: RejectedJournalRow[];
}

/** A row this node cannot apply, and why (the entry is known from context). */
export interface Rejection {
  origin: string;
  seq: bigint;
  problem: string;
}

/** The files as a replica state (null: not in the spool). */
export function toLocal(seen: ReplicaInspection<string>): LocalState {
  if (seen.kind !== "present") return null;
  return {
    queue: seen.queue,
    checkedOut: seen.checkedOut,
    leaseUntil: seen.checkedOut ? (seen.leaseUntil ?? 0) : null,
    attempts: seen.attempts,
    payloadSha256: payloadDigest(seen.payload),
  };
}

/**
 * Whether a sync must read the entry's fold: a peer row may have changed it, the files and
 * the record disagree for a reason other than this node's service (an unrecorded placement
 * of the applier's, or a foreign process), or an entry in flux may be a dead placement.
 */
export function needsFold(
  seen: ReplicaInspection<string>,
  why: { peer: boolean; service: boolean },
  rec: LocalState,
  stalledPlacement: boolean,
): boolean {
  if (seen.kind === "in_flux") return stalledPlacement;
  if (why.peer) return true;
  return !why.service && !sameState(toLocal(seen), rec);
}

/**
 * An entry in flux (a registry file, no metadata file): wait for it (`retry`), unless it is
 * a peer's entry whose fold was read (so a stalled one: see `needsFold`) and not this
 * node's own enqueue, which is a placement that died half-way: placing it again (as if
 * absent) resumes it.
 */
export function inFluxAction(journal: JournalView | undefined, nodeId: string): "retry" | "resume" {
  if (journal === undefined) return "retry";
  const mine = journal.rows.find((r) => r.op === "enqueue")?.origin === nodeId;
  return mine ? "retry" : "resume";
}

/**
 * What to do with an entry:
 * - `nothing`: files as recorded, and as the fold asks (or no fold was read);
 * - `record`: the files changed and already are what the fold asks for (a peer change
 *   placed just before a crash): record them, journal nothing;
 * - `journal`: the files changed: a local transition, journaled and recorded;
 * - `apply`: the files are as recorded but the fold asks for something else: a peer's change.
 */
export type Decision = "nothing" | "record" | "journal" | "apply";

export function decide(disk: LocalState, rec: LocalState, target: Target | undefined): Decision {
  if (target === undefined) return sameState(disk, rec) ? "nothing" : "journal";
  if (!sameState(disk, rec)) return satisfies(disk, target, false) ? "record" : "journal";
  return satisfies(disk, target) ? "nothing" : "apply";
}

/** A peer's enqueue of an entry this node has not recorded yet (for its idempotency key). */
export function peerEnqueueOf(
  rows: readonly StoredJournalRow[],
  rec: LocalState,
  nodeId: string,
): { queue: string; payload: Buffer } | undefined {
  if (rec !== null) return undefined;
  const created = rows.find((r) => r.op === "enqueue");
  if (created === undefined || created.origin === nodeId || created.metadata === null) {
    return undefined;
  }
  return { queue: created.queue, payload: created.metadata };
}

/**
 * Whether rows of peers (a remove, which is a tombstone, or a later row) still override
 * the local transition `stamped` just journaled: then the entry is synced again at once.
 */
export function stillOverridden(
  rows: readonly StoredJournalRow[],
  stamped: readonly NewJournalRow[],
  nodeId: string,
  disk: LocalState,
  now: number,
): boolean {
  const mine = stamped.map((r, k) => ({ ...r, origin: nodeId, seq: BigInt(k) }));
  const after = targetOf(foldEntry([...rows, ...mine] as StoredJournalRow[], now));
  return !satisfies(disk, after, false);
}

/** How to bring an entry's files (as recorded) to the fold's target. */
export type ApplyPlan =
  | { kind: "drop" }
  | { kind: "unknown_queue"; problem: string }
  | {
      kind: "place";
      placement: ReplicaPlacement<string>;
      /** Where a new entry's data comes from; `none` when the entry is here already. */
      data:
        | { kind: "none" }
        | { kind: "inline"; bytes: Buffer }
        | { kind: "fetch"; origin: string };
    };

export function applyPlan(
  disk: LocalState,
  target: Target,
  rows: readonly StoredJournalRow[],
  hasQueue: (queue: string) => boolean,
): ApplyPlan {
  if (target.kind === "absent") return { kind: "drop" };
  const p = target.placed;
  if (!hasQueue(p.queue)) {
    return {
      kind: "unknown_queue",
      problem: `queue ${JSON.stringify(p.queue)} is not a queue of this node`,
    };
  }
  const placement: ReplicaPlacement<string> = p.checkedOut
    ? { queue: p.queue, checkedOut: true, leaseUntil: p.leaseUntil ?? 0 }
    : { queue: p.queue, checkedOut: false };
  if (disk !== null) return { kind: "place", placement, data: { kind: "none" } };
  const inline = target.inlineData;
  if (
    inline !== undefined &&
    inline.length === target.dataSize &&
    createHash("sha256").update(inline).digest("hex") === target.dataSha256
  ) {
    return { kind: "place", placement, data: { kind: "inline", bytes: inline } };
  }
  const creator = rows.find((r) => r.op === "enqueue");
  return { kind: "place", placement, data: { kind: "fetch", origin: creator?.origin ?? "" } };
}

/** Every row of an entry quarantined with `problem`, and the rejected ones with theirs. */
export function quarantineAll(
  rows: readonly StoredJournalRow[],
  rejected: readonly RejectedJournalRow[] | undefined,
  problem: string,
  more: readonly Rejection[] = [],
): Rejection[] {
  return [
    ...more,
    ...rows.map((r) => ({ origin: r.origin, seq: r.seq, problem })),
    ...(rejected ?? []).map((r) => ({ origin: r.origin, seq: r.seq, problem: r.problem })),
  ];
}

/**
 * Add decoded stream rows the query did not return yet (by origin and seq). Returns the
 * stream rows that need not be kept: those the query returned (visible to queries now), and
 * rows that do not validate (quarantined as they are).
 */
export function mergeStreamed(
  journal: JournalView,
  raws: readonly Record<string, unknown>[],
): Set<Record<string, unknown>> {
  const queried = new Set([...journal.rows, ...journal.rejected].map((r) => rowKey(r)));
  const have = new Set(queried);
  const visible = new Set<Record<string, unknown>>();
  for (const raw of raws) {
    // Returned by the query already (validated as it was parsed): not validated again.
    if (typeof raw.origin === "string" && typeof raw.seq === "string") {
      if (queried.has(`${raw.origin}/${raw.seq}`)) {
        visible.add(raw);
        continue;
      }
    }
    const result = validateRow(raw);
    if (!result.ok) {
      const origin = typeof raw.origin === "string" ? raw.origin : "?";
      const seq = typeof raw.seq === "string" && /^[0-9]+$/.test(raw.seq) ? BigInt(raw.seq) : 0n;
      const key = `${origin}/${seq}`;
      if (!have.has(key)) {
        have.add(key);
        journal.rejected.push({ origin, seq, problem: result.problem });
      }
      // Quarantined now; its key may not even match the stored row's: not waited for.
      visible.add(raw);
      continue;
    }
    const key = rowKey(result.row);
    if (queried.has(key)) visible.add(raw);
    if (have.has(key)) continue;
    have.add(key);
    const recordedAt = raw.recorded_at instanceof Date ? raw.recorded_at : new Date();
    journal.rows.push({ ...result.row, recordedAt });
  }
  journal.rows.sort(compareRows);
  return visible;
}
