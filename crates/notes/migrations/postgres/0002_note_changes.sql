-- The change log that WatchNotes replays: one row per revision, written by the change's own
-- transaction (so a change and its log row commit together or not at all). Revisions commit
-- in order per owner (see owner_revisions), so an owner's log is always a contiguous run of
-- revisions: a reader that finds a hole knows the rows it needs were pruned.
--
-- Created and updated rows carry the note as the change left it; deleted rows only its id.
-- Each write prunes the owner's rows older than the retention (a count per owner).
CREATE TABLE note_changes (
    owner_id    TEXT NOT NULL,
    revision    BIGINT NOT NULL CHECK (revision > 0),
    kind        SMALLINT NOT NULL CHECK (kind IN (1, 2, 3)), -- 1 created, 2 updated, 3 deleted
    note_id     UUID NOT NULL,
    title       TEXT,
    content     TEXT,
    tags        TEXT[],
    create_time BIGINT,
    update_time BIGINT,
    PRIMARY KEY (owner_id, revision)
);
