-- Deleted accounts. Written by the DeleteUser statement itself (one statement deletes the
-- account and inserts its row), so a deletion is never without its row:
-- - every service refuses the tokens of the accounts deleted recently (delete_time);
-- - the account's notes live in another service's database: purge_time stays NULL until
--   the gateway has purged them there and confirmed it, so a purge that fails midway is
--   retried until done, however long the notes service is down.
CREATE TABLE account_deletions (
    user_id     UUID PRIMARY KEY,              -- never reused: ids are UUIDv7
    delete_time BIGINT NOT NULL,               -- microseconds since the Unix epoch
    purge_time  BIGINT                         -- NULL while the purge of its notes is pending
);

CREATE INDEX account_deletions_by_time ON account_deletions (delete_time);
CREATE INDEX account_deletions_pending ON account_deletions (delete_time) WHERE purge_time IS NULL;
