CREATE TABLE users (
    id            UUID PRIMARY KEY,            -- UUIDv7, so id order is creation order
    email         TEXT NOT NULL,               -- as the user typed it
    email_key     TEXT NOT NULL,               -- lowercased: uniqueness is case-insensitive
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    version       BIGINT NOT NULL CHECK (version > 0), -- bumped on every change; the etag
    create_time   BIGINT NOT NULL,             -- microseconds since the Unix epoch
    update_time   BIGINT NOT NULL
);

-- Emails are unique case-insensitively in the database itself: two replicas racing to sign
-- up one address cannot both commit, the second gets a unique violation (ALREADY_EXISTS).
CREATE UNIQUE INDEX users_by_email_key ON users (email_key);
