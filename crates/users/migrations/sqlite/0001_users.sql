CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,   -- UUIDv7, so id order is creation order
    email         TEXT NOT NULL,               -- as the user typed it
    email_key     TEXT NOT NULL UNIQUE,        -- lowercased: uniqueness is case-insensitive
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,               -- argon2id PHC string
    version       INTEGER NOT NULL,            -- bumped on every change; the etag
    create_time   INTEGER NOT NULL,            -- microseconds since the Unix epoch
    update_time   INTEGER NOT NULL
) STRICT;
