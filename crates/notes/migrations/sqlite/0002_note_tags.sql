-- The tag filter reads an index instead of every note of the owner: one row per
-- (owner, tag, note), in note id order, so a tag-filtered page is a range of this table.
CREATE TABLE note_tags (
    owner_id TEXT NOT NULL,
    tag      TEXT NOT NULL,
    note_id  TEXT NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    PRIMARY KEY (owner_id, tag, note_id)
) STRICT, WITHOUT ROWID;

-- Deleting a note finds its tag rows.
CREATE INDEX note_tags_by_note ON note_tags (note_id);

-- Notes written before this migration: tags are [a-z0-9-], so the comma-separated column
-- becomes a JSON array by quoting around the commas.
INSERT INTO note_tags (owner_id, tag, note_id)
SELECT notes.owner_id, tag.value, notes.id
FROM notes, json_each('["' || replace(notes.tags, ',', '","') || '"]') AS tag
WHERE notes.tags <> '';
