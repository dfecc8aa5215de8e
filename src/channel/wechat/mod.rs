//! The WeChat channel: one ledger row per bulletin (recipient `account:APPID`), delivered
//! in steps — images uploaded (remembered by content hash), draft created, then published
//! and polled, or mass-sent with a `clientmsgid` derived from the bulletin. Each step's
//! result is stored as it arrives, so a restarted daemon resumes with the same draft and
//! never mass-sends twice. The two calls WeChat offers no idempotency for (`draft/add`,
//! `freepublish/submit`) are recorded as started before they are made; when the answer
//! is lost (timeout, dropped connection, killed process) the next attempt reconciles
//! with WeChat (draft box, published articles) before it repeats anything. Uploads are
//! made once per content hash, one at a time per hash. Nothing outside this module knows
//! WeChat's URLs or JSON.

pub mod client;

use super::{Channel, Job, Receipt, SendError};
use crate::clock::Clock;
use crate::config::{WechatConfig, WechatMode};
use crate::domain::ChannelKind;
use crate::domain::WechatArticle;
use crate::render::WECHAT_CONTENT_MAX;
use crate::store::{BulletinKind, ImageData, Store, WechatJob, WechatMedia};
use async_trait::async_trait;
use client::{id_string, ClientBuildError, WechatApiError, WechatClient};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the WeChat channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WechatSetupError {
    #[error("cannot create the WeChat outbox {}: {source}", dir.display())]
    Outbox {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error("wechat: no AppSecret configured")]
    NoSecret,
}

/// `media/uploadimg` takes JPEG or PNG under 1 MB: at most 1,048,575 bytes (§3.1).
const UPLOADIMG_MAX: usize = 1024 * 1024 - 1;
/// `material/add_material?type=image` takes up to 10 MB (§3.2).
const MATERIAL_MAX: usize = 10 * 1024 * 1024;

/// The step recorded while `draft/add` may have reached WeChat.
const STEP_DRAFT_ADD: &str = "draft_add";
/// The step recorded while `freepublish/submit` may have reached WeChat.
const STEP_SUBMIT: &str = "submit";
/// Pages of 20 read from the draft box or the published list when looking for our
/// article after a lost answer (the newest 100).
const RECONCILE_PAGES: u64 = 5;

/// How an image is used in an article, and what WeChat takes for that use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUse {
    /// Inside the article body: `media/uploadimg`, JPEG or PNG under 1 MB (§3.1).
    Body,
    /// The article's cover: `material/add_material?type=image`, PNG, JPEG or GIF (BMP
    /// too, which the importer does not take) up to 10 MB (§3.2).
    Cover,
}

impl ImageUse {
    fn limits(self) -> (usize, &'static [&'static str], &'static str) {
        match self {
            Self::Body => (
                UPLOADIMG_MAX,
                &["image/jpeg", "image/png"],
                "media/uploadimg",
            ),
            Self::Cover => (
                MATERIAL_MAX,
                &["image/jpeg", "image/png", "image/gif"],
                "material/add_material",
            ),
        }
    }
}

/// Why WeChat would refuse this image for this use, if it would: the one check made at
/// import, at approval for a WeChat schedule, and before an upload.
pub fn image_refusal(
    file: &str,
    content_type: &str,
    len: usize,
    used_as: ImageUse,
) -> Option<String> {
    let (limit, types, call) = used_as.limits();
    if !types.contains(&content_type) {
        return Some(format!(
            "{file} is {content_type}; WeChat's {call} takes {} only",
            types.join(", ")
        ));
    }
    if len > limit {
        return Some(format!(
            "{file} is {len} bytes; WeChat's {call} takes at most {limit} bytes"
        ));
    }
    None
}

/// A record's images go into the article body and the first one is its cover: the
/// stricter body limits apply to all of them. `(index, problem)` for each refused one.
pub fn record_image_refusals<'a>(
    images: impl IntoIterator<Item = (&'a str, &'a str, usize)>,
) -> Vec<(usize, String)> {
    images
        .into_iter()
        .enumerate()
        .filter_map(|(i, (file, ct, len))| {
            image_refusal(file, ct, len, ImageUse::Body).map(|m| (i, m))
        })
        .collect()
}

/// At approval: why WeChat would refuse the record's images, when WeChat is configured
/// and a schedule delivers to it (records imported before WeChat was set up were not
/// checked then). One line naming each refused image.
pub async fn approval_refusal(
    config: &crate::config::Config,
    store: &dyn Store,
    record_id: &str,
) -> Result<Option<String>, crate::store::StoreError> {
    let to_wechat = config.wechat.is_some()
        && config
            .schedules
            .iter()
            .any(|s| s.channels.contains(&ChannelKind::Wechat));
    if !to_wechat {
        return Ok(None);
    }
    let images = store.record_images(record_id).await?;
    let refused = record_image_refusals(
        images
            .iter()
            .map(|im| (im.file.as_str(), im.content_type.as_str(), im.bytes.len())),
    );
    if refused.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "record `{record_id}` goes to WeChat, which would refuse {}: replace the image(s) and import the record again",
        refused
            .iter()
            .map(|(i, why)| format!("images[{}].file ({why})", i + 1))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// The next reset of WeChat's daily quotas: midnight China time (UTC+8; reference §11,
/// which notes the timezone is not confirmed).
fn next_quota_reset(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let local = now.with_timezone(&cst);
    let midnight = (local.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    midnight
        .and_local_timezone(cst)
        .single()
        .expect("fixed offset")
        .with_timezone(&chrono::Utc)
}

/// What reconciling a lost `freepublish/submit` found.
enum Reconciled {
    /// The article is published: done.
    Published(Receipt),
    /// Not known yet (a publish may still be in progress): wait.
    Wait(SendError),
    /// WeChat did not take it: submit again.
    NotTaken,
}

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
    /// One upload at a time per (content hash, kind): concurrent deliveries of several
    /// bulletins wait for the first and then find its media in the store.
    uploads: tokio::sync::Mutex<HashMap<(String, &'static str), UploadFlight>>,
    /// Deliveries inside the channel at once, at most `concurrency()`.
    calls: tokio::sync::Semaphore,
}

/// Held while one upload of a (content hash, kind) is made.
type UploadFlight = Arc<tokio::sync::Mutex<()>>;

/// Deliveries the WeChat channel runs at once (each makes its calls one after another).
const CONCURRENCY: usize = 2;

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
    ) -> Result<Self, WechatSetupError> {
        let backend = match (&cfg.outbox_dir, &cfg.secret) {
            (Some(dir), _) => {
                std::fs::create_dir_all(dir).map_err(|source| WechatSetupError::Outbox {
                    dir: dir.clone(),
                    source,
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
            (None, None) => return Err(WechatSetupError::NoSecret),
        };
        Ok(Self {
            cfg: cfg.clone(),
            backend,
            store,
            clock,
            cover,
            id_tag,
            uploads: Default::default(),
            calls: tokio::sync::Semaphore::new(CONCURRENCY),
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
    /// Concurrent callers with the same bytes wait for one upload.
    async fn upload_once(
        &self,
        api: &WechatClient,
        image: &ImageData,
        used_as: ImageUse,
        what: &str,
    ) -> Result<WechatMedia, SendError> {
        let kind = match used_as {
            ImageUse::Body => "uploadimg",
            ImageUse::Cover => "material",
        };
        let key = (image.sha256.clone(), kind);
        let flight = self
            .uploads
            .lock()
            .await
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _one_at_a_time = flight.lock().await;
            self.upload_locked(api, image, used_as, what, kind).await
        };
        // Forget the hash once nobody else waits on it (others clone under this lock).
        let mut uploads = self.uploads.lock().await;
        if Arc::strong_count(&flight) == 2 {
            uploads.remove(&key);
        }
        result
    }

    /// `upload_once` with the hash's lock held: the store's cache, a lost cover upload
    /// looked up, or the upload.
    async fn upload_locked(
        &self,
        api: &WechatClient,
        image: &ImageData,
        used_as: ImageUse,
        what: &str,
        kind: &'static str,
    ) -> Result<WechatMedia, SendError> {
        let ext = match image.content_type.as_str() {
            "image/png" => "png",
            "image/gif" => "gif",
            _ => "jpg",
        };
        // The file name WeChat keeps with a permanent material: how we recognise our
        // cover in the material list after an upload whose answer was lost.
        let name = format!(
            "bulletin-{}.{ext}",
            image.sha256.get(..16).unwrap_or(&image.sha256)
        );
        match self
            .store
            .wechat_media(api.appid(), &image.sha256, kind)
            .await
            .map_err(Self::store_err)?
        {
            Some(m) if m.media_id.is_some() || m.url.is_some() => return Ok(m),
            // An add_material started and its answer lost: WeChat may have it.
            Some(_) => {
                if let Some(m) = self.find_material(api, &name).await? {
                    tracing::warn!(file = %image.file, media_id = ?m.media_id, "the answer to add_material was lost, but WeChat has the image: using it");
                    self.store
                        .save_wechat_media(api.appid(), &image.sha256, kind, &m, self.clock.now())
                        .await
                        .map_err(Self::store_err)?;
                    return Ok(m);
                }
            }
            None => {}
        }
        if let Some(why) =
            image_refusal(&image.file, &image.content_type, image.bytes.len(), used_as)
        {
            return Err(SendError::permanent(format!("{what}: {why}")));
        }
        let (path, query): (&str, Vec<(&str, &str)>) = match used_as {
            ImageUse::Body => ("/cgi-bin/media/uploadimg", vec![]),
            ImageUse::Cover => ("/cgi-bin/material/add_material", vec![("type", "image")]),
        };
        if used_as == ImageUse::Cover {
            // "Started": no ids yet (see the match above).
            let started = WechatMedia {
                media_id: None,
                url: None,
            };
            self.store
                .save_wechat_media(api.appid(), &image.sha256, kind, &started, self.clock.now())
                .await
                .map_err(Self::store_err)?;
        }
        let v = match api
            .upload(path, &query, &name, &image.content_type, &image.bytes)
            .await
        {
            Ok(v) => v,
            Err(e) if e.may_have_reached() && used_as == ImageUse::Cover => {
                let mut err = self.send_err(&e, path);
                err.message.push_str(
                    "; WeChat may have the image: the next attempt looks for it among the permanent materials before uploading it again",
                );
                return Err(err);
            }
            Err(e) => return Err(self.send_err(&e, path)),
        };
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

    /// An API error as the ledger takes it, with advice for the configured mode, and the
    /// quota errcodes as a wait until WeChat's daily reset (no attempt spent).
    fn send_err(&self, e: &WechatApiError, call: &str) -> SendError {
        let call = call.trim_start_matches("/cgi-bin/");
        let mut err = e.to_send_error(call);
        match e.errcode() {
            Some(code @ (45009 | 45028)) => {
                let now = self.clock.now();
                let reset = next_quota_reset(now);
                let what = if code == 45009 {
                    "the daily API quota is used up"
                } else {
                    "no mass-send quota is left"
                };
                let mut w = SendError::pending(
                    format!(
                        "{call}: WeChat errcode {code}: {what}; waiting for the quota to reset at {} (midnight China time)",
                        reset.format("%Y-%m-%d %H:%M UTC")
                    ),
                    (reset - now).to_std().unwrap_or(Duration::from_secs(3600)),
                );
                w.code = Some(code);
                err = w;
            }
            Some(48001) => {
                let advice = match self.cfg.mode {
                    WechatMode::Draft => {
                        " — this account may not use this API; check its type and permissions in the MP console"
                    }
                    WechatMode::Publish => {
                        " — publishing by API needs a verified account; set wechat.mode = \"draft\" and publish the drafts in the WeChat back office"
                    }
                    WechatMode::MassSend => {
                        " — mass sending by API needs a verified account; set wechat.mode = \"draft\" and send from the WeChat back office"
                    }
                };
                if let WechatApiError::Wechat { errmsg, .. } = e {
                    err.message = format!("{call}: WeChat errcode 48001: {errmsg}{advice}");
                }
            }
            _ => {}
        }
        err
    }

    /// A call whose answer was lost: the row waits (no attempt spent) and is flagged as
    /// possibly delivered until WeChat is asked.
    fn lost_answer(&self, e: &WechatApiError, call: &str, what: &str) -> SendError {
        let mut w = SendError::pending(
            format!(
                "{call}: {}; {what}",
                e.to_send_error(call)
                    .message
                    .trim_start_matches(&format!("{call}: "))
            ),
            self.cfg.poll_interval,
        );
        w.maybe_delivered = true;
        w
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

        if b.kind == BulletinKind::Notice {
            // An urgent notice: one text mass send to followers, no draft (§7.1 text variant).
            return self
                .mass_send(api, &mut st, MassContent::Text(&article.html), b.id)
                .await;
        }

        // A publish that ended in failure (2, 3, 4) is being retried by an operator
        // (`bulletin retry`): submit again, with a new draft if the old one is gone.
        if self.cfg.mode == WechatMode::Publish
            && st.publish_id.is_some()
            && matches!(st.publish_status, Some(2..=4))
        {
            tracing::info!(delivery = st.delivery_id, publish_id = ?st.publish_id, status = ?st.publish_status, "WeChat publish failed before; submitting again");
            st.publish_id = None;
            st.publish_status = None;
            st.first_poll_at = None;
            st.polls = 0;
            if let Some(d) = &st.draft_media_id {
                if !self.draft_exists(api, d).await? {
                    st.draft_media_id = None;
                    st.thumb_media_id = None;
                }
            }
            self.save(&st).await?;
        }

        // Step 1: images and the draft (§3, §4.1).
        let draft = match &st.draft_media_id {
            Some(d) => d.clone(),
            None => {
                let mut content = article.html.clone();
                for (cid, image) in &b.images {
                    let m = self
                        .upload_once(
                            api,
                            image,
                            ImageUse::Body,
                            &format!("image of record ({cid})"),
                        )
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
                    .upload_once(api, cover_image, ImageUse::Cover, "cover image")
                    .await?;
                let thumb = cover.media_id.unwrap_or_default();
                // A draft/add whose answer was lost: adopt the draft if WeChat made it.
                let found = if st.step.as_deref() == Some(STEP_DRAFT_ADD) {
                    self.find_draft(api, st.delivery_id, article, &content)
                        .await?
                } else {
                    None
                };
                let id = match found {
                    Some(id) => {
                        tracing::warn!(delivery = st.delivery_id, draft = %id, "the answer to draft/add was lost, but WeChat made the draft: using it");
                        id
                    }
                    None => {
                        let mut body = json!({"articles": [{
                            "title": article.title,
                            "author": article.author,
                            "digest": article.digest,
                            "content": content,
                            "thumb_media_id": thumb,
                            "need_open_comment": 0,
                            "only_fans_can_comment": 0,
                        }]});
                        if let Some(u) = b.version_for(Some(&self.cfg.language)).web_url {
                            // "Read original" (阅读原文): the web version of the version
                            // the account publishes (`wechat.language`).
                            body["articles"][0]["content_source_url"] = json!(u);
                        }
                        st.step = Some(STEP_DRAFT_ADD.into());
                        st.step_started_at = Some(self.clock.now());
                        self.save(&st).await?;
                        let v = match api.post_json("/cgi-bin/draft/add", &body).await {
                            Ok(v) => v,
                            Err(e) if e.may_have_reached() => {
                                // Not live (a draft is not published): an ordinary retry,
                                // which looks in the draft box first.
                                let mut err = self.send_err(&e, "draft/add");
                                err.message.push_str(
                                    "; WeChat may have made the draft: the next attempt looks for it in the draft box before adding it again",
                                );
                                err.retry_after = Some(self.cfg.poll_interval);
                                return Err(err);
                            }
                            Err(e) => {
                                st.step = None;
                                st.step_started_at = None;
                                self.save(&st).await?;
                                return Err(self.send_err(&e, "draft/add"));
                            }
                        };
                        v.get("media_id").and_then(id_string).ok_or_else(|| {
                            SendError::transient(format!("draft/add: reply without media_id: {v}"))
                        })?
                    }
                };
                st.draft_media_id = Some(id.clone());
                st.thumb_media_id = Some(thumb);
                st.step = None;
                st.step_started_at = None;
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
            WechatMode::Publish => self.publish(api, &mut st, &draft, article).await,
            WechatMode::MassSend => {
                self.mass_send(api, &mut st, MassContent::Draft(&draft), b.id)
                    .await
            }
        }
    }

    /// Step 2a: submit once, then poll until a final status (§5.1, §5.2). A submit
    /// whose answer was lost is reconciled first (`reconcile_submit`).
    async fn publish(
        &self,
        api: &WechatClient,
        st: &mut WechatJob,
        draft: &str,
        article: &WechatArticle,
    ) -> Result<Receipt, SendError> {
        let publish_id = match &st.publish_id {
            Some(p) => p.clone(),
            None => {
                if st.step.as_deref() == Some(STEP_SUBMIT) {
                    match self.reconcile_submit(api, st, draft, article).await? {
                        Reconciled::Published(r) => return Ok(r),
                        Reconciled::Wait(e) => return Err(e),
                        Reconciled::NotTaken => {}
                    }
                }
                st.step = Some(STEP_SUBMIT.into());
                st.step_started_at = Some(self.clock.now());
                self.save(st).await?;
                let v = match api
                    .post_json("/cgi-bin/freepublish/submit", &json!({ "media_id": draft }))
                    .await
                {
                    Ok(v) => v,
                    Err(e) if e.may_have_reached() => {
                        return Err(self.lost_answer(
                            &e,
                            "freepublish/submit",
                            "the article may be published: WeChat is asked (draft box, published articles) before it is submitted again",
                        ));
                    }
                    Err(e) => {
                        st.step = None;
                        st.step_started_at = None;
                        self.save(st).await?;
                        return Err(self.send_err(&e, "freepublish/submit"));
                    }
                };
                let id = v.get("publish_id").and_then(id_string).ok_or_else(|| {
                    SendError::transient(format!(
                        "freepublish/submit: reply without publish_id: {v}"
                    ))
                })?;
                st.publish_id = Some(id.clone());
                st.first_poll_at = Some(self.clock.now());
                st.step = None;
                st.step_started_at = None;
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
            .map_err(|e| self.send_err(&e, "freepublish/get"))?;
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

    /// After a `freepublish/submit` whose answer was lost: the draft leaves the draft box
    /// once published (§4.4), and the article is then listed by `freepublish/batchget`
    /// (§5.4). A publish still in progress leaves the draft in the box and is not listed
    /// yet, so "not taken" is concluded only once `wechat.publish_settle_minutes` have
    /// passed since the lost call with the draft still there and no matching article.
    async fn reconcile_submit(
        &self,
        api: &WechatClient,
        st: &mut WechatJob,
        draft: &str,
        article: &WechatArticle,
    ) -> Result<Reconciled, SendError> {
        let now = self.clock.now();
        let started = st.step_started_at.unwrap_or(now);
        let settled = (now - started).to_std().unwrap_or_default() >= self.cfg.publish_settle;
        if let Some((article_id, url)) = self.find_article(api, st.delivery_id, article).await? {
            st.publish_status = Some(0);
            st.article_id = Some(article_id.clone());
            st.article_url = url;
            st.step = None;
            st.step_started_at = None;
            self.save(st).await?;
            tracing::warn!(delivery = st.delivery_id, article_id = %article_id, "the answer to freepublish/submit was lost, but the article is published: not submitting again");
            return Ok(Reconciled::Published(Receipt {
                code: Some(0),
                reply: format!(
                    "published: {} (article_id {article_id}; found after the answer to freepublish/submit was lost)",
                    st.article_url.as_deref().unwrap_or("no URL returned"),
                ),
                message_id: Some(article_id),
            }));
        }
        let draft_there = self.draft_exists(api, draft).await?;
        let wait = |why: String| {
            let mut e = SendError::pending(why, self.cfg.poll_interval);
            e.maybe_delivered = true;
            Reconciled::Wait(e)
        };
        if !draft_there {
            // Published (the draft left the box) but not listed yet, or deleted by hand.
            if settled {
                // Given up: a `bulletin retry` starts over with a new draft (the
                // operator checked the back office first, as the message says).
                st.step = None;
                st.step_started_at = None;
                st.draft_media_id = None;
                st.thumb_media_id = None;
                self.save(st).await?;
                let mut e = SendError::permanent(format!(
                    "draft {draft} left the draft box after a freepublish/submit whose answer was lost, \
                     and no published article matches it: it may be published; check the WeChat back office"
                ));
                e.maybe_delivered = true;
                return Ok(Reconciled::Wait(e));
            }
            return Ok(wait(format!(
                "freepublish/submit answer lost: draft {draft} left the draft box (published?); waiting for the article to be listed"
            )));
        }
        if !settled {
            return Ok(wait(format!(
                "freepublish/submit answer lost: draft {draft} is still in the draft box and no article matches yet; \
                 a publish may be in progress, so it is not submitted again before {}",
                (started + chrono::Duration::from_std(self.cfg.publish_settle).unwrap_or_default())
                    .format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        tracing::warn!(delivery = st.delivery_id, draft = %draft, "WeChat did not take the freepublish/submit whose answer was lost (draft still there, no article after the settle time): submitting again");
        Ok(Reconciled::NotTaken)
    }

    /// Whether the draft is still in the draft box (`draft/get`, §4.2; 40007 once gone).
    async fn draft_exists(&self, api: &WechatClient, draft: &str) -> Result<bool, SendError> {
        match api
            .post_json("/cgi-bin/draft/get", &json!({ "media_id": draft }))
            .await
        {
            Ok(_) => Ok(true),
            Err(WechatApiError::Wechat { errcode: 40007, .. }) => Ok(false),
            Err(e) => Err(self.send_err(&e, "draft/get")),
        }
    }

    /// Whether a news item is our article: the same title and digest (and content, when
    /// the listing carries it).
    fn same_article(item: &Value, article: &WechatArticle, content: Option<&str>) -> bool {
        item.get("title").and_then(Value::as_str) == Some(article.title.as_str())
            && item.get("digest").and_then(Value::as_str).unwrap_or("") == article.digest
            && match (content, item.get("content").and_then(Value::as_str)) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            }
    }

    /// Pages through a batchget listing (§4.4, §5.4), newest first, for an item whose
    /// first news item is our article and that no other delivery recorded as its draft
    /// or article; returns the item.
    async fn find_listed(
        &self,
        api: &WechatClient,
        call: &str,
        no_content: bool,
        article: &WechatArticle,
        content: Option<&str>,
        delivery_id: i64,
    ) -> Result<Option<Value>, SendError> {
        for page in 0..RECONCILE_PAGES {
            let v = api
                .post_json(
                    call,
                    &json!({"offset": page * 20, "count": 20, "no_content": i32::from(no_content)}),
                )
                .await
                .map_err(|e| self.send_err(&e, call))?;
            let items = v
                .get("item")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for hit in items.iter().filter(|it| {
                it.pointer("/content/news_item/0")
                    .is_some_and(|n| Self::same_article(n, article, content))
            }) {
                let taken = match (
                    hit.get("article_id").and_then(id_string),
                    hit.get("media_id").and_then(id_string),
                ) {
                    (Some(article), _) => {
                        self.store
                            .wechat_article_recorded(&article, delivery_id)
                            .await
                    }
                    (None, Some(draft)) => {
                        self.store.wechat_draft_recorded(&draft, delivery_id).await
                    }
                    (None, None) => Ok(true),
                };
                if !taken.map_err(Self::store_err)? {
                    return Ok(Some(hit.clone()));
                }
            }
            let total = v.get("total_count").and_then(Value::as_u64).unwrap_or(0);
            if items.len() < 20 || (page + 1) * 20 >= total {
                break;
            }
        }
        Ok(None)
    }

    /// Our cover among the permanent images (`material/batchget_material`, §3.2: items
    /// with `media_id`, `name`, `url`), by the file name it was uploaded with.
    async fn find_material(
        &self,
        api: &WechatClient,
        name: &str,
    ) -> Result<Option<WechatMedia>, SendError> {
        let call = "/cgi-bin/material/batchget_material";
        for page in 0..RECONCILE_PAGES {
            let v = api
                .post_json(
                    call,
                    &json!({"type": "image", "offset": page * 20, "count": 20}),
                )
                .await
                .map_err(|e| self.send_err(&e, call))?;
            let items = v
                .get("item")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(hit) = items
                .iter()
                .find(|it| it.get("name").and_then(Value::as_str) == Some(name))
            {
                return Ok(Some(WechatMedia {
                    media_id: hit.get("media_id").and_then(id_string),
                    url: hit.get("url").and_then(Value::as_str).map(str::to_string),
                })
                .filter(|m| m.media_id.is_some()));
            }
            let total = v.get("total_count").and_then(Value::as_u64).unwrap_or(0);
            if items.len() < 20 || (page + 1) * 20 >= total {
                break;
            }
        }
        Ok(None)
    }

    /// Our draft in the draft box, after a `draft/add` whose answer was lost: one that
    /// matches and that no other delivery recorded as its own.
    async fn find_draft(
        &self,
        api: &WechatClient,
        delivery_id: i64,
        article: &WechatArticle,
        content: &str,
    ) -> Result<Option<String>, SendError> {
        Ok(self
            .find_listed(
                api,
                "/cgi-bin/draft/batchget",
                false,
                article,
                Some(content),
                delivery_id,
            )
            .await?
            .and_then(|it| it.get("media_id").and_then(id_string)))
    }

    /// Our published article (article_id, URL), after a submit whose answer was lost:
    /// one that matches and that no other delivery recorded as its own.
    async fn find_article(
        &self,
        api: &WechatClient,
        delivery_id: i64,
        article: &WechatArticle,
    ) -> Result<Option<(String, Option<String>)>, SendError> {
        Ok(self
            .find_listed(
                api,
                "/cgi-bin/freepublish/batchget",
                true,
                article,
                None,
                delivery_id,
            )
            .await?
            .and_then(|it| {
                let id = it.get("article_id").and_then(id_string)?;
                let url = it
                    .pointer("/content/news_item/0/url")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Some((id, url))
            }))
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
            Err(WechatApiError::Wechat {
                errcode: 45065,
                body,
                ..
            }) => (body, true),
            Err(e) if e.may_have_reached() => {
                // Maybe sent: flagged so. The retry carries the same clientmsgid, so
                // WeChat answers 45065 instead of sending twice.
                let mut err = self.send_err(&e, "message/mass/sendall");
                err.maybe_delivered = true;
                return Err(err);
            }
            Err(e) => return Err(self.send_err(&e, "message/mass/sendall")),
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
        if b.kind != BulletinKind::Notice {
            // What draft/add would refuse is a failure here too, not `sent`.
            crate::render::check_wechat_limits(article)
                .map_err(|e| SendError::permanent(e.to_string()))?;
        }
        let folder = dir.join(format!("bulletin-{}", b.id));
        let io = |e: std::io::Error| {
            SendError::transient(format!("WeChat outbox {}: {e}", folder.display()))
        };
        std::fs::create_dir_all(&folder).map_err(io)?;
        std::fs::write(folder.join("article.html"), &article.html).map_err(io)?;
        if b.kind == BulletinKind::Notice {
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
            "need_open_comment": 0, "only_fans_can_comment": 0, "content_source_url": b.version_for(Some(&self.cfg.language)).web_url}]}}));
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
        CONCURRENCY
    }

    fn token_refreshes(&self) -> u64 {
        match &self.backend {
            Backend::Api(c) => c.token_refreshes(),
            Backend::Outbox(_) => 0,
        }
    }

    async fn deliver(&self, job: Job<'_>) -> Result<Receipt, SendError> {
        match &self.backend {
            Backend::Api(api) => {
                // Never more deliveries (and so calls) in flight than declared, whoever calls.
                let _permit = self.calls.acquire().await.expect("never closed");
                self.deliver_api(api, job).await
            }
            Backend::Outbox(dir) => self.deliver_outbox(dir, job).await,
        }
    }
}
