import type pg from "pg";
import { redactConninfo } from "./mesh-conninfo.js";
import type { MeshNames } from "./mesh-names.js";
import { ident } from "./mesh-sql.js";

export interface LocalSubscription {
  exists: boolean;
  enabled: boolean;
  slotName: string | null;
  /** A node_peers row exists: an earlier join completed. */
  joined: boolean;
  conninfoSha256: string | null;
  /** The journal table is among the subscription's tables (a refresh has run). */
  subscribesJournal: boolean;
}

export const NO_SUBSCRIPTION: LocalSubscription = {
  exists: false,
  enabled: false,
  slotName: null,
  joined: false,
  conninfoSha256: null,
  subscribesJournal: false,
};

export async function localSubscription(
  client: pg.PoolClient,
  subscription: string,
  peerId: string,
): Promise<LocalSubscription> {
  const { rows } = await client.query<{
    oid: number;
    subenabled: boolean;
    subslotname: string | null;
    journal: boolean;
  }>(
    `select s.oid, s.subenabled, s.subslotname,
            exists (select 1 from pg_subscription_rel r
                    where r.srsubid = s.oid and r.srrelid = 'journal'::regclass) as journal
     from pg_subscription s
     where s.subname = $1
       and s.subdbid = (select oid from pg_database where datname = current_database())`,
    [subscription],
  );
  const { rows: peers } = await client.query<{ conninfo_sha256: string }>(
    "select conninfo_sha256 from node_peers where peer_id = $1",
    [peerId],
  );
  const sub = rows[0];
  return {
    exists: sub !== undefined,
    enabled: sub?.subenabled ?? false,
    slotName: sub?.subslotname ?? null,
    joined: peers[0] !== undefined,
    conninfoSha256: peers[0]?.conninfo_sha256 ?? null,
    subscribesJournal: sub?.journal ?? false,
  };
}

export async function recordPeer(
  client: pg.PoolClient,
  peerId: string,
  names: MeshNames,
  conninfo: string,
  digest: string,
): Promise<void> {
  await client.query(
    `insert into node_peers (peer_id, subscription, slot_name, publication, conninfo,
                             conninfo_sha256)
     values ($1, $2, $3, $4, $5, $6)
     on conflict (peer_id) do update set
       subscription = excluded.subscription, slot_name = excluded.slot_name,
       publication = excluded.publication, conninfo = excluded.conninfo,
       conninfo_sha256 = excluded.conninfo_sha256, updated_at = now()`,
    [peerId, names.subscription, names.slot, names.publication, redactConninfo(conninfo), digest],
  );
}

/** Drop a subscription without touching its slot on the peer (for a peer that cannot be reached). */
export async function dropSubscriptionDetached(client: pg.PoolClient, subscription: string) {
  const sub = ident(subscription);
  await client.query(`alter subscription ${sub} disable`);
  await client.query(`alter subscription ${sub} set (slot_name = none)`);
  // Table-sync slots still in progress are dropped if the peer answers, left otherwise.
  await client.query(`drop subscription ${sub}`);
}

export interface PeerRecord {
  peerId: string;
  subscription: string;
  slotName: string;
  publication: string;
  /** Without its password. */
  conninfo: string;
  joinedAt: Date;
  updatedAt: Date;
}

/** The peers this node has joined (completed joins), by peer id. */
export async function listPeers(pool: pg.Pool): Promise<PeerRecord[]> {
  const { rows } = await pool.query<{
    peer_id: string;
    subscription: string;
    slot_name: string;
    publication: string;
    conninfo: string;
    joined_at: Date;
    updated_at: Date;
  }>("select * from node_peers order by peer_id");
  return rows.map((r) => ({
    peerId: r.peer_id,
    subscription: r.subscription,
    slotName: r.slot_name,
    publication: r.publication,
    conninfo: r.conninfo,
    joinedAt: r.joined_at,
    updatedAt: r.updated_at,
  }));
}
