-- When each subscriber's status last changed (issue 12: `lists export` shows it).
-- Existing rows: their last update is the best knowledge there is.
ALTER TABLE subscribers ADD COLUMN status_changed_at BIGINT NOT NULL DEFAULT 0;
UPDATE subscribers SET status_changed_at = updated_at;
