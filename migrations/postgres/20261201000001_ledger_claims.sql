-- The ledger learns which process claimed a row (`claimed_by`: host, pid and claim
-- generation) and how many attempts ended without a final reply although the message
-- may have been delivered (`unconfirmed`); a row at its limit of those ends in the new
-- status `unconfirmed` ("may have been delivered"), never `failed`.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN unconfirmed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN
    ('queued', 'sending', 'sent', 'retrying', 'failed', 'suppressed', 'held', 'unconfirmed'));
