-- ListNotes' total_size, kept as counters instead of a COUNT(*) per page: counting an owner's
-- notes on every call cost time in proportion to how many they have (an owner with 20,000
-- notes listed 7x slower than one with 20, and each listing held a second pooled connection
-- for the count). The list statement reads the counter beside the owner's revision, so the
-- total comes from the same snapshot as the page.
--
-- Triggers keep the counters, so that every write path (create, import, update, delete, the
-- purge, a cascade) counts alike. They are statement-level with transition tables: an import
-- of 1,000 notes updates the owner's row once, not 1,000 times. Every write already holds the
-- owner's owner_revisions row lock (taken first, see 0001), so updating it adds no lock, and
-- an owner's tag counters are only ever changed under that same lock.
ALTER TABLE owner_revisions ADD COLUMN note_count BIGINT NOT NULL DEFAULT 0;

CREATE TABLE owner_tag_counts (
    owner_id   TEXT NOT NULL,
    tag        TEXT NOT NULL,
    note_count BIGINT NOT NULL,
    PRIMARY KEY (owner_id, tag)
);

INSERT INTO owner_revisions (owner_id, revision, note_count)
SELECT owner_id, MAX(revision), COUNT(*) FROM notes GROUP BY owner_id
ON CONFLICT (owner_id) DO UPDATE SET note_count = EXCLUDED.note_count;

INSERT INTO owner_tag_counts (owner_id, tag, note_count)
SELECT owner_id, tag, COUNT(*) FROM note_tags GROUP BY owner_id, tag;

CREATE FUNCTION count_notes_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE owner_revisions r SET note_count = r.note_count + c.n
    FROM (SELECT owner_id, COUNT(*) AS n FROM inserted GROUP BY owner_id) c
    WHERE r.owner_id = c.owner_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_notes_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE owner_revisions r SET note_count = r.note_count - c.n
    FROM (SELECT owner_id, COUNT(*) AS n FROM deleted GROUP BY owner_id) c
    WHERE r.owner_id = c.owner_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_tags_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO owner_tag_counts AS t (owner_id, tag, note_count)
    SELECT owner_id, tag, COUNT(*) FROM inserted GROUP BY owner_id, tag
    ON CONFLICT (owner_id, tag) DO UPDATE SET note_count = t.note_count + EXCLUDED.note_count;
    RETURN NULL;
END
$$;

-- A tag no note carries any more loses its row, so the table holds what is in use.
CREATE FUNCTION count_tags_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE owner_tag_counts t SET note_count = t.note_count - gone.n
    FROM (SELECT owner_id, tag, COUNT(*) AS n FROM deleted GROUP BY owner_id, tag) gone
    WHERE t.owner_id = gone.owner_id AND t.tag = gone.tag;
    -- A statement of its own: it must see the counts the update above left.
    DELETE FROM owner_tag_counts t
    USING (SELECT DISTINCT owner_id, tag FROM deleted) gone
    WHERE t.owner_id = gone.owner_id AND t.tag = gone.tag AND t.note_count <= 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER notes_counted_in AFTER INSERT ON notes
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION count_notes_inserted();
CREATE TRIGGER notes_counted_out AFTER DELETE ON notes
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION count_notes_deleted();
CREATE TRIGGER note_tags_counted_in AFTER INSERT ON note_tags
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION count_tags_inserted();
CREATE TRIGGER note_tags_counted_out AFTER DELETE ON note_tags
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION count_tags_deleted();
