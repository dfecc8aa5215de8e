-- Indexes that keep a pass O(batch) however long the ledger grows:
-- the rows ready to send, already in claim order (a partial index: only waiting rows);
-- rows whose lease may expire; and a bulletin's rows by status (finishing, counting).
CREATE INDEX deliveries_ready ON deliveries (priority DESC, next_attempt_at, id)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_bulletin_status ON deliveries (bulletin_id, status);
DROP INDEX deliveries_due;
