-- Issue 16: language versions of one record. `records` keeps the record (state,
-- approval) and its primary version, as before; `record_versions` holds its other
-- language versions. `records.content_hash` now spans every version (for a record of
-- one version it is that version's hash, so existing approvals stand) and
-- `records.version_hash` is the primary version's own hash. Existing records are one
-- primary version each: nothing to move.
ALTER TABLE records ADD COLUMN version_hash TEXT;
UPDATE records SET version_hash = content_hash;

CREATE TABLE record_versions (
    record_id    TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    language     TEXT NOT NULL,
    title        TEXT NOT NULL,
    held_on      TEXT NOT NULL,
    body_json    TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    source_file  TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (record_id, language)
);

-- A bulletin's row is its primary version; its other language versions, rendered once
-- each, are here.
CREATE TABLE bulletin_versions (
    bulletin_id BIGINT NOT NULL REFERENCES bulletins (id) ON DELETE CASCADE,
    language    TEXT NOT NULL,
    position    BIGINT NOT NULL,
    subject     TEXT NOT NULL,
    html        TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (bulletin_id, language)
);

-- The reader's language (the subscriber's, copied at fan-out): which version they get.
ALTER TABLE deliveries ADD COLUMN language TEXT;
