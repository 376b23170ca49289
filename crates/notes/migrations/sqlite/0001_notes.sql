-- Every change to an owner's notes takes the owner's next revision, inside the same
-- transaction as the change: revisions are contiguous per owner and order their changes.
CREATE TABLE owner_revisions (
    owner_id TEXT PRIMARY KEY NOT NULL,
    revision INTEGER NOT NULL
) STRICT;

CREATE TABLE notes (
    id          TEXT PRIMARY KEY NOT NULL,   -- UUIDv7: id order is creation order
    owner_id    TEXT NOT NULL,
    title       TEXT NOT NULL,
    content     TEXT NOT NULL,
    tags        TEXT NOT NULL,               -- comma-separated; tags are [a-z0-9-]
    revision    INTEGER NOT NULL,            -- owner revision of the last change; the etag
    create_time INTEGER NOT NULL,            -- microseconds since the Unix epoch
    update_time INTEGER NOT NULL
) STRICT;

-- Listing is per owner, newest first, by keyset on id.
CREATE INDEX notes_by_owner ON notes (owner_id, id);

-- Idempotent creates: a retried request_id finds the note its first attempt created.
CREATE TABLE create_requests (
    owner_id    TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint BLOB NOT NULL,               -- SHA-256 of the request, to spot reuse
    note_id     TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (owner_id, request_id)
) STRICT;
