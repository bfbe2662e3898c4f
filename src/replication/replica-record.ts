import type pg from "pg";
import { inTransaction } from "../db/pg-session.js";
import {
  APPEND_CTES,
  appendLocal,
  appendParams,
  checkRows,
  type NewJournalRow,
} from "./journal-store.js";
import type { LocalState, Placed } from "./replica-state.js";

/**
 * The replicator's record in the node's database, and its SQL:
 * - replica_entries: what the local spool held, as last recorded (a local transition
 *   journaled, or a peer's change placed), one row per entry that exists locally;
 * - replica_spool: the id (`.spool-id`) of the spool that record describes;
 * - replica_pending: entries left to sync (a peer change not applied yet, a restore under
 *   way), marked again at every start;
 * - replica_quarantine: journal rows this node cannot apply, kept for the operator.
 */

/** A journal row this node cannot apply, and why. */
export interface QuarantinedRow {
  origin: string;
  seq: bigint;
  entry: string;
  problem: string;
}

/** What one batch of syncs writes, in one transaction. */
export interface RecordWrite {
  /** This node's journal rows for local transitions. */
  rows: NewJournalRow[];
  /** New record per entry (null: the entry is gone). */
  records: Array<[string, LocalState]>;
  quarantine: QuarantinedRow[];
  /** Entries to retry at the next start too. */
  retry: Array<{ entry: string; reason: string }>;
  /** Entries synced: their replica_pending rows go. */
  settled: string[];
  /** Entries synced again after a quarantine: their old quarantine rows go first. */
  requarantined: string[];
}

export async function loadRecord(pool: pg.Pool): Promise<Map<string, Placed>> {
  const rec = await pool.query<{
    entry: string;
    queue: string;
    checked_out: boolean;
    lease_until: string | null;
    attempts: number;
    payload_sha256: string;
  }>(
    "select entry, queue, checked_out, lease_until, attempts, payload_sha256 from replica_entries",
  );
  const out = new Map<string, Placed>();
  // One string per queue name, not one per entry (100,000 entries: 2.3 MB).
  const queues = new Map<string, string>();
  for (const r of rec.rows) {
    const queue = queues.get(r.queue) ?? r.queue;
    queues.set(queue, queue);
    out.set(r.entry, {
      queue,
      checkedOut: r.checked_out,
      leaseUntil: r.lease_until === null ? null : Number(r.lease_until),
      attempts: r.attempts,
      payloadSha256: r.payload_sha256,
    });
  }
  return out;
}

/** The highest hlc in the journal (0 when empty). */
export async function lastHlc(pool: pg.Pool): Promise<bigint> {
  const last = await pool.query<{ hlc: string | null }>("select max(hlc) as hlc from journal");
  return BigInt(last.rows[0]?.hlc ?? 0);
}

export async function pendingEntries(pool: pg.Pool): Promise<string[]> {
  const r = await pool.query<{ entry: string }>("select entry from replica_pending");
  return r.rows.map((row) => row.entry);
}

export async function quarantinedEntries(pool: pg.Pool): Promise<string[]> {
  const r = await pool.query<{ entry: string }>("select distinct entry from replica_quarantine");
  return r.rows.map((row) => row.entry);
}

/** The entries a full pass compares with their fold: peers' rows, and this node's enqueues. */
export async function journalEntries(pool: pg.Pool, nodeId: string): Promise<string[]> {
  const r = await pool.query<{ entry: string }>(
    "select distinct entry from journal where origin <> $1 or op = 'enqueue'",
    [nodeId],
  );
  return r.rows.map((row) => row.entry);
}

/** The spool id stored with the record; undefined when none is. */
export async function recordedSpoolId(pool: pg.Pool): Promise<string | undefined> {
  const r = await pool.query<{ spool_id: string }>("select spool_id from replica_spool");
  return r.rows[0]?.spool_id;
}

async function writeSpoolId(client: pg.ClientBase, spoolId: string): Promise<void> {
  await client.query(
    `insert into replica_spool (spool_id) values ($1)
     on conflict (singleton) do update set spool_id = excluded.spool_id, recorded_at = now()`,
    [spoolId],
  );
}

export function recordSpoolId(pool: pg.Pool, spoolId: string): Promise<void> {
  return inTransaction(pool, (client) => writeSpoolId(client, spoolId));
}

/**
 * A lost spool: in one transaction, drop the record, list every entry the journal names in
 * replica_pending (so a crash part-way resumes the restore) and record the new spool's id.
 * Returns the entries it listed.
 */
export function restoreLostSpool(pool: pg.Pool, nodeId: string, spoolId: string) {
  return inTransaction(pool, async (client) => {
    await client.query("delete from replica_entries");
    const r = await client.query<{ entry: string }>(
      `insert into replica_pending (entry, reason)
       select distinct entry, 'restoring a lost spool' from journal
       where origin <> $1 or op = 'enqueue'
       on conflict (entry) do nothing
       returning entry`,
      [nodeId],
    );
    await writeSpoolId(client, spoolId);
    return r.rows.map((row) => row.entry);
  });
}

/** The origin of the entry's last checkout row in fold order: whose client holds the lease. */
export async function leaseHolder(pool: pg.Pool, entry: string): Promise<string | undefined> {
  const r = await pool.query<{ origin: string }>({
    name: "replica_lease_holder",
    text: `select origin from journal where entry = $1 and op = 'checkout'
           order by hlc desc, origin desc, seq desc limit 1`,
    values: [entry],
  });
  return r.rows[0]?.origin;
}

/**
 * The common batch (no quarantine) in one statement, so one round trip and atomic by
 * itself: the journal rows (journal-store.ts, $1..$12), the record's new and gone entries,
 * the retries listed and the settled entries unlisted. The keys of each table's two parts
 * are disjoint (an entry has one outcome per batch; retried and settled entries differ).
 */
const RECORD_WRITE = `
with ${APPEND_CTES},
upserted as (
  insert into replica_entries (entry, queue, checked_out, lease_until, attempts, payload_sha256)
  select * from unnest($13::text[], $14::text[], $15::bool[], $16::bigint[], $17::int[],
                       $18::text[])
  on conflict (entry) do update set
    queue = excluded.queue, checked_out = excluded.checked_out,
    lease_until = excluded.lease_until, attempts = excluded.attempts,
    payload_sha256 = excluded.payload_sha256, updated_at = now()
  returning 1
),
gone as (delete from replica_entries where entry = any($19::text[]) returning 1),
retried as (
  insert into replica_pending (entry, reason)
  select * from unnest($20::text[], $21::text[])
  on conflict (entry) do update set reason = excluded.reason,
    failures = replica_pending.failures + 1, last_attempt = now()
  returning 1
),
settled as (delete from replica_pending where entry = any($22::text[]) returning 1)
select (select count(*) from appended) as appended`;

function recordParams(w: RecordWrite) {
  const up = w.records.filter((r): r is [string, Placed] => r[1] !== null);
  const gone = w.records.filter((r) => r[1] === null).map((r) => r[0]);
  return {
    up: [
      up.map((r) => r[0]),
      up.map((r) => r[1].queue),
      up.map((r) => r[1].checkedOut),
      up.map((r) => (r[1].leaseUntil === null ? null : String(Math.round(r[1].leaseUntil)))),
      up.map((r) => r[1].attempts),
      up.map((r) => r[1].payloadSha256),
    ],
    gone,
    retry: [w.retry.map((r) => r.entry), w.retry.map((r) => r.reason.slice(0, 500))],
  };
}

/**
 * Write one batch's journal rows, record, quarantine and retries atomically: in one
 * statement when nothing is quarantined (the common case), else in one transaction.
 */
export async function writeRecord(pool: pg.Pool, nodeId: string, w: RecordWrite): Promise<void> {
  if (w.quarantine.length === 0 && w.requarantined.length === 0) {
    // Validated before anything is sent, as appendLocal does.
    const checked = checkRows(nodeId, w.rows);
    const p = recordParams(w);
    await pool.query({
      name: "replica_record_write",
      text: RECORD_WRITE,
      values: [...appendParams(nodeId, checked), ...p.up, p.gone, ...p.retry, w.settled],
    });
    return;
  }
  await inTransaction(pool, async (client) => {
    if (w.rows.length > 0) await appendLocal(client, nodeId, w.rows);
    const p = recordParams(w);
    if (p.up[0]?.length) {
      await client.query({
        name: "replica_upsert",
        text: `insert into replica_entries
               (entry, queue, checked_out, lease_until, attempts, payload_sha256)
             select * from unnest($1::text[], $2::text[], $3::bool[], $4::bigint[],
                                  $5::int[], $6::text[])
             on conflict (entry) do update set
               queue = excluded.queue, checked_out = excluded.checked_out,
               lease_until = excluded.lease_until, attempts = excluded.attempts,
               payload_sha256 = excluded.payload_sha256, updated_at = now()`,
        values: p.up,
      });
    }
    if (p.gone.length > 0) {
      await client.query("delete from replica_entries where entry = any($1::text[])", [p.gone]);
    }
    if (w.requarantined.length > 0) {
      await client.query("delete from replica_quarantine where entry = any($1::text[])", [
        w.requarantined,
      ]);
    }
    if (w.quarantine.length > 0) {
      await client.query(
        `insert into replica_quarantine (origin, seq, entry, problem)
         select * from unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
         on conflict do nothing`,
        [
          w.quarantine.map((q) => q.origin),
          w.quarantine.map((q) => q.seq.toString()),
          w.quarantine.map((q) => q.entry),
          w.quarantine.map((q) => q.problem),
        ],
      );
    }
    if (w.retry.length > 0) {
      await client.query(
        `insert into replica_pending (entry, reason)
         select * from unnest($1::text[], $2::text[])
         on conflict (entry) do update set reason = excluded.reason,
           failures = replica_pending.failures + 1, last_attempt = now()`,
        p.retry,
      );
    }
    if (w.settled.length > 0) {
      await client.query("delete from replica_pending where entry = any($1::text[])", [w.settled]);
    }
  });
}
