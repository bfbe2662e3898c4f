-- The node's identity: exactly one row, written when the node first starts.
create table node_info (
  singleton boolean primary key default true check (singleton),
  node_id text not null,
  region text not null,
  created_at timestamptz not null default now()
);

-- Idempotent enqueue: a key seen within the dedup window returns the first entry.
create table idempotency_keys (
  key text primary key,
  queue text not null,
  entry_name text not null,
  created_at timestamptz not null default now()
);

-- Dedup-window cleanup deletes by age.
create index idempotency_keys_created_at on idempotency_keys (created_at);
