-- Issue 15: a received message is kept once. The same message ingested twice (by the
-- MTA's pipe and from the IMAP mailbox, or a pipe the MTA retried) has the same key: its
-- own Message-ID (`mid:<id>`), which the MTA that wrote a DSN or report sets and which
-- survives the trace headers each way in adds; without one, the SHA-256 of its bytes
-- (`sha256:<hex>`). A webhook event's key is `webhook:<event id, else signature>`, so a
-- replay is refused by this index, across restarts and by every instance. Rows from
-- before have no key (NULL: never equal to another).
ALTER TABLE bounces ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX bounces_dedupe_key ON bounces (dedupe_key);
