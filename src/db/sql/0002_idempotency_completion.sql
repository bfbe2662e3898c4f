-- An idempotency key's enqueue may be in progress, or may have died before its entry
-- became visible. completed_at is set once the enqueue returned: a retry with the key is
-- then a duplicate even after the entry has been consumed and removed.
alter table idempotency_keys add column completed_at timestamptz;
