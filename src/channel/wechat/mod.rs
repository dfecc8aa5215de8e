//! The WeChat channel: one ledger row per bulletin (recipient `account:APPID`), delivered
//! in steps — images uploaded (remembered by content hash), draft created, then published
//! and polled, or mass-sent with a `clientmsgid` derived from the bulletin. Each step's
//! result is stored as it arrives, so a restarted daemon resumes with the same draft and
//! never mass-sends twice. Nothing outside this module knows WeChat's URLs or JSON.

pub mod client;

use super::{Channel, Job, Receipt, SendError};
use crate::clock::Clock;
use crate::config::{WechatConfig, WechatMode};
use crate::domain::ChannelKind;
use crate::render::WECHAT_CONTENT_MAX;
use crate::store::{ImageData, Store, WechatJob, WechatMedia};
use async_trait::async_trait;
use client::{id_string, ApiError, WechatClient};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The ledger recipient of an account-wide WeChat delivery.
pub fn account_recipient(appid: &str) -> String {
    format!("account:{appid}")
}

/// `media/uploadimg` takes JPEG or PNG under 1 MB (§3.1).
const UPLOADIMG_MAX: usize = 1024 * 1024;
/// `material/add_material?type=image` takes up to 10 MB (§3.2).
const MATERIAL_MAX: usize = 10 * 1024 * 1024;

/// What a mass send carries: a draft (an article) or a text (an urgent notice).
enum MassContent<'a> {
    Draft(&'a str),
    Text(&'a str),
}

enum Backend {
    Api(WechatClient),
    /// Writes the article and the calls it would make, for the demo and dry runs.
    Outbox(PathBuf),
}

/// Delivers bulletins to a WeChat official account.
pub struct WechatChannel {
    cfg: WechatConfig,
    backend: Backend,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cover: ImageData,
    id_tag: String,
}

impl std::fmt::Debug for WechatChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatChannel")
            .field("appid", &self.cfg.appid)
            .field("mode", &self.cfg.mode)
            .finish_non_exhaustive()
    }
}

impl WechatChannel {
    pub fn new(
        cfg: &WechatConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cover: ImageData,
        id_tag: String,
    ) -> Result<Self, String> {
        let backend = match (&cfg.outbox_dir, &cfg.secret) {
            (Some(dir), _) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    format!("cannot create the WeChat outbox {}: {e}", dir.display())
                })?;
                Backend::Outbox(dir.clone())
            }
            (None, Some(secret)) => Backend::Api(WechatClient::new(
                &cfg.api_base,
                &cfg.appid,
                secret.clone(),
                cfg.timeout,
                Some(store.clone()),
            )?),
            (None, None) => return Err("wechat: no AppSecret configured".into()),
        };
        Ok(Self {
            cfg: cfg.clone(),
            backend,
            store,
            clock,
            cover,
            id_tag,
        })
    }

    fn clientmsgid(&self, bulletin_id: i64) -> String {
        // ≤ 64 bytes (§7.1): the same for every retry of this bulletin on this store.
        format!("bulletin-{}-{}", self.id_tag, bulletin_id)
    }

    fn store_err(e: crate::store::StoreError) -> SendError {
        SendError::transient(format!("store: {e}"))
    }

    /// Uploads `image` once per content hash; returns the cached or new (media_id, url).
    async fn upload_once(
        &self,
        api: &WechatClient,
        image: &ImageData,
        kind: &str,
        what: &str,
    ) -> Result<WechatMedia, SendError> {
        if let Some(m) = self
            .store
            .wechat_media(api.appid(), &image.sha256, kind)
            .await
            .map_err(Self::store_err)?
        {
            return Ok(m);
        }
        let (limit, types, path, query): (usize, &[&str], &str, Vec<(&str, &str)>) =
            if kind == "uploadimg" {
                (
                    UPLOADIMG_MAX,
                    &["image/jpeg", "image/png"],
                    "/cgi-bin/media/uploadimg",
                    vec![],
                )
            } else {
                (
                    MATERIAL_MAX,
                    &["image/jpeg", "image/png", "image/gif"],
                    "/cgi-bin/material/add_material",
                    vec![("type", "image")],
                )
            };
        if !types.contains(&image.content_type.as_str()) || image.bytes.len() > limit {
            return Err(SendError::permanent(format!(
                "{what} {} is {} of {} bytes; WeChat's {} takes {} up to {} bytes",
                image.file,
                image.content_type,
                image.bytes.len(),
                path.rsplit('/').next().unwrap_or(path),
                types.join(", "),
                limit
            )));
        }
        let ext = match image.content_type.as_str() {
            "image/png" => "png",
            "image/gif" => "gif",
            _ => "jpg",
        };
        let v = api
            .upload(
                path,
                &query,
                &format!("image.{ext}"),
                &image.content_type,
                &image.bytes,
            )
            .await
            .map_err(|e| e.to_send_error(path))?;
        let media = WechatMedia {
            media_id: v.get("media_id").and_then(id_string),
            url: v.get("url").and_then(Value::as_str).map(str::to_string),
        };
        if kind == "uploadimg" && media.url.is_none()
            || kind == "material" && media.media_id.is_none()
        {
            return Err(SendError::transient(format!(
                "{path}: reply without the expected id: {v}"
            )));
        }
        self.store
            .save_wechat_media(api.appid(), &image.sha256, kind, &media, self.clock.now())
            .await
            .map_err(Self::store_err)?;
        Ok(media)
    }

    async fn save(&self, job: &WechatJob) -> Result<(), SendError> {
        self.store
            .save_wechat_job(job, self.clock.now())
            .await
            .map_err(Self::store_err)
    }

    async fn deliver_api(&self, api: &WechatClient, job: Job<'_>) -> Result<Receipt, SendError> {
        let b = job.bulletin;
        let article = b.wechat.as_ref().ok_or_else(|| {
            SendError::permanent(
                "the bulletin has no WeChat article (it was composed while WeChat was off)",
            )
        })?;
        let mut st = self
            .store
            .wechat_job(job.delivery.id)
            .await
            .map_err(Self::store_err)?
            .unwrap_or(WechatJob {
                delivery_id: job.delivery.id,
                ..Default::default()
            });

        if b.kind == "notice" {
            // An urgent notice: one text mass send to followers, no draft (§7.1 text variant).
            return self
                .mass_send(api, &mut st, MassContent::Text(&article.html), b.id)
                .await;
        }

        // Step 1: images and the draft (§3, §4.1).
        let draft = match &st.draft_media_id {
            Some(d) => d.clone(),
            None => {
                let mut content = article.html.clone();
                for (cid, image) in &b.images {
                    let m = self
                        .upload_once(api, image, "uploadimg", &format!("image of record ({cid})"))
                        .await?;
                    content = content
                        .replace(&format!("cid:{cid}"), m.url.as_deref().unwrap_or_default());
                }
                let n = content.chars().count();
                if n >= WECHAT_CONTENT_MAX {
                    return Err(SendError::permanent(format!(
                        "the article is {n} characters; WeChat takes under {WECHAT_CONTENT_MAX}"
                    )));
                }
                let cover_image = b.images.first().map(|(_, i)| i).unwrap_or(&self.cover);
                let cover = self
                    .upload_once(api, cover_image, "material", "cover image")
                    .await?;
                let thumb = cover.media_id.unwrap_or_default();
                let body = json!({"articles": [{
                    "title": article.title,
                    "author": article.author,
                    "digest": article.digest,
                    "content": content,
                    "thumb_media_id": thumb,
                    "need_open_comment": 0,
                    "only_fans_can_comment": 0,
                }]});
                let v = api
                    .post_json("/cgi-bin/draft/add", &body)
                    .await
                    .map_err(|e| e.to_send_error("draft/add"))?;
                let id = v.get("media_id").and_then(id_string).ok_or_else(|| {
                    SendError::transient(format!("draft/add: reply without media_id: {v}"))
                })?;
                st.draft_media_id = Some(id.clone());
                st.thumb_media_id = Some(thumb);
                self.save(&st).await?;
                tracing::info!(bulletin = b.id, draft = %id, "WeChat draft created");
                id
            }
        };

        match self.cfg.mode {
            WechatMode::Draft => Ok(Receipt {
                code: Some(0),
                reply: format!(
                    "draft created (media_id {draft}); publish it in the WeChat back office"
                ),
                message_id: Some(draft),
            }),
            WechatMode::Publish => self.publish(api, &mut st, &draft).await,
            WechatMode::MassSend => {
                self.mass_send(api, &mut st, MassContent::Draft(&draft), b.id)
                    .await
            }
        }
    }

    /// Step 2a: submit once, then poll until a final status (§5.1, §5.2).
    async fn publish(
        &self,
        api: &WechatClient,
        st: &mut WechatJob,
        draft: &str,
    ) -> Result<Receipt, SendError> {
        let publish_id = match &st.publish_id {
            Some(p) => p.clone(),
            None => {
                let v = api
                    .post_json("/cgi-bin/freepublish/submit", &json!({ "media_id": draft }))
                    .await
                    .map_err(|e| e.to_send_error("freepublish/submit"))?;
                let id = v.get("publish_id").and_then(id_string).ok_or_else(|| {
                    SendError::transient(format!(
                        "freepublish/submit: reply without publish_id: {v}"
                    ))
                })?;
                st.publish_id = Some(id.clone());
                st.first_poll_at = Some(self.clock.now());
                self.save(st).await?;
                id
            }
        };
        let v = api
            .post_json(
                "/cgi-bin/freepublish/get",
                &json!({ "publish_id": publish_id }),
            )
            .await
            .map_err(|e| e.to_send_error("freepublish/get"))?;
        let status = v
            .get("publish_status")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        st.polls += 1;
        st.publish_status = Some(status);
        let meaning = match status {
            0 => "published",
            1 => "publishing",
            2 => "originality check failed",
            3 => "publishing failed",
            4 => "rejected by platform review",
            5 => "published, then deleted by the account",
            6 => "published, then banned by the platform",
            _ => "unknown status",
        };
        match status {
            0 => {
                st.article_id = v.get("article_id").and_then(id_string);
                st.article_url = v
                    .pointer("/article_detail/item/0/article_url")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.save(st).await?;
                Ok(Receipt {
                    code: Some(0),
                    reply: format!(
                        "published: {} (article_id {})",
                        st.article_url.as_deref().unwrap_or("no URL returned"),
                        st.article_id.as_deref().unwrap_or("?")
                    ),
                    message_id: st.article_id.clone(),
                })
            }
            1 => {
                self.save(st).await?;
                let started = st.first_poll_at.unwrap_or_else(|| self.clock.now());
                let waited = (self.clock.now() - started).to_std().unwrap_or_default();
                if waited > self.cfg.poll_timeout {
                    return Err(SendError::permanent(format!(
                        "publish_id {publish_id} still publishing after {} minutes; check the WeChat back office",
                        waited.as_secs() / 60
                    )));
                }
                Err(SendError::pending(
                    format!(
                        "publish_id {publish_id}: publishing (status 1), poll {}",
                        st.polls
                    ),
                    self.cfg.poll_interval,
                ))
            }
            _ => {
                self.save(st).await?;
                let fail_idx = v.get("fail_idx").cloned().unwrap_or(Value::Null);
                let mut e = SendError::permanent(format!(
                    "publish_id {publish_id}: status {status}: {meaning}{}",
                    if matches!(status, 2 | 4) {
                        format!(" (fail_idx {fail_idx})")
                    } else {
                        String::new()
                    }
                ));
                e.code = Some(status);
                Err(e)
            }
        }
    }

    /// Step 2b: one mass send, deduplicated by `clientmsgid` (§7.1): 45065 means WeChat
    /// already has it, with its msg_id.
    async fn mass_send(
        &self,
        api: &WechatClient,
        st: &mut WechatJob,
        content: MassContent<'_>,
        bulletin: i64,
    ) -> Result<Receipt, SendError> {
        if let Some(msg_id) = &st.msg_id {
            return Ok(Receipt {
                code: Some(0),
                reply: format!("mass send already submitted (msg_id {msg_id})"),
                message_id: Some(msg_id.clone()),
            });
        }
        let filter = match self.cfg.mass_send_tag {
            Some(tag) => json!({ "is_to_all": false, "tag_id": tag }),
            None => json!({ "is_to_all": true }),
        };
        let body = match content {
            MassContent::Draft(draft) => json!({
                "filter": filter,
                "mpnews": { "media_id": draft },
                "msgtype": "mpnews",
                "send_ignore_reprint": 0,
                "clientmsgid": self.clientmsgid(bulletin),
            }),
            MassContent::Text(text) => json!({
                "filter": filter,
                "text": { "content": text },
                "msgtype": "text",
                "clientmsgid": self.clientmsgid(bulletin),
            }),
        };
        let (v, dedup) = match api.post_json("/cgi-bin/message/mass/sendall", &body).await {
            Ok(v) => (v, false),
            Err(ApiError::Wechat {
                errcode: 45065,
                body,
                ..
            }) => (body, true),
            Err(e) => return Err(e.to_send_error("message/mass/sendall")),
        };
        st.msg_id = v.get("msg_id").and_then(id_string);
        st.msg_data_id = v.get("msg_data_id").and_then(id_string);
        self.save(st).await?;
        Ok(Receipt {
            code: Some(if dedup { 45065 } else { 0 }),
            reply: if dedup {
                format!(
                    "WeChat already had this mass send (clientmsgid {}), msg_id {}",
                    self.clientmsgid(bulletin),
                    st.msg_id.as_deref().unwrap_or("?")
                )
            } else {
                format!(
                    "mass send submitted (msg_id {})",
                    st.msg_id.as_deref().unwrap_or("?")
                )
            },
            message_id: st.msg_id.clone(),
        })
    }

    /// Outbox mode: the article HTML and the JSON of each call that would be made.
    async fn deliver_outbox(
        &self,
        dir: &std::path::Path,
        job: Job<'_>,
    ) -> Result<Receipt, SendError> {
        let b = job.bulletin;
        let article = b
            .wechat
            .as_ref()
            .ok_or_else(|| SendError::permanent("the bulletin has no WeChat article"))?;
        if b.kind != "notice" {
            // What draft/add would refuse is a failure here too, not `sent`.
            crate::render::check_wechat_limits(article).map_err(SendError::permanent)?;
        }
        let folder = dir.join(format!("bulletin-{}", b.id));
        let io = |e: std::io::Error| {
            SendError::transient(format!("WeChat outbox {}: {e}", folder.display()))
        };
        std::fs::create_dir_all(&folder).map_err(io)?;
        std::fs::write(folder.join("article.html"), &article.html).map_err(io)?;
        if b.kind == "notice" {
            std::fs::write(folder.join("notice.txt"), &article.html).map_err(io)?;
            let calls = json!([
                {"call": "POST /cgi-bin/stable_token", "body": {"grant_type": "client_credential", "appid": self.cfg.appid, "secret": "[AppSecret]", "force_refresh": false}},
                {"call": "POST /cgi-bin/message/mass/sendall?access_token=[token]", "body": {
                    "filter": {"is_to_all": self.cfg.mass_send_tag.is_none(), "tag_id": self.cfg.mass_send_tag},
                    "text": {"content": article.html}, "msgtype": "text", "clientmsgid": self.clientmsgid(b.id)}},
            ]);
            let text = serde_json::to_string_pretty(&calls).expect("JSON");
            std::fs::write(folder.join("calls.json"), text).map_err(io)?;
            return Ok(Receipt {
                code: None,
                reply: format!("written to the WeChat outbox {}", folder.display()),
                message_id: None,
            });
        }
        let mut calls = vec![json!({
            "call": "POST /cgi-bin/stable_token",
            "body": {"grant_type": "client_credential", "appid": self.cfg.appid, "secret": "[AppSecret]", "force_refresh": false}
        })];
        for (cid, image) in &b.images {
            calls.push(json!({"call": "POST /cgi-bin/media/uploadimg?access_token=[token]", "multipart": {"media": image.file}, "replaces": format!("cid:{cid}")}));
        }
        let cover = b.images.first().map(|(_, i)| i).unwrap_or(&self.cover);
        calls.push(json!({"call": "POST /cgi-bin/material/add_material?type=image&access_token=[token]", "multipart": {"media": cover.file}}));
        calls.push(json!({"call": "POST /cgi-bin/draft/add?access_token=[token]", "body": {"articles": [{
            "title": article.title, "author": article.author, "digest": article.digest,
            "content": "[article.html, image URLs from uploadimg]", "thumb_media_id": "[cover media_id]",
            "need_open_comment": 0, "only_fans_can_comment": 0}]}}));
        match self.cfg.mode {
            WechatMode::Draft => {}
            WechatMode::Publish => {
                calls.push(json!({"call": "POST /cgi-bin/freepublish/submit?access_token=[token]", "body": {"media_id": "[draft media_id]"}}));
                calls.push(json!({"call": "POST /cgi-bin/freepublish/get?access_token=[token]", "body": {"publish_id": "[publish_id]"}, "repeat": "until publish_status != 1"}));
            }
            WechatMode::MassSend => calls.push(json!({"call": "POST /cgi-bin/message/mass/sendall?access_token=[token]", "body": {
                "filter": {"is_to_all": self.cfg.mass_send_tag.is_none(), "tag_id": self.cfg.mass_send_tag},
                "mpnews": {"media_id": "[draft media_id]"}, "msgtype": "mpnews", "send_ignore_reprint": 0,
                "clientmsgid": self.clientmsgid(b.id)}})),
        }
        let text = serde_json::to_string_pretty(&calls).expect("JSON");
        std::fs::write(folder.join("calls.json"), text).map_err(io)?;
        Ok(Receipt {
            code: None,
            reply: format!("written to the WeChat outbox {}", folder.display()),
            message_id: None,
        })
    }
}

#[async_trait]
impl Channel for WechatChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Wechat
    }

    fn concurrency(&self) -> usize {
        2
    }

    fn token_refreshes(&self) -> u64 {
        match &self.backend {
            Backend::Api(c) => c.token_refreshes(),
            Backend::Outbox(_) => 0,
        }
    }

    async fn deliver(&self, job: Job<'_>) -> Result<Receipt, SendError> {
        match &self.backend {
            Backend::Api(api) => self.deliver_api(api, job).await,
            Backend::Outbox(dir) => self.deliver_outbox(dir, job).await,
        }
    }
}
