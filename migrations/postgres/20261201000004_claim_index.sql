-- Claims, polls and finishing in O(batch) however long the ledger grows (as SQLite's
-- 20261128000002_claim_indexes.sql), and a ledger table that vacuums itself in step
-- with the churn of a large send.
--
-- The rows waiting to be sent, already in claim order: the claim walks this index and
-- stops after its LIMIT instead of reading and sorting every queued row. Partial, so it
-- holds only waiting rows (sent rows leave it) and stays small.
CREATE INDEX deliveries_ready ON deliveries (priority DESC, next_attempt_at, id)
    WHERE status IN ('queued', 'retrying');
-- Rows being sent, by the end of their lease: expired leases are found at the start of
-- this index, and the next lease to end is its first row.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
-- A bulletin's unfinished rows (is it done?). Partial, so that an outcome (a row
-- leaving `sending` for good) adds no entry to it.
CREATE INDEX deliveries_unfinished ON deliveries (bulletin_id)
    WHERE status IN ('queued', 'sending', 'retrying', 'held');
-- Replaced by the three above; one index fewer to update on every status change.
DROP INDEX deliveries_due;
-- The few bulletins not yet done, which claims and polls filter by.
CREATE INDEX bulletins_active ON bulletins (state) WHERE state <> 'done';

-- Every claim and every outcome rewrites a ledger row, so a send of 100,000 leaves
-- 200,000 dead row versions behind. At the default scale factors (0.2 and 0.1 of the
-- table) autovacuum waits for a fifth of a large ledger to be dead before it runs, and
-- meanwhile the claim indexes fill with dead entries every claim must step over (one
-- instance fell from ~1,200 to 230 msg/s at 100,000 queued without a vacuum). At 0.02
-- it runs after 2 % of the table changed, and statistics are refreshed as often, so
-- the planner keeps seeing the partial indexes as small and keeps using them.
-- fillfactor 80 leaves a fifth of each page free, so a row's new version is written to
-- its own page: a HOT update (no index touched) when no indexed column changed, and
-- otherwise at least no new page; the cost is a quarter more pages for the table.
ALTER TABLE deliveries SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02
);
