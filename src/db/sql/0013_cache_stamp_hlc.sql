-- An accepted upload's stamp becomes a value of the cluster's hybrid logical clock (physical
-- ms * 65536 + logical; src/cache/upload-stamp.ts) instead of the accepting node's wall clock
-- in ms. Rows indexed before hold ms: they become that millisecond with logical part 0, which
-- is how the cache reads a record that has only its ms (`hlc`), so the index keeps matching
-- its spool without a rebuild.
update cache_entries set hlc = hlc * 65536;
