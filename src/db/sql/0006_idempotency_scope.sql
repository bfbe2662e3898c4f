-- Idempotency keys belong to who enqueued and where: the same key from another principal,
-- or for another queue, is another key. Rows from before this migration have the empty
-- principal (they still answer retries of replicated entries that carry none).
alter table idempotency_keys add column principal text not null default '';
alter table idempotency_keys drop constraint idempotency_keys_pkey;
alter table idempotency_keys add primary key (principal, queue, key);
