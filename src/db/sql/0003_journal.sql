-- The replicated journal: one row per spool transition, append-only, keyed (origin, seq).
-- A node inserts only rows with its own origin; peers' rows arrive through the logical
-- replication mesh (src/replication/mesh.ts), which publishes each node's own rows only.
create table journal (
  origin text not null,
  seq bigint not null,
  hlc bigint not null,
  entry text not null,
  op text not null check (op in ('enqueue', 'move', 'checkout', 'release', 'remove')),
  queue text not null,
  metadata bytea,
  data_sha256 text,
  data_size bigint,
  lease_until timestamptz,
  attempts int not null default 0,
  recorded_at timestamptz not null default now(),
  primary key (origin, seq)
);

-- The fold reads every row of one entry.
create index journal_entry on journal (entry);

-- Local seq allocation: the last seq handed out per origin (only the local origin in
-- practice). Incremented in the same statement as the insert, so a rolled-back append gives
-- its numbers back (no gaps in the common case), and the row lock it takes makes one origin's
-- rows commit in seq order: a reader that has seen seq n has seen every row below n.
create table journal_counter (
  origin text primary key,
  last_seq bigint not null check (last_seq >= 0)
);

-- Rows arriving from a peer (through a subscription's apply or initial-copy worker, which run
-- with session_replication_role = replica) may already be here: a peer re-joined with
-- copy_data, or a subscription rebuilt after its slot was lost. An identical row is skipped
-- rather than failing the worker forever on the primary key; a different row under the same
-- key is a real divergence (an origin that reused its seqs) and fails loudly with
-- unique_violation, which shows in pg_stat_subscription_stats. Local inserts
-- (session_replication_role = origin) do not fire this trigger.
create function journal_skip_replicated_duplicate() returns trigger
language plpgsql
set search_path from current
as $$
declare
  existing journal;
begin
  select * into existing from journal where origin = new.origin and seq = new.seq;
  if not found then
    return new;
  end if;
  if (existing.hlc, existing.entry, existing.op, existing.queue, existing.metadata,
      existing.data_sha256, existing.data_size, existing.lease_until, existing.attempts,
      existing.recorded_at)
     is not distinct from
     (new.hlc, new.entry, new.op, new.queue, new.metadata,
      new.data_sha256, new.data_size, new.lease_until, new.attempts, new.recorded_at) then
    return null;
  end if;
  raise exception using
    errcode = 'unique_violation',
    message = format('journal row %s/%s arrived with content different from the stored row',
                     new.origin, new.seq),
    hint = 'the origin node reused a seq (was its database rebuilt under the same node id?)';
end
$$;

create trigger journal_skip_replicated_duplicate
  before insert on journal
  for each row execute function journal_skip_replicated_duplicate();

alter table journal enable replica trigger journal_skip_replicated_duplicate;

-- Subscriptions this node holds, one per peer (managed by mesh.ts). The subscription itself
-- lives in pg_subscription; this row records who it is for and marks a completed join.
-- conninfo is stored without its password; conninfo_sha256 detects a changed connection.
create table node_peers (
  peer_id text primary key,
  subscription text not null unique,
  slot_name text not null,
  publication text not null,
  conninfo text not null,
  conninfo_sha256 text not null,
  joined_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
