-- The store paths (hash parts) an entry's narinfo references move into the entry's own row:
-- written with it in one insert (a rebuild of 100,000 entries spent about a third of its time
-- on the separate table's rows), and walked forward by a GC from the served entries. The
-- index's format goes to 2, so each node rebuilds its rows (and this column) from its spool.
alter table cache_entries add column refs text[] not null default '{}';
drop table cache_references;
