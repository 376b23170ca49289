-- A deleted account's notes are purged (PurgeUserNotes) in one transaction that also sets
-- its owner_revisions row's purge_time. Every write takes that row's lock first and reads
-- purge_time in the same statement, so a write racing the purge either commits before it
-- (and is purged with the rest) or sees purge_time and stores nothing: no orphan note.
-- The partial index serves the revocation list every replica reads each second.
ALTER TABLE owner_revisions ADD COLUMN purge_time BIGINT; -- microseconds since the Unix epoch

CREATE INDEX owner_revisions_purged ON owner_revisions (purge_time) WHERE purge_time IS NOT NULL;
