-- What the local spool holds, as last recorded by the tailer (a local transition journaled)
-- or the applier (a peer's change placed): one row per entry that exists locally. The
-- tailer compares the spool's files against it to find transitions; an entry as recorded
-- here and different from the journal's fold is one the applier still has to change.
create table replica_entries (
  entry text primary key,
  queue text not null,
  checked_out boolean not null,
  lease_until bigint,
  attempts int not null,
  -- sha256 of the metadata payload (the codec's bytes), hex
  payload_sha256 text not null,
  updated_at timestamptz not null default now()
);

-- Entries whose peer change could not be applied yet (data not fetched from any peer):
-- retried with a backoff and at every start, so an acknowledged stream position never
-- loses them.
create table replica_pending (
  entry text primary key,
  reason text not null,
  failures int not null default 1,
  since timestamptz not null default now(),
  last_attempt timestamptz not null default now()
);

-- Journal rows this node could not apply (an invalid row, or a queue this node does not
-- have). Kept for the operator; replication of everything else goes on.
create table replica_quarantine (
  origin text not null,
  seq bigint not null,
  entry text not null,
  problem text not null,
  quarantined_at timestamptz not null default now(),
  primary key (origin, seq)
);
