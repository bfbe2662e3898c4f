import type pg from "pg";
import { type JournalRow, validateRow } from "./journal-row.js";

/**
 * The journal table (migration 0003) from the local node's side: append rows for the local
 * origin, read rows back, count them per origin.
 *
 * Seq allocation. `appendLocal` takes the origin's row in `journal_counter` and inserts the
 * rows in one statement (so in one transaction, the caller's if it has one):
 * - a rolled-back append gives its numbers back: no gaps in the common case (a sequence would
 *   lose its numbers on every rollback, and cache-per-backend makes gaps routine);
 * - the counter row stays locked until commit, so one origin's appends commit in seq order: a
 *   reader (a tailer, a peer's subscription) that has seen seq n has seen every row below n.
 *   A sequence gives no such order: seq 7 may commit before seq 6, and `readSince(6)` run in
 *   between would skip 6 forever.
 * The price is that appends of one origin serialise on that row for as long as their
 * transactions last, so keep transactions that append short and batch rows instead: one call
 * inserts any number of rows in one round trip. Use READ COMMITTED (the default): under
 * REPEATABLE READ a waiting append fails with a serialization error instead of waiting.
 * When the counter row is missing (a new database) it starts from the highest seq already in
 * the journal for that origin, so numbers are never reused.
 */

/** A pool, a checked-out client, or a client: anything that runs a query. */
export type Queryable = pg.Pool | pg.PoolClient | pg.Client;

/** A row to append: everything but the origin and seq, which `appendLocal` assigns. */
export type NewJournalRow = DistributiveOmit<JournalRow, "origin" | "seq">;

/** `Omit` applied to each member of a union (so the op still narrows the row). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A row as stored: the row plus the time its origin recorded it. */
export type StoredJournalRow = JournalRow & { readonly recordedAt: Date };

/** A stored row that does not validate (a peer wrote something this build cannot read). */
export interface RejectedJournalRow {
  readonly origin: string;
  readonly seq: bigint;
  readonly problem: string;
}

export const JournalStoreErrorCode = {
  /** A row to append does not validate; nothing was inserted. */
  InvalidRow: "invalid_row",
} as const;

export type JournalStoreErrorCode =
  (typeof JournalStoreErrorCode)[keyof typeof JournalStoreErrorCode];

export class JournalStoreError extends Error {
  readonly code: JournalStoreErrorCode;

  constructor(code: JournalStoreErrorCode, message: string) {
    super(message);
    this.name = "JournalStoreError";
    this.code = code;
  }
}

const COLUMNS =
  "origin, seq, hlc, entry, op, queue, metadata, data_sha256, data_size, lease_until, attempts, recorded_at, data";
const COLUMNS_WITHOUT_DATA = COLUMNS.replace(/, data$/, ", null::bytea as data");
/** Without data, and each row's metadata replaced by its SHA-256 (32 bytes; null stays null). */
const COLUMNS_WITH_DIGESTS = COLUMNS_WITHOUT_DATA.replace(
  ", metadata,",
  ", sha256(metadata) as metadata,",
);

/**
 * The common table expressions that append rows (parameters $1..$12, as `appendParams`
 * makes them): `counter` takes the origin's counter row (only when there are rows: $2 > 0),
 * `appended` inserts the rows and returns their seq and recorded_at. For a caller that
 * writes more in the same statement (replica-record.ts): one statement, one round trip,
 * atomic by itself.
 */
export const APPEND_CTES = `
counter as (
  insert into journal_counter as c (origin, last_seq)
  select $1, coalesce((select max(seq) from journal where origin = $1), 0) + $2
  where $2 > 0
  on conflict (origin) do update set last_seq = c.last_seq + $2
  returning last_seq
),
appended as (
  insert into journal (origin, seq, hlc, entry, op, queue, metadata, data_sha256, data_size,
                       lease_until, attempts, data)
  select $1, counter.last_seq - $2 + r.ord, r.hlc, r.entry, r.op, r.queue, r.metadata,
         r.data_sha256, r.data_size, r.lease_until, r.attempts, r.data
  from counter,
       unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[],
              $9::bigint[], $10::timestamptz[], $11::int[], $12::bytea[])
         with ordinality as r(hlc, entry, op, queue, metadata, data_sha256, data_size,
                              lease_until, attempts, data, ord)
  returning seq, recorded_at
)`;

const APPEND = `with ${APPEND_CTES} select seq, recorded_at from appended`;

/** Every row validated (a `JournalStoreError` naming the first invalid one). */
export function checkRows(origin: string, rows: readonly NewJournalRow[]): JournalRow[] {
  return rows.map((row, i) => {
    const result = validateRow({ ...row, origin, seq: 1n });
    if (!result.ok) {
      throw new JournalStoreError(
        JournalStoreErrorCode.InvalidRow,
        `row ${i} to append is invalid: ${result.problem}`,
      );
    }
    return result.row;
  });
}

/** The parameters $1..$12 of `APPEND_CTES` for `checked` rows (from `checkRows`). */
export function appendParams(origin: string, checked: readonly JournalRow[]): unknown[] {
  return [
    origin,
    checked.length,
    checked.map((r) => r.hlc.toString()),
    checked.map((r) => r.entry),
    checked.map((r) => r.op),
    checked.map((r) => r.queue),
    checked.map((r) => r.metadata),
    checked.map((r) => r.dataSha256),
    checked.map((r) => (r.dataSize === null ? null : String(r.dataSize))),
    checked.map((r) => (r.leaseUntil === null ? null : new Date(r.leaseUntil).toISOString())),
    checked.map((r) => r.attempts),
    checked.map((r) => (r.op === "enqueue" ? (r.inlineData ?? null) : null)),
  ];
}

/**
 * Append rows written by `origin` (the local node) and return them with their seqs, in the
 * order given. Every row is validated first; an invalid row is a `JournalStoreError` and
 * nothing is inserted. Runs as one statement: atomic by itself, or part of the caller's
 * transaction when `db` is a client inside one.
 */
export async function appendLocal(
  db: Queryable,
  origin: string,
  rows: readonly NewJournalRow[],
): Promise<StoredJournalRow[]> {
  if (rows.length === 0) return [];
  const checked = checkRows(origin, rows);
  const { rows: inserted } = await db.query<{ seq: string; recorded_at: Date }>({
    name: "journal_append_local",
    text: APPEND,
    values: appendParams(origin, checked),
  });
  // The statement numbers rows by their position (with ordinality): the first row got the
  // smallest seq.
  let first: bigint | undefined;
  for (const row of inserted) {
    const seq = BigInt(row.seq);
    if (first === undefined || seq < first) first = seq;
  }
  const recordedAt = inserted[0]?.recorded_at ?? new Date();
  const base = first ?? 1n;
  return checked.map((row, i) => ({ ...row, seq: base + BigInt(i), recordedAt }));
}

export interface ReadSinceOptions {
  origin: string;
  /** Rows with a greater seq are returned; 0n (the default) reads from the start. */
  afterSeq?: bigint;
  /** At most this many rows (stored rows, valid or not); default 1000. */
  limit?: number;
}

export interface ReadSinceResult {
  /** Valid rows, in seq order. */
  rows: StoredJournalRow[];
  /** Rows that do not validate (skipped in `rows`), in seq order. */
  rejected: RejectedJournalRow[];
  /** The highest seq read (valid or not): pass it as `afterSeq` to read on; `afterSeq` if none. */
  lastSeq: bigint;
}

/** One origin's rows after `afterSeq`, in seq order. */
export async function readSince(db: Queryable, opts: ReadSinceOptions): Promise<ReadSinceResult> {
  const after = opts.afterSeq ?? 0n;
  const limit = opts.limit ?? 1000;
  const { rows } = await db.query<RawRow>({
    name: "journal_read_since",
    text: `select ${COLUMNS} from journal where origin = $1 and seq > $2 order by seq limit $3`,
    values: [opts.origin, after.toString(), limit],
  });
  const result: ReadSinceResult = { rows: [], rejected: [], lastSeq: after };
  for (const raw of rows) {
    const seq = BigInt(raw.seq);
    if (seq > result.lastSeq) result.lastSeq = seq;
    const parsed = parse(raw);
    if ("problem" in parsed) result.rejected.push(parsed);
    else result.rows.push(parsed);
  }
  return result;
}

/** Every stored row of one entry, in the fold's order (hlc, origin, seq). */
export async function readEntry(
  db: Queryable,
  entry: string,
): Promise<{ rows: StoredJournalRow[]; rejected: RejectedJournalRow[] }> {
  const { rows } = await db.query<RawRow>({
    name: "journal_read_entry",
    text: `select ${COLUMNS} from journal where entry = $1 order by hlc, origin collate "C", seq`,
    values: [entry],
  });
  const out = { rows: [] as StoredJournalRow[], rejected: [] as RejectedJournalRow[] };
  for (const raw of rows) {
    const parsed = parse(raw);
    if ("problem" in parsed) out.rejected.push(parsed);
    else out.rows.push(parsed);
  }
  return out;
}

/**
 * Every stored row of each of `entries`, grouped by entry, each group in the fold's order.
 * With `inlineData: false`, the rows come without the data small entries carry (column
 * `data`; the fold's placement does not need it): for readers that only compare placements.
 * With `metadataDigests: true` (no data either), each row's `metadata` holds the SHA-256 of
 * its metadata instead (null stays null, so rows validate as they would whole): what a
 * comparison of payload digests needs, 32 bytes a row instead of the metadata itself (a
 * binary cache entry's narinfo, a kilobyte or more).
 */
export async function readEntries(
  db: Queryable,
  entries: readonly string[],
  options: { inlineData?: boolean; metadataDigests?: boolean } = {},
): Promise<Map<string, { rows: StoredJournalRow[]; rejected: RejectedJournalRow[] }>> {
  const out = new Map<string, { rows: StoredJournalRow[]; rejected: RejectedJournalRow[] }>();
  for (const e of entries) out.set(e, { rows: [], rejected: [] });
  if (entries.length === 0) return out;
  const withData = options.inlineData ?? true;
  const [name, columns] = options.metadataDigests
    ? ["journal_read_entries_digests", COLUMNS_WITH_DIGESTS]
    : withData
      ? ["journal_read_entries", COLUMNS]
      : ["journal_read_entries_placement", COLUMNS_WITHOUT_DATA];
  const { rows } = await db.query<RawRow>({
    name,
    text: `select ${columns} from journal
           where entry = any($1::text[]) order by hlc, origin collate "C", seq`,
    values: [entries],
  });
  for (const raw of rows) {
    const group = out.get(String(raw.entry));
    if (group === undefined) continue;
    const parsed = parse(raw);
    if ("problem" in parsed) group.rejected.push(parsed);
    else group.rows.push(parsed);
  }
  return out;
}

export interface OriginCount {
  origin: string;
  /** Rows stored for the origin. */
  rows: number;
  /** The origin's highest stored seq. */
  maxSeq: bigint;
}

/** Stored rows per origin, ordered by origin (byte order). */
export async function countByOrigin(db: Queryable): Promise<OriginCount[]> {
  const { rows } = await db.query<{ origin: string; rows: string; max_seq: string }>({
    name: "journal_count_by_origin",
    text: `select origin, count(*) as rows, max(seq) as max_seq
           from journal group by origin order by origin collate "C"`,
  });
  return rows.map((r) => ({ origin: r.origin, rows: Number(r.rows), maxSeq: BigInt(r.max_seq) }));
}

/** The highest seq stored for `origin`, 0n when it has none. */
export async function maxSeq(db: Queryable, origin: string): Promise<bigint> {
  const { rows } = await db.query<{ max: string | null }>({
    name: "journal_max_seq",
    text: "select max(seq) as max from journal where origin = $1",
    values: [origin],
  });
  return BigInt(rows[0]?.max ?? 0);
}

interface RawRow {
  origin: string;
  seq: string;
  recorded_at: Date;
  [column: string]: unknown;
}

function parse(raw: RawRow): StoredJournalRow | RejectedJournalRow {
  const { recorded_at: recordedAt, ...columns } = raw;
  const result = validateRow(columns);
  if (!result.ok) return { origin: raw.origin, seq: BigInt(raw.seq), problem: result.problem };
  return { ...result.row, recordedAt };
}
