-- Named users, their sessions and the audit log (issue 17).
--
-- A user has a role, an Argon2id password hash (PHC string) and at most one personal
-- API token, kept as its SHA-256 (the token is 256 random bits: a fast hash is enough,
-- and a lookup by hash needs one). A session is a random 256-bit id kept as its SHA-256,
-- with an expiry; user_id NULL is the bootstrap administrator (the admin token).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    token_hash    TEXT UNIQUE,
    disabled_at   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every state-changing action a person performed: who, when, what, on which object,
-- with the object's state before and after where it applies (JSON text).
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, at);

-- A record sent back to its editor keeps the approver's comment until it is approved.
ALTER TABLE records ADD COLUMN review_comment TEXT;
ALTER TABLE records ADD COLUMN reviewed_by TEXT;
ALTER TABLE records ADD COLUMN reviewed_at INTEGER;
