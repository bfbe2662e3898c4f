import type pg from "pg";

/**
 * Whether this node's view of the cluster is recent enough for its GC to act on (see
 * docs/architecture.md, "Garbage collection"). A GC removes what is unreachable in the
 * node's own view, so the view must hold every upload any peer accepted more than a short
 * while ago, and the closures of uploads still arriving must count as live:
 *
 * - every configured peer's subscription is joined, has copied the peer's journal (the
 *   journal's subscription state is ready), its apply worker runs, has run for at
 *   least `settleMs` (a worker just back from an outage may still be streaming a backlog),
 *   and has heard from the peer within `maxSilenceMs`;
 * - no cache entry younger than the grace period is in the journal without being in the
 *   index yet (a peer's upload whose nar is still being fetched, a local one whose index
 *   update failed and waits for its retry).
 *
 * Anything else is a reason not to remove anything now; the next run tries again.
 */

export type GcFence =
  | { readonly kind: "clear" }
  | { readonly kind: "blocked"; readonly reason: string };

export interface GcFenceInput {
  /** The configured peers' ids. */
  readonly peers: readonly string[];
  readonly queue: string;
  /**
   * Entries stamped at or after this are young (upload-stamp.ts; a journal row's hlc is a
   * value of the same clock, and never earlier than the stamp of the upload it journals).
   */
  readonly cutoff: bigint;
  readonly maxSilenceMs: number;
  readonly settleMs: number;
}

export async function checkGcFence(pool: pg.Pool, input: GcFenceInput): Promise<GcFence> {
  if (input.peers.length > 0) {
    const { rows } = await pool.query<{
      peer_id: string;
      subscription: string | null;
      pid: number | null;
      ready: boolean;
      silent_ms: string | null;
      running_ms: string | null;
    }>(
      `select want.peer_id, p.subscription, s.pid,
              exists (select 1 from pg_subscription_rel sr
                        join pg_subscription ps on ps.oid = sr.srsubid
                       where ps.subname = p.subscription and sr.srsubstate = 'r') as ready,
              (extract(epoch from (now() - s.last_msg_receipt_time)) * 1000)::bigint as silent_ms,
              (extract(epoch from (now() - a.backend_start)) * 1000)::bigint as running_ms
         from unnest($1::text[]) as want(peer_id)
         left join node_peers p on p.peer_id = want.peer_id
         left join pg_stat_subscription s on s.subname = p.subscription and s.relid is null
         left join pg_stat_activity a on a.pid = s.pid
        order by want.peer_id`,
      [input.peers],
    );
    for (const r of rows) {
      const peer = JSON.stringify(r.peer_id);
      if (r.subscription === null) return blocked(`peer ${peer} is not joined yet`);
      if (r.pid === null) return blocked(`the subscription to peer ${peer} is not streaming`);
      if (!r.ready) return blocked(`peer ${peer}'s journal is still being copied`);
      if (r.silent_ms === null || Number(r.silent_ms) > input.maxSilenceMs) {
        return blocked(
          `peer ${peer} has not been heard from for ${r.silent_ms === null ? "ever" : `${Math.round(Number(r.silent_ms) / 1000)} s`} (cache.gc.maxPeerSilence ${Math.round(input.maxSilenceMs / 1000)} s)`,
        );
      }
      if (r.running_ms === null || Number(r.running_ms) < input.settleMs) {
        return blocked(
          `the subscription to peer ${peer} (re)started less than ${Math.round(input.settleMs / 1000)} s ago`,
        );
      }
    }
  }
  const { rows } = await pool.query<{ n: string }>(
    `select count(*) as n from journal j
      where j.queue = $1 and j.op = 'enqueue' and j.hlc >= $2
        and not exists (select 1 from cache_entries e where e.entry = j.entry)
        and not exists (select 1 from journal r where r.entry = j.entry and r.op = 'remove')`,
    [input.queue, input.cutoff.toString()],
  );
  const arriving = Number(rows[0]?.n ?? 0);
  if (arriving > 0) {
    return blocked(`${arriving} young cache entries are journaled but not indexed yet`);
  }
  return { kind: "clear" };
}

function blocked(reason: string): GcFence {
  return { kind: "blocked", reason };
}
