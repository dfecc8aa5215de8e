-- As migrations/sqlite/20261201000003_wechat_reconcile.sql.
-- WeChat: the call in flight, recorded before it is made, so that an answer lost on the
-- way back (timeout, dropped connection, killed process) is reconciled with WeChat
-- instead of repeated; and the mass-send quota reserved when a notice is queued.

-- `draft_add` or `submit` while that call may have reached WeChat; NULL otherwise.
ALTER TABLE wechat_jobs ADD COLUMN step TEXT;
ALTER TABLE wechat_jobs ADD COLUMN step_started_at BIGINT;

-- One row per notice queued for WeChat: the mass send it will use, counted against
-- `wechat.mass_send_daily_quota` from the moment it is queued.
CREATE TABLE wechat_quota_reservations (
    bulletin_id BIGINT PRIMARY KEY REFERENCES bulletins (id),
    appid       TEXT NOT NULL,
    reserved_at BIGINT NOT NULL
);
CREATE INDEX wechat_quota_reservations_at ON wechat_quota_reservations (reserved_at);
