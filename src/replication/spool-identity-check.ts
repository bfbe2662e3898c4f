import type { SpoolIdentity } from "../spool/index.js";

/**
 * Is the spool the one the replicator's record describes? Decided from the spool's durable
 * identity (`.spool-id`) and the id recorded with the record, never from emptiness: a work
 * queue that drains to empty is the normal case, and a record that still lists entries the
 * spool no longer holds is then a set of removes to journal, not a lost disk.
 *
 * - `same`: the record describes this spool; differences between them are local
 *   transitions. `recordId` asks to store the spool's id with the record (first start with
 *   identities, or a record made before them).
 * - `lost`: the spool is another one than the record's (made again after a wipe, or a
 *   different directory): journaling the differences would remove entries cluster-wide, so
 *   the record is dropped and the spool restored from the journal.
 */
export type SpoolCheck =
  | { readonly kind: "same"; readonly recordId: boolean }
  | { readonly kind: "lost"; readonly why: string };

export function checkSpoolIdentity(input: {
  /** The spool id stored with the record; undefined when none was (yet). */
  readonly recordedId: string | undefined;
  readonly spool: SpoolIdentity;
  /** Entries the record lists. */
  readonly recordedEntries: number;
}): SpoolCheck {
  const { recordedId, spool, recordedEntries } = input;
  if (recordedId === spool.id) return { kind: "same", recordId: false };
  if (recordedId !== undefined) {
    return {
      kind: "lost",
      why: `the record is of spool ${recordedId}, and this spool is ${spool.id} (${spool.made})`,
    };
  }
  // A record made before identities: only a spool made by this start can be a lost one.
  if (spool.made === "created" && recordedEntries > 0) {
    return {
      kind: "lost",
      why: `the spool was made by this start and the record lists ${recordedEntries} entries`,
    };
  }
  return { kind: "same", recordId: true };
}
