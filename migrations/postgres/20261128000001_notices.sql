-- Urgent notices (as migrations/sqlite/20261128000001_notices.sql).

ALTER TABLE bulletins ADD COLUMN severity TEXT;
ALTER TABLE bulletins ADD COLUMN triggered_by TEXT;
-- An operator's idempotency key: one notice per key, ever.
ALTER TABLE bulletins ADD COLUMN idempotency_key TEXT;
-- sha256 of (title, body, severity, lists): the same notice within the window is not resent.
ALTER TABLE bulletins ADD COLUMN content_key TEXT;
CREATE UNIQUE INDEX bulletins_idempotency ON bulletins (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX bulletins_content_key ON bulletins (content_key, created_at) WHERE content_key IS NOT NULL;
