import type pg from "pg";
import { foldEntry } from "./fold.js";
import type { JournalRow } from "./journal-row.js";
import { readEntries } from "./journal-store.js";
import { type LocalState, type Placed, satisfies, type Target, targetOf } from "./replica-state.js";

/**
 * The replicator's self-check (run after the periodic full reconcile): does the record (what
 * the spool holds, as last recorded; the reconcile holds the files to it) match what the
 * journal's fold asks for? A node's state is a function of its journal, so an entry the fold
 * has placed and the record lacks (or the other way round, or in another queue, checkout or
 * attempt count) is a divergence: a peer's change the replicator lost.
 *
 * Incremental: each audit looks at the entries with journal rows it has not looked at yet
 * (per origin, by seq: at most `ROWS_PER_ORIGIN` rows each time, so the first audits after a
 * start walk an existing journal in steps), at those whose record changed since the last
 * audit, and again at those it had to leave out or suspected last time. Left out (and looked at next time): entries the replicator is working
 * on, entries with peer rows the apply stream has not handed over yet, entries that synced
 * while the audit read, and quarantined ones. An entry found differing at two audits in a
 * row is a divergence; the caller repairs it by syncing the entry against its fold.
 */

/** One entry whose record differs from its fold. */
export interface Divergence {
  entry: string;
  /** What the fold asks for: `absent`, or `<queue>[/checked_out], attempts n`. */
  expected: string;
  /** What the record says, in the same terms. */
  recorded: string;
}

/**
 * Rows read per origin at one audit: a journal of 100,000 rows is walked in twenty audits
 * (10 min at the default reconcile period) after a start. The catch-up is a background
 * check; at 20,000 rows an audit was a second of the node's CPU in 20 to 40 ms steps,
 * which put a serving node's narinfo p99 at 15 to 36 ms in every run it fell in.
 */
const ROWS_PER_ORIGIN = 5_000;
/**
 * Entries whose rows are read (and compared) in one query: each step holds the event loop
 * for a few ms at most, and 100 entries' rows at once (was 1,000: 20 to 40 ms a step).
 */
const ENTRIES_PER_READ = 100;

export interface AuditContext {
  /** The record as last committed. */
  recorded: ReadonlyMap<string, Placed>;
  /** Entries whose record changed since the last audit: looked at again. */
  changed: Iterable<string>;
  now: () => number;
  /** The replicator is on `entry` (marked, syncing, retrying): not read, looked at later. */
  busy(entry: string): boolean;
  /** Leave `entry` out this time (given its rows): the replicator may be on it soon. */
  skip(entry: string, rows: readonly JournalRow[]): boolean;
}

export class RecordAudit {
  /** Per origin, the seq up to which rows have been looked at. */
  private readonly marks = new Map<string, bigint>();
  /** Entries to look at again: left out, or suspected, at the last audit. */
  private again = new Set<string>();
  private suspects = new Set<string>();

  constructor(
    private readonly pool: pg.Pool,
    origins: Iterable<string>,
  ) {
    for (const o of origins) this.marks.set(o, 0n);
  }

  /** One audit: the divergences it confirmed (found at this audit and the one before). */
  async run(ctx: AuditContext): Promise<Divergence[]> {
    const changed = [...ctx.changed];
    try {
      return await this.look(ctx, changed);
    } catch (err) {
      // Looked at next time.
      for (const e of changed) this.again.add(e);
      throw err;
    }
  }

  private async look(ctx: AuditContext, changed: readonly string[]): Promise<Divergence[]> {
    const fresh = await this.readNew();
    // Entries the replicator is on are not read now (during a catch-up, nearly all are).
    const later = new Set<string>();
    const entries: string[] = [];
    for (const e of new Set([...fresh.entries, ...this.again, ...changed])) {
      if (ctx.busy(e)) later.add(e);
      else entries.push(e);
    }
    const left = later;
    const found: Divergence[] = [];
    // A slice's rows at a time: the first audits after a start walk the whole journal
    // (100,000 entries' rows held at once were over 100 MB of the node's memory).
    for (let i = 0; i < entries.length; i += ENTRIES_PER_READ) {
      const part = entries.slice(i, i + ENTRIES_PER_READ);
      const rows = new Map<string, JournalRow[]>();
      // Digests of the metadata, not the metadata: the comparison needs nothing more (a
      // binary cache entry's metadata is its narinfo).
      const read = await readEntries(this.pool, part, { metadataDigests: true });
      for (const [entry, f] of read) rows.set(entry, f.rows);
      const quarantined = await this.quarantined(part);
      const inPart = findDivergences(
        rows,
        ctx.recorded,
        ctx.now(),
        (entry, r) => {
          const skip = quarantined.has(entry) || ctx.skip(entry, r);
          if (skip && !quarantined.has(entry)) left.add(entry);
          return skip;
        },
        { metadataDigests: true },
      );
      found.push(...inPart);
    }
    const confirmed = found.filter((d) => this.suspects.has(d.entry));
    this.suspects = new Set(found.filter((d) => !this.suspects.has(d.entry)).map((d) => d.entry));
    this.again = new Set([...left, ...this.suspects]);
    for (const [origin, seq] of fresh.marks) this.marks.set(origin, seq);
    return confirmed;
  }

  /** The entries with rows past the marks, and the marks after them. */
  private async readNew(): Promise<{ entries: Set<string>; marks: Map<string, bigint> }> {
    const origins = [...this.marks.keys()];
    const { rows } = await this.pool.query<{ origin: string; seq: string; entry: string }>({
      name: "replica_audit_new_rows",
      text: `select w.origin, j.seq, j.entry
             from unnest($1::text[], $2::bigint[]) as w(origin, after)
             cross join lateral (
               select seq, entry from journal
               where origin = w.origin and seq > w.after order by seq limit $3
             ) j`,
      values: [origins, origins.map((o) => (this.marks.get(o) ?? 0n).toString()), ROWS_PER_ORIGIN],
    });
    const entries = new Set<string>();
    const marks = new Map<string, bigint>();
    for (const r of rows) {
      entries.add(r.entry);
      const seq = BigInt(r.seq);
      if (seq > (marks.get(r.origin) ?? 0n)) marks.set(r.origin, seq);
    }
    return { entries, marks };
  }

  private async quarantined(entries: readonly string[]): Promise<Set<string>> {
    if (entries.length === 0) return new Set();
    const { rows } = await this.pool.query<{ entry: string }>({
      name: "replica_audit_quarantined",
      text: "select distinct entry from replica_quarantine where entry = any($1::text[])",
      values: [entries],
    });
    return new Set(rows.map((r) => r.entry));
  }
}

/**
 * The entries (of `rows`) whose record differs from their fold at `now`, except those `skip`
 * names. With `metadataDigests`, each row's metadata is the SHA-256 of the real one (as
 * readEntries reads it with that option). A recorded checkout is compared with the fold just before its lease ends: taking
 * back an expired lease is the lease reaper's work (journaled as a release), not a divergence.
 */
export function findDivergences(
  rows: ReadonlyMap<string, readonly JournalRow[]>,
  recorded: ReadonlyMap<string, Placed>,
  now: number,
  skip: (entry: string, rows: readonly JournalRow[]) => boolean,
  options: { metadataDigests?: boolean } = {},
): Divergence[] {
  const out: Divergence[] = [];
  for (const [entry, list] of rows) {
    const rec = recorded.get(entry) ?? null;
    const at = rec?.checkedOut ? Math.min(now, (rec.leaseUntil ?? 0) - 1) : now;
    let target = targetOf(foldEntry(list, at));
    if (options.metadataDigests && target.kind === "placed") {
      // The rows' metadata is already its digest (readEntries' `metadataDigests`).
      const payloadSha256 = target.payload.toString("hex");
      target = { ...target, placed: { ...target.placed, payloadSha256 } };
    }
    if (satisfies(rec, target) || skip(entry, list)) continue;
    out.push({ entry, expected: describeTarget(target), recorded: describe(rec) });
  }
  return out;
}

function describe(s: LocalState): string {
  if (s === null) return "absent";
  return `${s.queue}${s.checkedOut ? "/checked_out" : ""}, attempts ${s.attempts}`;
}

function describeTarget(t: Target): string {
  return t.kind === "absent" ? "absent" : describe(t.placed);
}
