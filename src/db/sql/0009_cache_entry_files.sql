-- The nar paths accepted together with an entry's narinfo (a Guix narinfo lists several, each
-- stored as its own entry), as a JSON array; null when the entry's own url is the only one.
-- A narinfo is served only once every one of them is held on the node (served-rule.ts).
alter table cache_entries add column files jsonb;
