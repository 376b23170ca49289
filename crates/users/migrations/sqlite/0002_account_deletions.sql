-- Deleted accounts: the revocation list (delete_time) and the durable outbox of note purges
-- (purge_time NULL = pending). See the PostgreSQL migration of the same name.
CREATE TABLE account_deletions (
    user_id     TEXT PRIMARY KEY NOT NULL,
    delete_time INTEGER NOT NULL,
    purge_time  INTEGER
) STRICT;

CREATE INDEX account_deletions_by_time ON account_deletions (delete_time);
CREATE INDEX account_deletions_pending ON account_deletions (delete_time) WHERE purge_time IS NULL;
