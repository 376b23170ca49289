-- Every change to an owner's notes takes the owner's next revision by updating this row
-- (INSERT ... ON CONFLICT DO UPDATE ... RETURNING) inside the change's own transaction. The
-- row lock it takes is held until COMMIT or ROLLBACK, so an owner's writers run one after the
-- other: revisions commit in order, and a rolled-back write gives its revision back. Hence
-- revisions are contiguous per owner, with no hole and no repeat, whatever the number of
-- replicas.
CREATE TABLE owner_revisions (
    owner_id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL CHECK (revision >= 0)
);

CREATE TABLE notes (
    id          UUID PRIMARY KEY,              -- UUIDv7: id order is creation order
    owner_id    TEXT NOT NULL,
    title       TEXT NOT NULL CHECK (title <> ''),
    content     TEXT NOT NULL,
    tags        TEXT[] NOT NULL,               -- in the order the client gave them
    revision    BIGINT NOT NULL CHECK (revision > 0), -- owner revision of the last change; the etag
    create_time BIGINT NOT NULL,               -- microseconds since the Unix epoch
    update_time BIGINT NOT NULL
);

-- Listing is per owner, newest first, by keyset on id: a backward range scan of this index.
CREATE UNIQUE INDEX notes_by_owner ON notes (owner_id, id);

-- The tag filter: one row per (owner, tag, note); a tag-filtered page is a backward range
-- scan of the primary key, and counting a tag reads only this index.
CREATE TABLE note_tags (
    owner_id TEXT NOT NULL,
    tag      TEXT NOT NULL,
    note_id  UUID NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    PRIMARY KEY (owner_id, tag, note_id)
);

-- Deleting a note finds its tag rows.
CREATE INDEX note_tags_by_note ON note_tags (note_id);

-- Idempotent creates: a retried request_id finds the note its first attempt created. The
-- primary key makes a request_id unique per owner in the database itself.
CREATE TABLE create_requests (
    owner_id    TEXT NOT NULL,
    request_id  UUID NOT NULL,
    fingerprint BYTEA NOT NULL CHECK (octet_length(fingerprint) = 32), -- SHA-256 of the request
    note_id     UUID NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (owner_id, request_id)
);
