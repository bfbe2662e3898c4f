import type { Logger } from "pino";
import type { ReplicaInspection } from "../spool/index.js";
import type { LocalState, Placed } from "./replica-state.js";
import type { JournalView } from "./sync-decision.js";
import type { Dirty } from "./sync-schedule.js";

/** What a batch's trace shows of one entry's outcome (entry-sync.ts's Outcome). */
interface TracedOutcome {
  record?: LocalState;
  rows?: ReadonlyArray<{ op: string }>;
  retry?: { reason: string };
  waitData?: boolean;
  applied?: "placed" | "dropped";
}

/**
 * One debug line per entry of a synced batch ("entry synced"): why it was marked, its files,
 * whether it was recorded, the rows folded (how many the query returned, how many came from
 * the stream) and what the sync came to. Called only when debug is on.
 */
export function traceBatch(
  log: Logger,
  batch: {
    inspected: ReadonlyArray<{ entry: string; d: Dirty; seen?: ReplicaInspection<string> }>;
    folds: ReadonlyMap<string, JournalView>;
    queried: ReadonlyMap<string, number>;
    streamed: ReadonlyMap<string, readonly unknown[]>;
    outcomes: readonly TracedOutcome[];
  },
  recorded: ReadonlyMap<string, Placed>,
): void {
  for (const [k, i] of batch.inspected.entries()) {
    const o = batch.outcomes[k];
    const rows = batch.folds.get(i.entry)?.rows;
    log.debug(
      {
        entry: i.entry,
        peer: i.d.peer,
        service: i.d.service,
        seen: i.seen?.kind ?? "invalid",
        recorded: recorded.has(i.entry),
        rows: rows?.map((r) => `${r.origin}/${r.seq}:${r.op}`).join(" "),
        queried: batch.queried.get(i.entry),
        streamed: batch.streamed.get(i.entry)?.length,
        record: o?.record === undefined ? undefined : o.record === null ? "none" : "placed",
        applied: o?.applied,
        retry: o?.retry?.reason,
        waitData: o?.waitData,
        localRows: o?.rows?.map((r) => r.op).join(" "),
      },
      "entry synced",
    );
  }
}
