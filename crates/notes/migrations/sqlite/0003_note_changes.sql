-- The change log that WatchNotes replays (see the PostgreSQL migration for the design): one
-- row per revision, written by the change's own transaction, pruned to a count per owner.
CREATE TABLE note_changes (
    owner_id    TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    kind        INTEGER NOT NULL,            -- 1 created, 2 updated, 3 deleted
    note_id     TEXT NOT NULL,
    title       TEXT,
    content     TEXT,
    tags        TEXT,                        -- comma-separated, as in notes
    create_time INTEGER,
    update_time INTEGER,
    PRIMARY KEY (owner_id, revision)
) STRICT, WITHOUT ROWID;
