-- The binary cache's lookup index (src/cache/cache-index.ts): node-local state derived from
-- the cache's spool queue, rebuilt from it when missing or when it describes another spool.
-- Never replicated: the mesh publishes the journal table only (mesh-publication.ts); each
-- node derives its own index from the entries it holds.

-- What the rows below were derived from: another spool id, queue or format means they
-- describe something else, and they are dropped and rebuilt from the queue.
create table cache_index_state (
  singleton boolean primary key default true check (singleton),
  spool_id text not null,
  queue text not null,
  format int not null,
  built_at timestamptz not null default now()
);

-- One row per cache entry in the queue: an accepted upload of one nar and its narinfo.
create table cache_entries (
  entry text primary key,
  hash_part text not null,
  url text not null,
  trust text not null check (trust in ('trusted', 'node_signed', 'unsigned')),
  origin text not null,
  hlc bigint not null,
  narinfo bytea not null,
  listing bytea,
  uploaded_by text not null
);

create index cache_entries_hash_part on cache_entries (hash_part);
create index cache_entries_url on cache_entries (url);

-- Per hash part, the entry whose narinfo is served (served-rule.ts's choice among the
-- entries of that hash part).
create table cache_served (
  hash_part text primary key,
  entry text not null references cache_entries (entry) on delete cascade
);

create index cache_served_entry on cache_served (entry);

-- The store paths (by hash part) each entry's narinfo references: the graph a GC walks.
create table cache_references (
  entry text not null references cache_entries (entry) on delete cascade,
  reference text not null,
  primary key (entry, reference)
);

create index cache_references_reference on cache_references (reference);
