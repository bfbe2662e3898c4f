import { nameProblem } from "../spool/index.js";
import { MAX_HLC } from "./hlc.js";

/**
 * One row of the replicated journal (SQL table `journal`, see the replication model): one
 * spool transition of one entry, written by node `origin` as its `seq`-th row.
 *
 * `seq` and `hlc` are bigints. For `hlc` there is no choice: `ms * 65536` is about 2^57, past
 * Number's exact range. `seq` will never pass 2^53 in practice, but it is a PostgreSQL bigint
 * that node-postgres hands over as a decimal string, it is compared in the total order next to
 * `hlc`, and a peer's row may carry any value the column allows: as a bigint every such value
 * is represented exactly, so every node orders every row the same way and nothing is rounded.
 *
 * The row is a union over `op` so that what validation guarantees is in the type: an enqueue
 * carries metadata and the data's digest and size, a move carries metadata, a checkout carries
 * its lease deadline, and fields that belong to another op are null.
 */
export type JournalRow = EnqueueRow | MoveRow | CheckoutRow | ReleaseRow | RemoveRow;

export const JOURNAL_OPS = ["enqueue", "move", "checkout", "release", "remove"] as const;
export type JournalOp = (typeof JOURNAL_OPS)[number];

interface JournalRowBase {
  /** The node that wrote the row (a valid name). */
  readonly origin: string;
  /** Per-origin sequence number, from 1; gaps allowed, never reused. */
  readonly seq: bigint;
  /** Hybrid logical clock value (see hlc.ts), 0..2^63-1. */
  readonly hlc: bigint;
  /** The entry's name (cluster-unique). */
  readonly entry: string;
  /** The queue the entry is in after the op (for a checkout: the queue it was taken from). */
  readonly queue: string;
  /** Failed-delivery count after the op. */
  readonly attempts: number;
}

/** The entry was created in `queue`. */
export interface EnqueueRow extends JournalRowBase {
  readonly op: "enqueue";
  readonly metadata: Buffer;
  /**
   * The data itself, for small entries (column `data`); absent when it must be fetched. Not
   * part of the fold's identity: checked against `dataSha256` and `dataSize` where used.
   */
  readonly inlineData?: Buffer;
  /** sha256 of the data, 64 lowercase hex digits. */
  readonly dataSha256: string;
  readonly dataSize: number;
  readonly leaseUntil: null;
}

/** The entry was saved into `queue` with new metadata. */
export interface MoveRow extends JournalRowBase {
  readonly op: "move";
  readonly metadata: Buffer;
  readonly dataSha256: null;
  readonly dataSize: null;
  readonly leaseUntil: null;
}

/** The entry was taken out of `queue` under a lease ending at `leaseUntil` (ms since epoch). */
export interface CheckoutRow extends JournalRowBase {
  readonly op: "checkout";
  readonly metadata: Buffer | null;
  readonly dataSha256: null;
  readonly dataSize: null;
  readonly leaseUntil: number;
}

/** The entry was returned to `queue` (a failed delivery or an expired lease). */
export interface ReleaseRow extends JournalRowBase {
  readonly op: "release";
  readonly metadata: Buffer | null;
  readonly dataSha256: null;
  readonly dataSize: null;
  readonly leaseUntil: null;
}

/** The entry was deleted: a tombstone. */
export interface RemoveRow extends JournalRowBase {
  readonly op: "remove";
  readonly metadata: Buffer | null;
  readonly dataSha256: null;
  readonly dataSize: null;
  readonly leaseUntil: null;
}

export type ValidateRowResult = { ok: true; row: JournalRow } | { ok: false; problem: string };

/** `origin/seq`: a row's primary key, for logs and quarantine records. */
export function rowKey(row: { origin: string; seq: bigint }): string {
  return `${row.origin}/${row.seq}`;
}

const MAX_BIGINT = (1n << 63n) - 1n;
const MAX_INT4 = 2 ** 31 - 1;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const DECIMAL = /^-?[0-9]{1,30}$/;

class RowProblem {
  constructor(readonly text: string) {}
}

/**
 * Checks a row as it comes from PostgreSQL and turns it into a `JournalRow`; never throws.
 *
 * Accepts the row as node-postgres or pgoutput decode it (column names in snake_case, bigint
 * columns as decimal strings, bytea as Buffer, timestamptz as Date) and an already-typed
 * `JournalRow` (camelCase, bigint, ms). Columns it does not know (`recorded_at`) are ignored.
 * A rejected row gets a one-line `problem` naming the row's key when it could be read; the
 * applier quarantines such rows.
 *
 * Validation depends only on the row, so every node accepts exactly the same rows and folds
 * the same set.
 */
export function validateRow(raw: unknown): ValidateRowResult {
  let prefix = "row";
  try {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      return { ok: false, problem: `row is ${describeType(raw)}, not an object` };
    }
    const record = raw as Record<string, unknown>;
    const origin = readName(record, "origin", "origin");
    const seq = readBigint(record, "seq", "seq", 1n, MAX_BIGINT);
    prefix = `row ${origin}/${seq}`;
    const hlc = readBigint(record, "hlc", "hlc", 0n, MAX_HLC);
    const entry = readName(record, "entry", "entry");
    const queue = readName(record, "queue", "queue");
    const op = readOp(record);
    const attempts = readInteger(record, "attempts", "attempts", MAX_INT4);
    const metadata = readMetadata(record);
    const dataSha256 = readDigest(record);
    const dataSize = readDataSize(record);
    const leaseUntil = readLeaseUntil(record);
    const base = { origin, seq, hlc, entry, queue, attempts };
    const noData = { dataSha256: null, dataSize: null } as const;
    switch (op) {
      case "enqueue":
        if (metadata === null) throw new RowProblem("an enqueue has no metadata");
        if (dataSha256 === null) throw new RowProblem("an enqueue has no data_sha256");
        if (dataSize === null) throw new RowProblem("an enqueue has no data_size");
        forbidLease(op, leaseUntil);
        return {
          ok: true,
          row: { ...base, op, metadata, dataSha256, dataSize, leaseUntil, ...readInline(record) },
        };
      case "move":
        if (metadata === null) throw new RowProblem("a move has no metadata");
        forbidData(op, dataSha256, dataSize);
        forbidLease(op, leaseUntil);
        return { ok: true, row: { ...base, op, metadata, ...noData, leaseUntil } };
      case "checkout":
        if (leaseUntil === null) throw new RowProblem("a checkout has no lease_until");
        forbidData(op, dataSha256, dataSize);
        return { ok: true, row: { ...base, op, metadata, ...noData, leaseUntil } };
      case "release":
        forbidData(op, dataSha256, dataSize);
        forbidLease(op, leaseUntil);
        return { ok: true, row: { ...base, op, metadata, ...noData, leaseUntil } };
      case "remove":
        forbidData(op, dataSha256, dataSize);
        forbidLease(op, leaseUntil);
        return { ok: true, row: { ...base, op, metadata, ...noData, leaseUntil } };
    }
  } catch (e) {
    const text = e instanceof RowProblem ? e.text : `could not be read (${errorText(e)})`;
    return { ok: false, problem: oneLine(`${prefix}: ${text}`) };
  }
}

function forbidData(op: JournalOp, sha: string | null, size: number | null): void {
  if (sha !== null) throw new RowProblem(`${article(op)} has a data_sha256 (only an enqueue may)`);
  if (size !== null) throw new RowProblem(`${article(op)} has a data_size (only an enqueue may)`);
}

function forbidLease(op: JournalOp, leaseUntil: number | null): asserts leaseUntil is null {
  if (leaseUntil !== null) {
    throw new RowProblem(`${article(op)} has a lease_until (only a checkout may)`);
  }
}

/**
 * The value of a field under its camelCase or its snake_case name; `undefined` when absent.
 * A row with both names is ambiguous and rejected.
 */
function field(record: Record<string, unknown>, camel: string, snake: string): unknown {
  const a = record[camel];
  if (camel === snake) return a;
  const b = record[snake];
  if (a !== undefined && b !== undefined) {
    throw new RowProblem(`has both ${camel} and ${snake}`);
  }
  return a !== undefined ? a : b;
}

function required(record: Record<string, unknown>, camel: string, snake: string): unknown {
  const value = field(record, camel, snake);
  if (value === undefined) throw new RowProblem(`${snake} is missing`);
  return value;
}

function readName(record: Record<string, unknown>, camel: string, snake: string): string {
  const value = required(record, camel, snake);
  const problem = nameProblem(value);
  if (problem !== undefined) throw new RowProblem(`${snake} ${show(value)} ${problem}`);
  return value as string;
}

function readOp(record: Record<string, unknown>): JournalOp {
  const value = required(record, "op", "op");
  if (typeof value === "string" && (JOURNAL_OPS as readonly string[]).includes(value)) {
    return value as JournalOp;
  }
  throw new RowProblem(`op ${show(value)} is not one of ${JOURNAL_OPS.join(", ")}`);
}

/** A bigint column: a bigint, a safe-integer number, or a decimal string. */
function toBigint(value: unknown): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number") return Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (typeof value === "string" && DECIMAL.test(value)) return BigInt(value);
  return undefined;
}

function readBigint(
  record: Record<string, unknown>,
  camel: string,
  snake: string,
  min: bigint,
  max: bigint,
): bigint {
  const value = required(record, camel, snake);
  const n = toBigint(value);
  if (n === undefined) throw new RowProblem(`${snake} ${show(value)} is not an integer`);
  if (n < min || n > max) throw new RowProblem(`${snake} ${n} is not in ${min}..${max}`);
  return n;
}

function readInteger(
  record: Record<string, unknown>,
  camel: string,
  snake: string,
  max: number,
): number {
  const value = required(record, camel, snake);
  const n = toBigint(value);
  if (n === undefined) throw new RowProblem(`${snake} ${show(value)} is not an integer`);
  if (n < 0n || n > BigInt(max)) throw new RowProblem(`${snake} ${n} is not in 0..${max}`);
  return Number(n);
}

function readMetadata(record: Record<string, unknown>): Buffer | null {
  const value = required(record, "metadata", "metadata");
  if (value === null) return null;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.length);
  throw new RowProblem(`metadata is ${describeType(value)}, not bytes or null`);
}

/** Column `data` (or `inlineData`): optional; anything but bytes is ignored, not rejected. */
function readInline(record: Record<string, unknown>): { inlineData?: Buffer } {
  const value = record.inlineData ?? record.data;
  if (Buffer.isBuffer(value)) return { inlineData: value };
  if (value instanceof Uint8Array) {
    return { inlineData: Buffer.from(value.buffer, value.byteOffset, value.length) };
  }
  return {};
}

function readDigest(record: Record<string, unknown>): string | null {
  const value = required(record, "dataSha256", "data_sha256");
  if (value === null) return null;
  if (typeof value === "string" && SHA256_HEX.test(value)) return value;
  throw new RowProblem(`data_sha256 ${show(value)} is not 64 lowercase hex digits`);
}

function readDataSize(record: Record<string, unknown>): number | null {
  const value = required(record, "dataSize", "data_size");
  if (value === null) return null;
  const n = toBigint(value);
  if (n === undefined) throw new RowProblem(`data_size ${show(value)} is not an integer`);
  if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RowProblem(`data_size ${n} is not in 0..${Number.MAX_SAFE_INTEGER}`);
  }
  return Number(n);
}

/** timestamptz: a Date (node-postgres), ms since the epoch, or a timestamp string. */
function readLeaseUntil(record: Record<string, unknown>): number | null {
  const value = required(record, "leaseUntil", "lease_until");
  if (value === null) return null;
  let ms: number;
  if (value instanceof Date) ms = value.getTime();
  else if (typeof value === "number") ms = Number.isSafeInteger(value) ? value : Number.NaN;
  else if (typeof value === "string") ms = Date.parse(value);
  else ms = Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new RowProblem(`lease_until ${show(value)} is not a valid timestamp`);
  }
  return ms;
}

function article(op: JournalOp): string {
  return op === "enqueue" ? "an enqueue" : `a ${op}`;
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a Date";
  const t = typeof value;
  return t === "object" || t === "undefined" ? t : `a ${t}`;
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 80));
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value instanceof Date)
    return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  return `(${describeType(value)})`;
}

function errorText(e: unknown): string {
  try {
    return e instanceof Error ? e.message : String(e);
  } catch {
    return "unprintable error";
  }
}

function oneLine(text: string): string {
  const flat = text.replace(/[\r\n\u2028\u2029]+/g, " ");
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}
