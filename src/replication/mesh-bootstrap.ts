import { maxSeq, type Queryable } from "./journal-store.js";
import type { PeerQuery } from "./mesh-peer.js";

/**
 * The initial copy of a peer's rows, done by `joinPeer` over an ordinary connection instead
 * of the subscription's table-sync worker (copy_data):
 *
 * - One origin's rows commit in seq order (journal-store.ts), and a subscription applies them
 *   in commit order, so the rows of a peer held here are always a prefix of the peer's rows.
 *   The copy therefore starts after the highest seq held here: a re-join, or a subscription
 *   rebuilt after its slot was lost, copies only what it missed (copy_data would copy the
 *   whole journal again).
 * - The copy runs after the subscription's slot has been created on the peer and before the
 *   subscription is enabled: every row committed before the slot is copied, every row
 *   committed after it is streamed, and rows in both are identical and skipped (`on conflict
 *   do nothing` here, the journal's replica trigger on the apply side). The two never run at
 *   once.
 * - No table-sync worker, hence no table-sync slot on the peer. Their names are
 *   `pg_<subscription oid>_sync_<table oid>_<system identifier>`: servers copied from one
 *   template share the system identifier and, after the same migrations, the oids, so two
 *   nodes bootstrapping from the same peer at once collide on it (observed: "replication slot
 *   ... already exists", then one worker dropping or streaming from the other's slot).
 *
 * Small entries' data (the `data` column, see INLINE_DATA_MAX) is copied with its row: a row
 * copied without it would make this node fetch the data over gRPC, which needs a token the
 * peer accepts (seen: the first upload to a fresh mesh never placed on the joining node).
 *
 * Values travel as text so that they are stored exactly as the peer has them (a JavaScript
 * Date would cut recorded_at to milliseconds, and the replica trigger would then see the
 * streamed copy of the row as a different row).
 */

const PAGE_ROWS = 2000;

const READ_PAGE = `
select seq::text, hlc::text, entry, op, queue, metadata, data_sha256, data_size::text,
       lease_until::text, attempts, recorded_at::text, data
from journal where origin = $1 and seq > $2 order by seq limit $3`;

const INSERT_PAGE = `
insert into journal (origin, seq, hlc, entry, op, queue, metadata, data_sha256, data_size,
                     lease_until, attempts, recorded_at, data)
select $1, r.seq, r.hlc, r.entry, r.op, r.queue, r.metadata, r.data_sha256, r.data_size,
       r.lease_until, r.attempts, r.recorded_at, r.data
from unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bytea[],
            $8::text[], $9::bigint[], $10::timestamptz[], $11::int[], $12::timestamptz[],
            $13::bytea[])
       as r(seq, hlc, entry, op, queue, metadata, data_sha256, data_size, lease_until,
            attempts, recorded_at, data)
on conflict (origin, seq) do nothing`;

interface PeerRow {
  seq: string;
  hlc: string;
  entry: string;
  op: string;
  queue: string;
  metadata: Buffer | null;
  data_sha256: string | null;
  data_size: string | null;
  lease_until: string | null;
  attempts: number;
  recorded_at: string;
  data: Buffer | null;
}

export interface CopyResult {
  /** Rows read from the peer (all inserted unless already here). */
  rows: number;
  /** The highest seq held here before the copy. */
  fromSeq: bigint;
  /** The highest seq copied (`fromSeq` when there was nothing to copy). */
  toSeq: bigint;
}

/** Copy `origin`'s rows that `local` lacks from `peer`, in pages, each committed on its own. */
export async function copyOriginRows(
  peer: PeerQuery,
  local: Queryable,
  origin: string,
  opts: { pageRows?: number } = {},
): Promise<CopyResult> {
  const pageRows = opts.pageRows ?? PAGE_ROWS;
  const fromSeq = await maxSeq(local, origin);
  let after = fromSeq;
  let copied = 0;
  for (;;) {
    const { rows } = await peer<PeerRow>(READ_PAGE, [origin, after.toString(), pageRows]);
    if (rows.length === 0) break;
    await local.query(INSERT_PAGE, [
      origin,
      rows.map((r) => r.seq),
      rows.map((r) => r.hlc),
      rows.map((r) => r.entry),
      rows.map((r) => r.op),
      rows.map((r) => r.queue),
      rows.map((r) => r.metadata),
      rows.map((r) => r.data_sha256),
      rows.map((r) => r.data_size),
      rows.map((r) => r.lease_until),
      rows.map((r) => r.attempts),
      rows.map((r) => r.recorded_at),
      rows.map((r) => r.data),
    ]);
    copied += rows.length;
    after = BigInt(rows[rows.length - 1]?.seq ?? after);
    if (rows.length < pageRows) break;
  }
  return { rows: copied, fromSeq, toSeq: after };
}
