-- The WeChat access token, shared by every instance on this store: one fetch serves all,
-- so instances do not refresh behind each other's backs (reference §2.1, §2.5).
CREATE TABLE wechat_tokens (
    appid      TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    refresh_at INTEGER NOT NULL,
    fetched_at INTEGER NOT NULL
);
