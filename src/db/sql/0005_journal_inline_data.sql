-- Small entries carry their data in their enqueue row, so a peer places them without a
-- ReadData round trip (see INLINE_DATA_MAX in replicator.ts). Larger data, and rows copied
-- without it, are fetched over gRPC as before. The column is checked against data_sha256
-- and data_size when applied; a mismatch falls back to a fetch.
alter table journal add column data bytea;
