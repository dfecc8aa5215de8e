//! Notice operations: send an urgent notice (checked, deduplicated by key or content,
//! queued ahead of scheduled work), the WeChat mass-send quota shown before one, and the
//! progress a sender follows (see [`Ops::progress`]).

use super::audit::AuditEntry;
use super::{Missing, Ops, OpsError, Result};
use crate::domain::Actor;
use crate::notice::{NoticeError, NoticeOutcome, NoticeRequest, WechatQuota};

/// A notice as a person asks for it; every field is checked by [`Ops::send_notice`].
#[derive(Debug, Clone, Copy)]
pub struct NoticeInput<'a> {
    /// One line, at most 200 characters.
    pub title: &'a str,
    /// Markdown, at most 10,000 characters.
    pub body: &'a str,
    /// `info` or `urgent`.
    pub severity: &'a str,
    pub lists: &'a [String],
    /// Idempotency key: a second send with the same key returns the first notice.
    pub key: Option<&'a str>,
    /// `email` (always) and optionally `wechat`.
    pub channels: &'a [String],
    /// The notice in other languages (title and body above are in `[defaults]
    /// language`); each reader gets the version matching their language.
    pub versions: &'a [crate::notice::NoticeVersion],
}

impl From<NoticeError> for OpsError {
    fn from(e: NoticeError) -> Self {
        match e {
            NoticeError::Invalid { field, message } => Self::Invalid { field, message },
            e @ NoticeError::UnknownList(_) => Self::not_found(Missing::List, e.to_string()),
            NoticeError::Store(s) => Self::Store(s),
            NoticeError::Render(r) => Self::Render(r),
        }
    }
}

impl Ops {
    /// Checks a notice request without sending it (the error names the field); its
    /// `by` is the actor.
    pub fn check_notice(&self, actor: &Actor, input: NoticeInput<'_>) -> Result<NoticeRequest> {
        Ok(NoticeRequest::parse(
            input.title,
            input.body,
            input.severity,
            input.lists,
            &actor.name,
            input.key,
        )
        .and_then(|r| r.with_channels(input.channels))
        .and_then(|r| r.with_versions(&self.config.default_language, input.versions))?)
    }

    /// Queues the notice once (a repeated key, or the same content within the dedupe
    /// window, returns the first one) ahead of scheduled work, and wakes the dispatcher.
    pub async fn send_notice(&self, actor: &Actor, req: &NoticeRequest) -> Result<NoticeOutcome> {
        let out = self.notices.send(req).await?;
        if out.created {
            self.audit(
                actor,
                AuditEntry::new("notice.send", format!("bulletin:{}", out.id)).after(out),
            )
            .await;
        }
        Ok(out)
    }

    /// The notice's e-mail HTML as readers of the default language get it (the
    /// unsubscribe link pointing at `/unsubscribe/PREVIEW`): what the console previews.
    pub fn preview_notice(&self, req: &NoticeRequest) -> Result<String> {
        let r = crate::notice::render_notice(
            req,
            &self.config.publisher,
            &self.config.default_language,
        )?;
        let url = format!("{}/unsubscribe/PREVIEW", self.config.unsubscribe.base_url);
        Ok(crate::render::personalise(&r.html, &url))
    }

    /// WeChat mass sends used and allowed in the last 24 hours.
    pub async fn wechat_quota(&self) -> Result<WechatQuota> {
        Ok(self.notices.wechat_quota().await?)
    }
}
