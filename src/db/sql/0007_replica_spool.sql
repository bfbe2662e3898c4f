-- The spool the record in replica_entries describes: the id in its `.spool-id` file. At
-- start the replicator compares it with the spool's: another id is a lost spool (restored
-- from the journal); the same id, however empty the spool, is the same spool (what the
-- record lists and the spool lacks was removed, and is journaled as removed).
create table replica_spool (
  singleton boolean primary key default true check (singleton),
  spool_id text not null,
  recorded_at timestamptz not null default now()
);
