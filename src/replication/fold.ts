import { hlcPhysicalMs } from "./hlc.js";
import type { CheckoutRow, EnqueueRow, JournalRow } from "./journal-row.js";

/**
 * The deterministic state fold: every node derives each entry's state from the set of journal
 * rows naming it, whatever order they arrived in.
 *
 * - Rows are totally ordered by (hlc, origin, seq) (`compareRows`).
 * - Any `remove` row makes the entry REMOVED, whatever its hlc: a tombstone nothing resurrects.
 * - Otherwise, with no `enqueue` row yet, the entry is PENDING (not visible; e.g. a move that
 *   arrived before its enqueue).
 * - Otherwise the last row decides: enqueue/move/release → QUEUED in its `queue`; checkout →
 *   CHECKED_OUT of its `queue`, held by the row's origin, until `leaseUntil`; but a checkout
 *   whose lease has ended at fold time (`leaseUntil <= nowMs`) is QUEUED again in the same
 *   queue, so an expired remote lease makes the entry available on every node alike.
 * - `attempts` comes from the last row; `metadata` is that of the last row (in order) that
 *   carries metadata; `dataSha256`, `dataSize` and `enqueuedAt` (physical ms of its hlc) come
 *   from the enqueue row. Should an entry have several enqueue rows (a re-recorded enqueue),
 *   the first in order counts: it is the creation.
 *
 * Precondition: rows with the same (origin, seq) are the same row (the journal's primary key),
 * so a row seen twice changes nothing.
 */
export type EntryState =
  | { readonly kind: "pending" }
  | { readonly kind: "removed" }
  | QueuedState
  | CheckedOutState;

export interface EntryFields {
  readonly queue: string;
  readonly metadata: Buffer;
  readonly dataSha256: string;
  readonly dataSize: number;
  readonly attempts: number;
  /** Physical ms of the enqueue row's hlc. */
  readonly enqueuedAt: number;
  /** The data, when the enqueue row carries it (small entries); else it must be fetched. */
  readonly inlineData?: Buffer;
}

export interface QueuedState extends EntryFields {
  readonly kind: "queued";
}

export interface CheckedOutState extends EntryFields {
  readonly kind: "checked_out";
  /** The node that holds the lease (the checkout row's origin). */
  readonly holder: string;
  /** Lease deadline, ms since the epoch; always after the fold's `nowMs`. */
  readonly leaseUntil: number;
}

const PENDING: EntryState = Object.freeze({ kind: "pending" });
const REMOVED: EntryState = Object.freeze({ kind: "removed" });

/**
 * The total order of journal rows: by hlc, then origin, then seq. Origins compare by UTF-16
 * code units, which for valid names (ASCII) is byte order: SQL that orders rows must say
 * `collate "C"` to agree.
 */
export function compareRows(a: JournalRow, b: JournalRow): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/** The state of one entry from all its rows (in any order, duplicates allowed). */
export function foldEntry(rows: readonly JournalRow[], nowMs: number): EntryState {
  const first = rows[0];
  if (first === undefined) return PENDING;
  for (const row of rows) {
    if (row.entry !== first.entry) {
      throw new RangeError(`foldEntry: rows of ${first.entry} and ${row.entry} mixed`);
    }
  }
  if (rows.some((r) => r.op === "remove")) return REMOVED;
  const sorted = [...rows].sort(compareRows);
  const enqueue = sorted.find((r): r is EnqueueRow => r.op === "enqueue");
  if (enqueue === undefined) return PENDING;
  const last = sorted[sorted.length - 1]!;
  let metadata = enqueue.metadata;
  for (const row of sorted) if (row.metadata !== null) metadata = row.metadata;
  return decide(enqueue, last, metadata, nowMs);
}

/**
 * Per-entry fold state, maintained incrementally as rows arrive in any order.
 *
 * For each entry it keeps only: whether a remove was seen, the greatest row in order, the
 * least enqueue row in order, and the greatest row in order that carries metadata; once a
 * remove is seen, only that fact. This equals folding all rows because each of the fold's
 * inputs is one of these summaries: REMOVED depends only on "some row is a remove"; PENDING
 * only on "some row is an enqueue"; the state's kind, queue, attempts, holder and lease only on
 * the last row; metadata only on the last row carrying metadata; digest, size and enqueuedAt
 * only on the first enqueue row. Each summary is a join (logical or, max or min under a total
 * order), so it is commutative (arrival order does not matter), associative (incremental equals
 * all at once) and idempotent (a duplicate row changes nothing), and none needs the rows it
 * has passed over. Memory per entry is bounded by three rows.
 */
export class FoldState {
  readonly #entries = new Map<string, Summary>();

  /**
   * Folds in one row. Returns true when the entry's state may have changed (its summary
   * changed), false for a row that changes nothing (a duplicate, a row superseded in order, or
   * anything after a remove).
   */
  add(row: JournalRow): boolean {
    const current = this.#entries.get(row.entry);
    if (current === undefined) {
      this.#entries.set(row.entry, summarize(row));
      return true;
    }
    if (current.removed) return false;
    if (row.op === "remove") {
      this.#entries.set(row.entry, TOMBSTONE);
      return true;
    }
    let changed = false;
    if (compareRows(row, current.last) > 0) {
      current.last = row;
      changed = true;
    }
    if (
      row.op === "enqueue" &&
      (current.enqueue === null || compareRows(row, current.enqueue) < 0)
    ) {
      current.enqueue = row;
      changed = true;
    }
    if (
      row.metadata !== null &&
      (current.withMetadata === null || compareRows(row, current.withMetadata) > 0)
    ) {
      current.withMetadata = row;
      changed = true;
    }
    return changed;
  }

  /** The entry's state at time `nowMs`; PENDING for an entry with no rows. */
  state(entry: string, nowMs: number): EntryState {
    const s = this.#entries.get(entry);
    if (s === undefined) return PENDING;
    if (s.removed) return REMOVED;
    if (s.enqueue === null) return PENDING;
    return decide(s.enqueue, s.last, s.withMetadata?.metadata ?? s.enqueue.metadata, nowMs);
  }

  /** Whether any row naming `entry` has been added. */
  has(entry: string): boolean {
    return this.#entries.has(entry);
  }

  /** Every entry with at least one row, in insertion order of their first row. */
  entries(): IterableIterator<string> {
    return this.#entries.keys();
  }

  get size(): number {
    return this.#entries.size;
  }
}

type Summary =
  | { readonly removed: true }
  | {
      readonly removed: false;
      last: JournalRow;
      enqueue: EnqueueRow | null;
      withMetadata: JournalRow | null;
    };

const TOMBSTONE: Summary = Object.freeze({ removed: true });

function summarize(row: JournalRow): Summary {
  if (row.op === "remove") return TOMBSTONE;
  return {
    removed: false,
    last: row,
    enqueue: row.op === "enqueue" ? row : null,
    withMetadata: row.metadata !== null ? row : null,
  };
}

function decide(
  enqueue: EnqueueRow,
  last: JournalRow,
  metadata: Buffer,
  nowMs: number,
): EntryState {
  const fields: EntryFields = {
    queue: last.queue,
    metadata,
    dataSha256: enqueue.dataSha256,
    dataSize: enqueue.dataSize,
    attempts: last.attempts,
    enqueuedAt: hlcPhysicalMs(enqueue.hlc),
    ...(enqueue.inlineData === undefined ? {} : { inlineData: enqueue.inlineData }),
  };
  if (last.op === "checkout" && leaseHeld(last, nowMs)) {
    return { kind: "checked_out", ...fields, holder: last.origin, leaseUntil: last.leaseUntil };
  }
  return { kind: "queued", ...fields };
}

/** A lease is held strictly before its deadline, as in the spool. */
function leaseHeld(row: CheckoutRow, nowMs: number): boolean {
  return row.leaseUntil > nowMs;
}
