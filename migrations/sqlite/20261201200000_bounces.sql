-- Bounces and complaints that come back after the relay (issue 15). The ledger learns the
-- status `bounced`: a row the relay accepted (`sent`) whose bounce arrived later. Every
-- message received on a bounce path is kept whole in `bounces`, with what it was read as
-- and the ledger row it was matched to (or none: kept for an operator).
--
-- SQLite cannot change a CHECK constraint in place, so the ledger is rebuilt as
-- 20261201000001_ledger_claims.sql did (migrations run with foreign keys off, checked
-- afterwards).
CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY,
    bulletin_id     INTEGER NOT NULL REFERENCES bulletins (id),
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    recipient_name  TEXT,
    list_id         INTEGER,
    subscriber_id   INTEGER,
    priority        INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'suppressed', 'held', 'unconfirmed', 'bounced')),
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
    claimed_by      TEXT,
    unconfirmed     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (bulletin_id, channel, recipient)
);
INSERT INTO deliveries_new (id, bulletin_id, channel, recipient, recipient_name, list_id,
    subscriber_id, priority, status, attempts, next_attempt_at, lease_until, ambiguous,
    last_code, last_error, message_id, created_at, updated_at, sent_at, claimed_by,
    unconfirmed)
SELECT id, bulletin_id, channel, recipient, recipient_name, list_id, subscriber_id,
    priority, status, attempts, next_attempt_at, lease_until, ambiguous, last_code,
    last_error, message_id, created_at, updated_at, sent_at, claimed_by, unconfirmed
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_recipient ON deliveries (recipient);
CREATE INDEX deliveries_ready ON deliveries (priority DESC, next_attempt_at, id)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_bulletin_status ON deliveries (bulletin_id, status);
CREATE INDEX deliveries_message_id ON deliveries (message_id);

CREATE TABLE bounces (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at   INTEGER NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('ingest', 'imap', 'webhook')),
    kind          TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'delayed', 'delivered', 'complaint', 'auto_reply', 'unmatched')),
    evidence      TEXT NOT NULL,
    status_code   TEXT,
    diagnostic    TEXT,
    recipient     TEXT,
    delivery_id   INTEGER REFERENCES deliveries (id),
    subscriber_id INTEGER,
    message_id    TEXT,
    raw           BLOB NOT NULL,
    undone_at     INTEGER
);
CREATE INDEX bounces_received ON bounces (received_at);
CREATE INDEX bounces_recipient ON bounces (recipient, kind, received_at);
