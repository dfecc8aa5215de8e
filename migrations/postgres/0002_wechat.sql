-- WeChat channel (as migrations/sqlite/0002_wechat.sql): the article snapshot per bulletin,
-- resumable step state per ledger row, uploads remembered by content hash.

ALTER TABLE bulletins ADD COLUMN wechat_json TEXT;

CREATE TABLE wechat_jobs (
    delivery_id    BIGINT PRIMARY KEY REFERENCES deliveries (id),
    draft_media_id TEXT,
    thumb_media_id TEXT,
    publish_id     TEXT,
    publish_status BIGINT,
    article_id     TEXT,
    article_url    TEXT,
    msg_id         TEXT,
    msg_data_id    TEXT,
    first_poll_at  BIGINT,
    polls          BIGINT NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE wechat_media (
    appid      TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('uploadimg', 'material')),
    media_id   TEXT,
    url        TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (appid, sha256, kind)
);
