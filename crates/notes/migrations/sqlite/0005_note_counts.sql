-- ListNotes' total_size, kept as counters instead of a COUNT(*) per page (see the PostgreSQL
-- migration of the same name). SQLite has row-level triggers only; each is an in-process
-- update of a row the write transaction already holds.
ALTER TABLE owner_revisions ADD COLUMN note_count INTEGER NOT NULL DEFAULT 0;

CREATE TABLE owner_tag_counts (
    owner_id   TEXT NOT NULL,
    tag        TEXT NOT NULL,
    note_count INTEGER NOT NULL,
    PRIMARY KEY (owner_id, tag)
) STRICT, WITHOUT ROWID;

-- An owner with notes but no row yet (rows written before the table existed) gets one, at
-- the revision of its latest note.
INSERT INTO owner_revisions (owner_id, revision, note_count)
SELECT owner_id, MAX(revision), COUNT(*) FROM notes WHERE true GROUP BY owner_id
ON CONFLICT (owner_id) DO UPDATE SET note_count = excluded.note_count;

INSERT INTO owner_tag_counts (owner_id, tag, note_count)
SELECT owner_id, tag, COUNT(*) FROM note_tags GROUP BY owner_id, tag;

CREATE TRIGGER notes_counted_in AFTER INSERT ON notes BEGIN
    UPDATE owner_revisions SET note_count = note_count + 1 WHERE owner_id = NEW.owner_id;
END;

CREATE TRIGGER notes_counted_out AFTER DELETE ON notes BEGIN
    UPDATE owner_revisions SET note_count = note_count - 1 WHERE owner_id = OLD.owner_id;
END;

CREATE TRIGGER note_tags_counted_in AFTER INSERT ON note_tags BEGIN
    INSERT INTO owner_tag_counts (owner_id, tag, note_count) VALUES (NEW.owner_id, NEW.tag, 1)
    ON CONFLICT (owner_id, tag) DO UPDATE SET note_count = note_count + 1;
END;

-- A cascade from a deleted note fires this too.
CREATE TRIGGER note_tags_counted_out AFTER DELETE ON note_tags BEGIN
    UPDATE owner_tag_counts SET note_count = note_count - 1
    WHERE owner_id = OLD.owner_id AND tag = OLD.tag;
    DELETE FROM owner_tag_counts
    WHERE owner_id = OLD.owner_id AND tag = OLD.tag AND note_count <= 0;
END;
