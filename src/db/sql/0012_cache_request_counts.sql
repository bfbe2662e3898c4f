-- Request analytics of the binary cache (src/cache/request-stats*.ts): per time bucket (an
-- hour) and key, how often a narinfo was found (hits) or not (misses), how often a nar was
-- asked for and the bytes of it sent. Written in batches by the node (one upsert per flush
-- interval, never per request), pruned past cache.analytics.keepFor. Node-local: what one
-- node served; never replicated (the mesh publishes the journal table only).
create table cache_request_counts (
  -- Start of the bucket (UTC).
  bucket timestamptz not null,
  kind text not null check (kind in ('narinfo', 'nar')),
  -- narinfo: the hash part; nar: the nar path (`nar/...`); '': requests counted past the
  -- node's bound on distinct keys between two flushes (totals stay exact).
  key text not null,
  hits bigint not null default 0,
  misses bigint not null default 0,
  bytes bigint not null default 0,
  primary key (bucket, kind, key)
);

-- Per key over a range of buckets (`geospool cache stats`).
create index cache_request_counts_kind_key on cache_request_counts (kind, key);
