//! Urgent notices: a checked request (title, short Markdown body, severity, lists, and
//! optionally the same in other languages) becomes a `notice` bulletin rendered once per
//! language with its own templates, created at most once per
//! idempotency key or per content within a window, fanned out with a priority above
//! scheduled work, and handed to the dispatcher. Rendering here is pure; `Notices` does
//! the store work.

use crate::clock::Clock;
use crate::config::{Config, Publisher};
use crate::domain::text::{check_block, check_line, normalize_newlines};
use crate::domain::{ChannelKind, ListName};
use crate::markdown;
use crate::render::{
    email_font_stack, tidy_text, Labels, RenderError, RenderedBulletin, UNSUBSCRIBE_MARK,
};
use crate::scheduler::FAN_OUT_PAGE;
use crate::store::{
    BulletinKind, FanOutAccounts, NewBulletin, NoticeMeta, Store, StoreError, WechatQuotaCheck,
};
use askama::Template;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::info;

/// Ledger priority of notice rows: claimed before scheduled bulletins (priority 0).
pub const NOTICE_PRIORITY: i64 = 100;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 10_000;
const TEXT_WIDTH: usize = 72;

pub use crate::domain::Severity;

/// A bad notice request: which field, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("lists: no list `{0}` (create it with `bulletin lists create {0}`)")]
    UnknownList(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering the notice failed: {0}")]
    Render(#[from] RenderError),
}

fn invalid(field: &str, message: impl std::fmt::Display) -> NoticeError {
    NoticeError::Invalid {
        field: field.into(),
        message: message.to_string(),
    }
}

/// A checked notice request.
#[derive(Debug, Clone)]
pub struct NoticeRequest {
    pub title: String,
    pub body: String,
    pub severity: Severity,
    pub lists: Vec<ListName>,
    pub triggered_by: String,
    pub idempotency_key: Option<String>,
    /// E-mail always; WeChat adds one text mass send to the account's followers.
    pub channels: Vec<ChannelKind>,
    /// Other language versions (title and body above are in `[defaults] language`);
    /// each reader gets the one matching their language, like a record's versions.
    pub versions: Vec<NoticeVersion>,
}

/// One language version of a notice: its language (BCP 47), title and Markdown body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeVersion {
    /// BCP 47, e.g. `th` or `zh-Hans`.
    #[schema(example = "th")]
    pub language: String,
    /// One line, at most 200 characters.
    pub title: String,
    /// Markdown, at most 10,000 characters.
    pub body: String,
}

/// A WeChat text message is kept short: followers read it in the chat list.
pub const WECHAT_TEXT_MAX_CHARS: usize = 600;

impl NoticeRequest {
    /// Sets the channels (`email`, `wechat`); e-mail is always included.
    pub fn with_channels(mut self, channels: &[String]) -> Result<Self, NoticeError> {
        let mut out = vec![ChannelKind::Email];
        for c in channels {
            let c: ChannelKind =
                c.trim()
                    .parse()
                    .map_err(|e: crate::domain::vocab::UnknownValue| {
                        invalid("channels", e.to_string())
                    })?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        self.channels = out;
        Ok(self)
    }

    /// Adds language versions, each checked like the main title and body (fields
    /// `versions[N].language`, `.title`, `.body`); `primary` is the main text's language.
    /// A language given twice, or the main text's own, is refused.
    pub fn with_versions(
        mut self,
        primary: &str,
        versions: &[NoticeVersion],
    ) -> Result<Self, NoticeError> {
        use crate::domain::record::same_language;
        let mut out: Vec<NoticeVersion> = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            let field = |f: &str| format!("versions[{}].{f}", i + 1);
            let language = v.language.trim();
            if crate::domain::language::parse_tag(language).is_none() {
                return Err(invalid(
                    &field("language"),
                    format!(
                        "`{}` is not a BCP 47 language tag (e.g. th, zh-Hans)",
                        language.escape_default()
                    ),
                ));
            }
            if same_language(language, primary)
                || out.iter().any(|o| same_language(&o.language, language))
            {
                return Err(invalid(
                    &field("language"),
                    format!("a version in `{language}` is given twice (the main title and body are in `{primary}`)"),
                ));
            }
            let title = v.title.trim();
            check_line(title, MAX_TITLE_CHARS, true).map_err(|m| invalid(&field("title"), m))?;
            let body = normalize_newlines(v.body.trim());
            check_block(&body, MAX_BODY_CHARS, true).map_err(|m| invalid(&field("body"), m))?;
            out.push(NoticeVersion {
                language: language.to_string(),
                title: title.to_string(),
                body,
            });
        }
        self.versions = out;
        Ok(self)
    }

    /// The request as it reads in one of its versions (None: the main text).
    fn in_version(&self, v: Option<&NoticeVersion>) -> NoticeRequest {
        let mut r = self.clone();
        if let Some(v) = v {
            r.title = v.title.clone();
            r.body = v.body.clone();
        }
        r.versions = Vec::new();
        r
    }

    /// The text a WeChat follower gets: title, then the body as plain text, cut short.
    pub fn wechat_text(&self) -> String {
        let body = markdown::to_text(&self.body, usize::MAX);
        let text = format!("{}\n\n{}", self.title, body.trim());
        crate::render::truncate_chars(&text, WECHAT_TEXT_MAX_CHARS)
    }

    /// Checks every field; the error names the field.
    pub fn parse(
        title: &str,
        body: &str,
        severity: &str,
        lists: &[String],
        triggered_by: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Self, NoticeError> {
        let title = title.trim();
        check_line(title, MAX_TITLE_CHARS, true).map_err(|m| invalid("title", m))?;
        let body = normalize_newlines(body.trim());
        check_block(&body, MAX_BODY_CHARS, true).map_err(|m| invalid("body", m))?;
        let severity = severity
            .parse::<Severity>()
            .map_err(|m| invalid("severity", m))?;
        if lists.is_empty() {
            return Err(invalid("lists", "name at least one list"));
        }
        let mut parsed: Vec<ListName> = Vec::new();
        for l in lists {
            let name = ListName::parse(l.trim()).map_err(|m| invalid("lists", m))?;
            if !parsed.contains(&name) {
                parsed.push(name);
            }
        }
        let triggered_by = triggered_by.trim();
        check_line(triggered_by, 200, true).map_err(|m| invalid("by", m))?;
        let idempotency_key = match idempotency_key.map(str::trim) {
            None | Some("") => None,
            Some(k) => {
                check_line(k, 200, true).map_err(|m| invalid("key", m))?;
                Some(k.to_string())
            }
        };
        Ok(Self {
            title: title.to_string(),
            body,
            severity,
            lists: parsed,
            triggered_by: triggered_by.to_string(),
            idempotency_key,
            channels: vec![ChannelKind::Email],
            versions: Vec::new(),
        })
    }

    /// Identifies the content: same title, body, severity and lists → same key.
    pub fn content_key(&self) -> String {
        let mut lists: Vec<&str> = self.lists.iter().map(|l| l.as_str()).collect();
        lists.sort();
        let channels: Vec<&str> = self.channels.iter().map(|c| c.as_str()).collect();
        let canonical = if self.versions.is_empty() {
            serde_json::json!([self.title, self.body, self.severity, lists, channels])
        } else {
            let mut versions = self.versions.clone();
            versions.sort_by(|a, b| a.language.cmp(&b.language));
            serde_json::json!([
                self.title,
                self.body,
                self.severity,
                lists,
                channels,
                versions
            ])
        };
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticeHtml<'a> {
    lang: &'a str,
    fonts: &'a str,
    subject: &'a str,
    title: &'a str,
    urgent: bool,
    body_html: String,
    publisher: &'a Publisher,
    labels: &'a Labels,
    unsubscribe_url: &'a str,
    web_url: &'a str,
}

#[derive(Template)]
#[template(path = "notice.txt")]
struct NoticeText<'a> {
    title: &'a str,
    underline: String,
    urgent: bool,
    body_text: String,
    publisher: &'a Publisher,
    labels: &'a Labels,
    unsubscribe_url: &'a str,
    web_url: &'a str,
}

/// Renders a notice once (HTML with inlined CSS, and text); the unsubscribe URL is left
/// as the marker, like a bulletin's. Pure.
pub fn render_notice(
    req: &NoticeRequest,
    publisher: &Publisher,
    language: &str,
) -> Result<RenderedBulletin, RenderError> {
    let labels = Labels::for_language(language);
    let publisher = &*publisher.for_language(language);
    let urgent = req.severity == Severity::Urgent;
    let subject = if urgent {
        format!("[{}] {}", labels.urgent, req.title)
    } else {
        req.title.clone()
    };
    let html = NoticeHtml {
        lang: language,
        fonts: &email_font_stack(labels.locale),
        subject: &subject,
        title: &req.title,
        urgent,
        body_html: markdown::to_html(&req.body),
        publisher,
        labels,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        web_url: crate::render::WEB_VERSION_MARK,
    }
    .render()?;
    let html = css_inline::inline(&html).map_err(|e| RenderError::Css(e.to_string()))?;
    let width = textwrap::core::display_width(&req.title).clamp(3, TEXT_WIDTH);
    let text = NoticeText {
        title: &req.title,
        underline: "=".repeat(width),
        urgent,
        body_text: markdown::to_text(&req.body, TEXT_WIDTH),
        publisher,
        labels,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        web_url: crate::render::WEB_VERSION_MARK,
    }
    .render()?;
    Ok(RenderedBulletin {
        language: language.to_string(),
        subject,
        html,
        text: tidy_text(&text),
    })
}

/// What sending a notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NoticeOutcome {
    /// The notice's bulletin id (the first one's, if this was a repeat).
    pub id: i64,
    /// False: the same notice was already triggered; nothing new was queued.
    pub created: bool,
    /// Ledger rows queued by this call.
    pub deliveries: u64,
}

/// WeChat mass sends used and allowed in the last 24 hours.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WechatQuota {
    pub used: i64,
    pub limit: i64,
}

/// Creates notices: the store work behind the CLI and the admin API. Never sends.
pub struct Notices {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    wake_dispatcher: Arc<Notify>,
}

impl Notices {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        wake_dispatcher: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            wake_dispatcher,
        }
    }

    /// The account-wide WeChat row, when WeChat is configured.
    fn accounts(&self) -> FanOutAccounts {
        FanOutAccounts::new(self.config.wechat.as_ref().map(|w| w.appid.as_str()))
    }

    /// WeChat mass sends in the last 24 h against `wechat.mass_send_daily_quota` (§7.1, §11
    /// of the WeChat reference): notices' reservations plus other mass sends. Shown
    /// before a notice goes to WeChat; enforced by the store when the notice is created.
    pub async fn wechat_quota(&self) -> Result<WechatQuota, NoticeError> {
        let limit = self
            .config
            .wechat
            .as_ref()
            .map_or(0, |w| w.mass_send_daily_quota);
        let since = self.clock.now() - chrono::Duration::hours(24);
        let used = self.store.wechat_mass_sends_since(since).await?;
        Ok(WechatQuota { used, limit })
    }

    /// Queues the notice (once) ahead of scheduled work and wakes the dispatcher.
    pub async fn send(&self, req: &NoticeRequest) -> Result<NoticeOutcome, NoticeError> {
        for l in &req.lists {
            if self.store.list(l).await?.is_none() {
                return Err(NoticeError::UnknownList(l.to_string()));
            }
        }
        let wechat = if req.channels.contains(&ChannelKind::Wechat) {
            let Some(w) = &self.config.wechat else {
                return Err(invalid(
                    "channels",
                    "WeChat is not configured (no enabled [wechat] section)",
                ));
            };
            // The quota is checked and reserved by the store, in the transaction that
            // creates the notice (after its dedupe): see `create_notice`.
            Some(w.clone())
        } else {
            None
        };
        let language = self.config.default_language.clone();
        let rendered = render_notice(req, &self.config.publisher, &language)?;
        // Each language version rendered once, with its own labels.
        let mut versions = Vec::new();
        for v in &req.versions {
            let r = render_notice(
                &req.in_version(Some(v)),
                &self.config.publisher,
                &v.language,
            )?;
            versions.push(crate::store::BulletinVersion {
                language: v.language.clone(),
                subject: r.subject,
                html: r.html,
                text: r.text,
            });
        }
        // WeChat followers get the version in `wechat.language`, else the main text.
        let wechat_req = wechat.as_ref().map(|w| {
            let tags: Vec<&str> = std::iter::once(language.as_str())
                .chain(req.versions.iter().map(|v| v.language.as_str()))
                .collect();
            let pick = crate::domain::language::negotiate(Some(&w.language), &tags, &language);
            req.in_version(
                req.versions
                    .iter()
                    .find(|v| std::ptr::eq(v.language.as_str(), pick)),
            )
        });
        let now = self.clock.now();
        let window =
            chrono::Duration::from_std(self.config.notices.dedupe_window).unwrap_or_default();
        let nb = NewBulletin {
            kind: BulletinKind::Notice,
            schedule: None,
            fire_time: None,
            language: rendered.language,
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            lists: req.lists.clone(),
            channels: req.channels.clone(),
            priority: NOTICE_PRIORITY,
            record_ids: vec![],
            wechat: wechat.as_ref().zip(wechat_req.as_ref()).map(|(w, req)| {
                crate::render::WechatArticle {
                    title: crate::render::truncate_chars(
                        &req.title,
                        crate::render::WECHAT_TITLE_MAX,
                    ),
                    author: w.author.clone(),
                    digest: String::new(),
                    html: req.wechat_text(),
                }
            }),
            versions,
        };
        let meta = NoticeMeta {
            severity: req.severity,
            triggered_by: req.triggered_by.clone(),
            idempotency_key: req.idempotency_key.clone(),
            content_key: req.content_key(),
            dedupe_since: now - window,
            wechat_quota: wechat.as_ref().map(|w| WechatQuotaCheck {
                appid: w.appid.clone(),
                limit: w.mass_send_daily_quota,
                since: now - chrono::Duration::hours(24),
            }),
        };
        let (id, created) = match self.store.create_notice(&nb, &meta, now).await {
            Ok(r) => r,
            Err(StoreError::Refused(m)) if wechat.is_some() => {
                return Err(invalid(
                    "channels",
                    format!(
                        "{m} (a verified subscription account gets 1 a day; service-account followers get at most 4 a month); send by e-mail only, or later"
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if !created {
            info!(
                notice = id,
                "the same notice was already triggered; not sending it again"
            );
            return Ok(NoticeOutcome {
                id,
                created,
                deliveries: 0,
            });
        }
        // A crash between create and fan-out leaves the bulletin `fanning_out`; the
        // scheduler's resume finishes it.
        let deliveries = self
            .store
            .fan_out(id, FAN_OUT_PAGE, &self.accounts(), now)
            .await?;
        info!(notice = id, severity = req.severity.as_str(), by = %req.triggered_by, recipients = deliveries, "notice queued");
        self.wake_dispatcher.notify_one();
        Ok(NoticeOutcome {
            id,
            created,
            deliveries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> Publisher {
        Publisher {
            names: vec!["Centre".into()],
            address: vec![],
            phone: None,
            fax: None,
            emails: vec![],
            website: None,
            wechat_id: None,
            i18n: Default::default(),
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let lists = vec!["partners".to_string()];
        let e = NoticeRequest::parse(" ", "b", "info", &lists, "me", None).unwrap_err();
        assert!(e.to_string().starts_with("title:"), "{e}");
        let e = NoticeRequest::parse("t", "b", "loud", &lists, "me", None).unwrap_err();
        assert!(e.to_string().starts_with("severity:"), "{e}");
        let e = NoticeRequest::parse("t", "b", "info", &[], "me", None).unwrap_err();
        assert!(e.to_string().starts_with("lists:"), "{e}");
        let e = NoticeRequest::parse("t", "\u{E000}", "info", &lists, "me", None).unwrap_err();
        assert!(e.to_string().starts_with("body:"), "{e}");
    }

    #[test]
    fn renders_urgent_with_marker_and_escapes_title() {
        let lists = vec!["partners".to_string()];
        let r = NoticeRequest::parse(
            "Venue <moved>",
            "The session moves to **Hall B**.",
            "urgent",
            &lists,
            "ops",
            None,
        )
        .unwrap();
        let out = render_notice(&r, &publisher(), "en").unwrap();
        assert_eq!(out.subject, "[Urgent] Venue <moved>");
        assert!(out.html.contains("Venue &lt;moved&gt;"));
        assert!(out.html.contains("<strong>Hall B</strong>"));
        assert!(out.html.contains(UNSUBSCRIBE_MARK));
        assert!(
            out.text.starts_with("[URGENT] Venue <moved>"),
            "{}",
            out.text
        );
        assert!(out.text.contains(UNSUBSCRIBE_MARK));
        // Content key ignores list order and duplicates.
        let a =
            NoticeRequest::parse("t", "b", "info", &["a".into(), "b".into()], "x", None).unwrap();
        let b = NoticeRequest::parse(
            "t",
            "b",
            "info",
            &["b".into(), "a".into(), "a".into()],
            "y",
            None,
        )
        .unwrap();
        assert_eq!(a.content_key(), b.content_key());
    }
}
