//! Channels: the only code that knows SMTP and WeChat. One small trait, modelled
//! on lettre's transports: deliver one job, or return an error you can ask
//! `is_transient()` / `is_permanent()`.

pub mod email;
pub mod smtp;
pub mod wechat;

use crate::domain::ChannelKind;
use crate::store::{Claimed, ImageData};
use async_trait::async_trait;
use std::fmt;

/// A bulletin ready to send: its rendered snapshot and its images, loaded once.
#[derive(Debug, Clone)]
pub struct PreparedBulletin {
    pub id: i64,
    /// `record`, `digest` or `notice`.
    pub kind: crate::store::BulletinKind,
    /// The language of its text (BCP 47): `Content-Language`, the sender's name.
    pub language: String,
    pub subject: String,
    /// The public URL of its web version (`[archive]`): the e-mail's "View in your
    /// browser" link and `Archived-At`, the WeChat article's "read original". None: the
    /// link is left out.
    pub web_url: Option<String>,
    pub html: String,
    pub text: String,
    /// (Content-ID, image) pairs for inline images.
    pub images: Vec<(String, ImageData)>,
    pub wechat: Option<crate::domain::WechatArticle>,
    /// The e-mail bodies, encoded once on first use and shared by every recipient.
    pub email_bodies: std::sync::OnceLock<std::sync::Arc<email::EncodedBodies>>,
    /// Its other language versions (the fields above are the primary's).
    pub versions: Vec<PreparedVersion>,
    /// Which version each reader language got, worked out once per language.
    pub reader_versions: VersionChoices,
}

/// One language version of a prepared bulletin, its e-mail bodies encoded once on first
/// use and shared by every reader of that version.
#[derive(Debug, Clone)]
pub struct PreparedVersion {
    pub language: String,
    /// The public URL of this version's web version (see [`PreparedBulletin::web_url`]).
    pub web_url: Option<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub email_bodies: std::sync::OnceLock<std::sync::Arc<email::EncodedBodies>>,
}

impl From<crate::store::BulletinVersion> for PreparedVersion {
    fn from(v: crate::store::BulletinVersion) -> Self {
        Self {
            language: v.language,
            web_url: None,
            subject: v.subject,
            html: v.html,
            text: v.text,
            email_bodies: Default::default(),
        }
    }
}

/// A reader language → the version it gets (None: the primary), filled as readers come:
/// negotiation runs once per distinct language, not once per message. A clone starts
/// empty.
#[derive(Debug, Default)]
pub struct VersionChoices(
    std::sync::Mutex<std::collections::HashMap<Option<String>, Option<usize>>>,
);

impl Clone for VersionChoices {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// One version of a bulletin as a reader gets it.
#[derive(Debug, Clone, Copy)]
pub struct VersionView<'a> {
    pub language: &'a str,
    /// Its web version's public URL: the "View in your browser" link and `Archived-At`.
    pub web_url: Option<&'a str>,
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
    pub email_bodies: &'a std::sync::OnceLock<std::sync::Arc<email::EncodedBodies>>,
}

impl PreparedBulletin {
    /// The version a reader of `reader` (a BCP 47 tag, or none) gets: by
    /// [`crate::domain::language::negotiate`] over the versions, else the primary.
    pub fn version_for(&self, reader: Option<&str>) -> VersionView<'_> {
        let primary = VersionView {
            language: &self.language,
            web_url: self.web_url.as_deref(),
            subject: &self.subject,
            html: &self.html,
            text: &self.text,
            email_bodies: &self.email_bodies,
        };
        if self.versions.is_empty() {
            return primary;
        }
        let key = reader.map(str::to_string);
        let choice = {
            let mut choices = self
                .reader_versions
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *choices.entry(key).or_insert_with(|| {
                let tags: Vec<&str> = std::iter::once(self.language.as_str())
                    .chain(self.versions.iter().map(|v| v.language.as_str()))
                    .collect();
                let pick = crate::domain::language::negotiate(reader, &tags, &self.language);
                tags.iter().skip(1).position(|t| std::ptr::eq(*t, pick))
            })
        };
        match choice.and_then(|i| self.versions.get(i)) {
            Some(v) => VersionView {
                language: &v.language,
                web_url: v.web_url.as_deref(),
                subject: &v.subject,
                html: &v.html,
                text: &v.text,
                email_bodies: &v.email_bodies,
            },
            None => primary,
        }
    }
}

/// One ledger row to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub delivery: &'a Claimed,
    pub bulletin: &'a PreparedBulletin,
}

/// What the far side said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub code: Option<i64>,
    pub reply: String,
    pub message_id: Option<String>,
}

/// How a failed send should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again later (4xx, connection lost, timeout).
    Transient,
    /// This recipient will never get it this way (5xx on RCPT/DATA, invalid address).
    Permanent,
    /// Not a failure: the far side is still working (e.g. WeChat publishing); ask again later.
    Pending,
}

/// A failed send, with the server's answer when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub kind: FailureKind,
    /// SMTP reply code or WeChat errcode.
    pub code: Option<i64>,
    pub message: String,
    /// The message may have reached the server (e.g. the link broke after DATA).
    pub maybe_delivered: bool,
    pub message_id: Option<String>,
    /// The earliest sensible next try (e.g. WeChat 45011: one minute).
    pub retry_after: Option<std::time::Duration>,
    /// The problem is the channel's, not this recipient's (SMTP login refused, sender
    /// refused): stop using the channel for a while and tell the operator.
    pub halt_channel: bool,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            code: None,
            message: message.into(),
            maybe_delivered: false,
            message_id: None,
            retry_after: None,
            halt_channel: false,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            ..Self::transient(message)
        }
    }
    pub fn pending(message: impl Into<String>, check_again_in: std::time::Duration) -> Self {
        Self {
            kind: FailureKind::Pending,
            retry_after: Some(check_again_in),
            ..Self::transient(message)
        }
    }
    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }
    pub fn is_permanent(&self) -> bool {
        self.kind == FailureKind::Permanent
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{c} {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SendError {}

/// An error and its sources as one line, each cause once (servers' answers are often
/// repeated down the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// A way to deliver bulletins.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn kind(&self) -> ChannelKind;
    /// How many deliveries may be in flight at once (handed to the channel, answer not
    /// yet back), counting those waiting inside it for a connection.
    fn concurrency(&self) -> usize;
    /// How many of those can be at the far side at once, sent with the answer not yet
    /// read: the ones a crash can leave delivered but unrecorded.
    fn connections(&self) -> usize {
        self.concurrency()
    }
    /// The most deliveries per second it will make, if it is rate limited.
    fn max_rate(&self) -> Option<f64> {
        None
    }
    /// The longest one delivery may take once started (every wait of its protocol added
    /// up). A claim with less than this left is not started: it could outlive its lease.
    fn max_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(120)
    }
    /// Waits until the channel's rate limit lets one more delivery start. The dispatcher
    /// calls it before `deliver` and checks, after it, that the row may still go (its
    /// bulletin not paused, no shutdown under way): a row waiting here has not started.
    async fn admit(&self) {}
    async fn deliver(&self, job: Job<'_>) -> Result<Receipt, SendError>;
    /// Access tokens fetched so far, for channels that use them (metrics).
    fn token_refreshes(&self) -> u64 {
        0
    }
}
