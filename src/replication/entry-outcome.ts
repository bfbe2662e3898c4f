import type { NewReplica, ReplicaSpool } from "../spool/index.js";
import type { NewJournalRow } from "./journal-store.js";
import type { LocalState, Placed } from "./replica-state.js";
import type { Rejection } from "./sync-decision.js";

/**
 * What one sync of an entry comes to (entry-sync.ts), and the part of a batch done for
 * many entries at once: the placement of the new entries that came with their data.
 */

/** What one sync of an entry came to. */
export interface Outcome {
  entry: string;
  /** New record (undefined: unchanged). */
  record?: LocalState;
  rows?: NewJournalRow[];
  /** Retry later (persisted when `persist`). */
  retry?: { reason: string; persist: boolean };
  /** Sync again right away (local rows that a peer's row overrides). */
  again?: boolean;
  /** Waiting for its data (with `retry`): synced again when the fetch ends, not on a timer. */
  waitData?: boolean;
  quarantine?: Rejection[];
  applied?: "placed" | "dropped";
  /**
   * A new entry with its data in memory, to be placed with the others of the batch
   * (`placeNew`, one durability round); the outcome is completed by `placeDeferred`.
   */
  deferred?: { item: NewReplica<string>; record: Placed };
}

/**
 * Place the batch's new entries whose data came inline, together (`placeNew`: one
 * durability round for all; none visible before `beforeVisible` settles), and complete
 * their outcomes: placed (recorded as the fold asks), raced, or failed (`failed` is told;
 * retried later, persisted).
 */
export async function placeDeferred(
  spool: ReplicaSpool,
  outcomes: Outcome[],
  failed: (entry: string, err: Error) => void,
  beforeVisible: Promise<unknown>,
): Promise<Outcome[]> {
  const deferred = outcomes.filter((o) => o.deferred !== undefined);
  if (deferred.length === 0) return outcomes;
  const results = await spool.placeNew(
    deferred.map((o) => (o.deferred as { item: NewReplica<string> }).item),
    { beforeVisible },
  );
  const done = new Map<Outcome, Outcome>();
  deferred.forEach((o, k) => {
    const r = results[k];
    const { entry, quarantine } = o;
    const record = (o.deferred as { record: Placed }).record;
    if (r === undefined || r.kind === "failed") {
      const err = r?.error ?? new Error("no result from the batch placement");
      failed(entry, err);
      done.set(o, { entry, retry: { reason: errorText(err), persist: true }, quarantine });
    } else if (r.kind === "raced") {
      done.set(o, { entry, retry: { reason: "raced", persist: true }, quarantine });
    } else {
      done.set(o, { entry, record, quarantine, applied: "placed" });
    }
  });
  return outcomes.map((o) => done.get(o) ?? o);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
