-- A deleted account's purge time: writes refuse a purged owner (see the PostgreSQL
-- migration of the same name).
ALTER TABLE owner_revisions ADD COLUMN purge_time INTEGER;

CREATE INDEX owner_revisions_purged ON owner_revisions (purge_time) WHERE purge_time IS NOT NULL;
