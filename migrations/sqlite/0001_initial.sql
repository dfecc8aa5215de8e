-- bulletin: the initial SQLite schema. Times are Unix milliseconds (UTC).

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE records (
    id            TEXT PRIMARY KEY,
    language      TEXT NOT NULL,
    title         TEXT NOT NULL,
    held_on       TEXT NOT NULL,
    body_json     TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('draft', 'approved', 'published')),
    source_file   TEXT NOT NULL,
    approved_by   TEXT,
    approved_at   INTEGER,
    approved_hash TEXT,
    imported_at   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    published_at  INTEGER
);
CREATE INDEX records_state ON records (state);

CREATE TABLE record_images (
    record_id    TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    file         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        BLOB NOT NULL,
    PRIMARY KEY (record_id, position)
);

CREATE TABLE lists (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

CREATE TABLE subscribers (
    id         INTEGER PRIMARY KEY,
    list_id    INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    name       TEXT,
    language   TEXT,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unsubscribed', 'bounced')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (list_id, email)
);
CREATE INDEX subscribers_email ON subscribers (email);

-- One row per (schedule, fire time): a firing runs once.
CREATE TABLE firings (
    schedule    TEXT NOT NULL,
    fire_time   INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    trigger     TEXT NOT NULL,
    done_at     INTEGER,
    bulletins   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (schedule, fire_time)
);

CREATE TABLE bulletins (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('record', 'digest', 'notice')),
    schedule    TEXT,
    fire_time   INTEGER,
    language    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    html        TEXT NOT NULL,
    text        TEXT NOT NULL,
    lists       TEXT NOT NULL,
    records     TEXT NOT NULL DEFAULT '',
    channels    TEXT NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL CHECK (state IN ('fanning_out', 'sending', 'paused', 'done')),
    created_at  INTEGER NOT NULL,
    fanned_out_at INTEGER
);

-- Which records a bulletin carries; a record goes out once per schedule.
CREATE TABLE publications (
    schedule    TEXT NOT NULL,
    record_id   TEXT NOT NULL REFERENCES records (id),
    bulletin_id INTEGER NOT NULL REFERENCES bulletins (id),
    position    INTEGER NOT NULL,
    PRIMARY KEY (schedule, record_id)
);
CREATE INDEX publications_bulletin ON publications (bulletin_id);

-- The ledger: one row per (bulletin, channel, recipient).
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    bulletin_id     INTEGER NOT NULL REFERENCES bulletins (id),
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    recipient_name  TEXT,
    list_id         INTEGER,
    subscriber_id   INTEGER,
    priority        INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'suppressed', 'held')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    ambiguous       INTEGER NOT NULL DEFAULT 0,
    last_code       INTEGER,
    last_error      TEXT,
    message_id      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (bulletin_id, channel, recipient)
);
CREATE INDEX deliveries_due ON deliveries (status, priority DESC, next_attempt_at);
CREATE INDEX deliveries_recipient ON deliveries (recipient);

-- Every attempt, kept.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    code        INTEGER,
    reply       TEXT,
    message_id  TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
