-- The ledger learns two things: which process claimed a row (`claimed_by`: host, pid and
-- claim generation), and how many attempts ended without a final reply although the
-- message may have been delivered (`unconfirmed`). A row that reached its limit of such
-- attempts ends in the new status `unconfirmed` ("may have been delivered"), never `failed`.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt (the
-- procedure of SQLite's ALTER TABLE documentation). The store runs migrations with
-- foreign keys off (and checks them afterwards), so dropping the old table does not
-- touch the attempts and WeChat jobs that refer to its rows.
CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY,
    bulletin_id     INTEGER NOT NULL REFERENCES bulletins (id),
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    recipient_name  TEXT,
    list_id         INTEGER,
    subscriber_id   INTEGER,
    priority        INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'suppressed', 'held', 'unconfirmed')),
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
    last_code, last_error, message_id, created_at, updated_at, sent_at)
SELECT id, bulletin_id, channel, recipient, recipient_name, list_id, subscriber_id,
    priority, status, attempts, next_attempt_at, lease_until, ambiguous, last_code,
    last_error, message_id, created_at, updated_at, sent_at
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_recipient ON deliveries (recipient);
CREATE INDEX deliveries_ready ON deliveries (priority DESC, next_attempt_at, id)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_bulletin_status ON deliveries (bulletin_id, status);
