-- Subscriber ids are never reused (issue 18, item 7). Without AUTOINCREMENT SQLite gives a
-- new row max(id) + 1, so removing the newest subscriber handed their id to the next one
-- added: their queued rows and unsubscribe links then named the newcomer. The table is
-- rebuilt with AUTOINCREMENT, keeping every id, the UNIQUE key, the foreign key to lists
-- and the index. No table has a foreign key to subscribers (deliveries keep the id as a
-- plain column), so dropping the old table cascades nowhere and foreign keys can stay on;
-- the migration runs in one transaction.
CREATE TABLE subscribers_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id    INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    name       TEXT,
    language   TEXT,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unsubscribed', 'bounced')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (list_id, email)
);
INSERT INTO subscribers_new (id, list_id, email, name, language, status, created_at, updated_at)
    SELECT id, list_id, email, name, language, status, created_at, updated_at FROM subscribers;
DROP TABLE subscribers;
ALTER TABLE subscribers_new RENAME TO subscribers;
CREATE INDEX subscribers_email ON subscribers (email);

-- New ids start above every id ever handed out that the store still remembers: those of
-- the subscribers kept, and those named by the ledger (a removed subscriber's rows).
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'subscribers', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'subscribers');
UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT max(id) FROM subscribers), 0),
                  coalesce((SELECT max(subscriber_id) FROM deliveries), 0))
    WHERE name = 'subscribers';
