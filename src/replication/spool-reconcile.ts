import type { ReplicaSpool } from "../spool/index.js";
import type { Placed } from "./replica-state.js";

/**
 * The full reconcile's comparison (anti-entropy for lost file events and for a crash between
 * a rename and the journal insert): every entry whose files and record disagree on its queue
 * or checkout is handed to `mark`, and the count returned. Entries on disk and not recorded,
 * recorded elsewhere, or recorded and on disk nowhere are all marked.
 *
 * The spool is walked a slice at a time and each slice compared with the record as it is
 * then, so what the pass holds is one slice of names and a set of the record's own keys not
 * seen on disk yet (no copy of a name, no object per entry). An entry that moves during
 * the walk may be marked for nothing (a sync is idempotent) or compared at its old place;
 * one missed this time, its change having lost its event, is found at the next pass that
 * walks (Replicator.periodicReconcile: after any change of a directory or of the record, and
 * every tenth pass regardless).
 */
export async function reconcileSpool(
  spool: Pick<ReplicaSpool, "walk">,
  recorded: () => ReadonlyMap<string, Placed>,
  mark: (entry: string) => void,
): Promise<number> {
  const unseen = new Set(recorded().keys());
  let marked = 0;
  await spool.walk((queue, checkedOut, names) => {
    const record = recorded();
    for (const name of names) {
      unseen.delete(name);
      const rec = record.get(name);
      if (rec === undefined || rec.queue !== queue || rec.checkedOut !== checkedOut) {
        mark(name);
        marked++;
      }
    }
  });
  // Recorded when the pass began, still recorded, on disk nowhere.
  const record = recorded();
  for (const name of unseen) {
    if (record.has(name)) {
      mark(name);
      marked++;
    }
  }
  return marked;
}
