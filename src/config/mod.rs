//! Typed configuration from one TOML file: unknown keys refused, every error naming the
//! file, line and key; secrets read from the environment or a file and never printed.
//! Each section has its module (`database`, `publisher`, `email`, `unsubscribe`,
//! `bounces`, `delivery`, `wechat`, `schedules`, `http`, `archive`): its raw serde form and a `validate` that
//! turns it into the checked settings. Word-valued settings are `text_enum!`s read by
//! serde, so an unknown word is refused at its line with the accepted words.

mod archive;
mod bounces;
mod database;
mod delivery;
mod email;
mod http;
mod publisher;
mod schedules;
mod secrets;
mod unsubscribe;
mod wechat;

pub use crate::db_url::{redact_url, resolve_sqlite_url, sqlite_path};
pub use crate::domain::delivery::ExpiredLease;
pub use archive::{url_segment, ArchiveConfig, MAX_ARCHIVE_PAGE};
pub use bounces::{
    BouncePolicy, BouncesConfig, ImapConfig, ImapTls, WebhookConfig, IMAP_PASSWORD_ENV,
    VERP_SECRET_ENV, WEBHOOK_SECRET_ENV,
};
pub use database::DATABASE_PASSWORD_ENV;
pub use delivery::DeliveryConfig;
pub use email::{
    from_for as email_from_for, EmailConfig, EmailTransport, SmtpConfig, TlsMode, TransportKind,
};
pub use http::{AdminConfig, HttpLimits, PublicConfig};
pub use publisher::{Publisher, PublisherText};
pub use secrets::SecretFileError;
pub use unsubscribe::{check_base_url, is_loopback_url, BaseUrlError, UnsubscribeConfig};
pub use wechat::{WechatConfig, WechatMode};

use crate::domain::schedule::Schedule;
use crate::domain::text::line_col;
use secrecy::SecretString;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A configuration problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text being validated: errors point into it by line and column.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    /// An error at `span` (None: the key has no place in the file, e.g. a default), about
    /// `key` (empty: none).
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl fmt::Display,
    ) -> ConfigError {
        let pos = span.map(|s| line_col(self.text, s.start));
        ConfigError {
            file: self.file.clone(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.to_string(),
        }
    }
}

/// The key a TOML error at `offset` is about, as the validation errors name keys
/// (`email.smtp.tls`, `schedules[2].mode`): the key of a `key = value` line under the
/// table header before it, or the table itself on a header line. None where the line is
/// neither (a syntax error, a multi-line value, a quoted key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let bare = |k: &str| {
        let k = k.trim();
        let ok = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        ok.then(|| k.to_string())
    };
    // The table each header line opens, counting `[[array]]` entries from 1.
    let mut table: Option<String> = None;
    let mut entries: std::collections::HashMap<String, usize> = Default::default();
    let mut header = |line: &str| -> Option<Option<String>> {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let name = bare(name)?;
            let n = entries.entry(name.clone()).or_default();
            *n += 1;
            return Some(Some(format!("{name}[{n}]")));
        }
        let (name, _) = line.strip_prefix('[')?.split_once(']')?;
        Some(bare(name))
    };
    for line in text[..start].lines() {
        if let Some(t) = header(line) {
            table = t;
        }
    }
    let line = text[start..].lines().next().unwrap_or("");
    if line.trim_start().starts_with('[') {
        return header(line).flatten();
    }
    let key = bare(line.split_once('=')?.0)?;
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key,
    })
}

/// Looks up an environment variable (injected for tests).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: database::RawStore,
    #[serde(default)]
    defaults: RawDefaults,
    publisher: Spanned<publisher::RawPublisher>,
    email: Spanned<email::RawEmail>,
    unsubscribe: Option<Spanned<unsubscribe::RawUnsubscribe>>,
    #[serde(default)]
    delivery: delivery::RawDelivery,
    #[serde(default)]
    scheduler: schedules::RawScheduler,
    #[serde(default)]
    schedules: Vec<Spanned<schedules::RawSchedule>>,
    wechat: Option<Spanned<wechat::RawWechat>>,
    admin: Option<Spanned<http::RawAdmin>>,
    public: Option<Spanned<http::RawPublic>>,
    #[serde(default)]
    notices: RawNotices,
    bounces: Option<Spanned<bounces::RawBounces>>,
    archive: Option<Spanned<archive::RawArchive>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDefaults {
    language: String,
}

impl Default for RawDefaults {
    fn default() -> Self {
        Self {
            language: "en".into(),
        }
    }
}

impl RawDefaults {
    /// The default language, as a BCP 47 tag.
    fn validate(self, src: &Source) -> Result<String, ConfigError> {
        language_tags::LanguageTag::parse(&self.language)
            .map(|t| t.to_string())
            .map_err(|e| src.error(None, "defaults.language", format!("not a BCP 47 tag: {e}")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNotices {
    dedupe_window_minutes: u64,
}

impl Default for RawNotices {
    fn default() -> Self {
        Self {
            dedupe_window_minutes: 60,
        }
    }
}

impl RawNotices {
    fn validate(self) -> NoticeConfig {
        NoticeConfig {
            dedupe_window: Duration::from_secs(self.dedupe_window_minutes * 60),
        }
    }
}

/// Urgent notices.
#[derive(Debug, Clone)]
pub struct NoticeConfig {
    /// The same content sent again within this window returns the first notice.
    pub dedupe_window: Duration,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub store_url: String,
    /// The PostgreSQL password when the URL carries none (never printed).
    pub store_password: Option<SecretString>,
    pub default_language: String,
    pub publisher: Publisher,
    pub email: EmailConfig,
    pub unsubscribe: UnsubscribeConfig,
    pub delivery: DeliveryConfig,
    pub catch_up_window: Duration,
    pub schedules: Vec<Schedule>,
    /// Set when `[wechat]` is present and enabled.
    pub wechat: Option<WechatConfig>,
    pub admin: AdminConfig,
    pub public: PublicConfig,
    pub notices: NoticeConfig,
    /// `[bounces]`: VERP (None without `return_path`) and the suppression policy.
    pub bounces: BouncesConfig,
    /// `[archive]`: the public archive and the URL e-mails link to.
    pub archive: ArchiveConfig,
    /// Secrets only sending needs that are missing (see [`Config::ready_to_send`]).
    pub send_secrets_missing: Vec<ConfigError>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the configuration: {e}"),
        })?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let (line, col) = line_col(
                &String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]),
                usize::MAX,
            );
            ConfigError {
                file: path.display().to_string(),
                line: Some(line),
                column: Some(col),
                key: None,
                message: "the file is not valid UTF-8".into(),
            }
        })?;
        Self::parse(&source, path, &|name| std::env::var(name).ok())
    }

    /// Validates configuration text; `env` looks up environment variables (injected for
    /// tests). Each section is validated by its own module, in file order.
    pub fn parse(
        source: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let src = Source {
            file: path.display().to_string(),
            text: source,
        };
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            let key = e.span().and_then(|s| key_at(source, s.start));
            src.error(e.span(), key.as_deref().unwrap_or(""), e.message().trim())
        })?;
        let default_language = raw.defaults.validate(&src)?;
        let (store_url, store_password) = raw.store.validate(&src, path, env)?;
        let publisher = publisher::validate(raw.publisher, &src)?;
        let mut send_secrets_missing = Vec::new();
        let email = email::validate(raw.email, &src, env, &mut send_secrets_missing)?;
        let unsubscribe = unsubscribe::validate(raw.unsubscribe, &src, env)?;
        let delivery = raw.delivery.validate(&src, &email.transport)?;
        let wechat = match raw.wechat {
            Some(w) => wechat::validate(w, &src, env, &mut send_secrets_missing)?,
            None => None,
        };
        let schedules = schedules::validate(raw.schedules, &src)?;
        let admin = http::validate_admin(raw.admin, &src, env)?;
        let public = http::validate_public(raw.public, &src)?;
        let bounces = bounces::validate(raw.bounces, &src, env, &mut send_secrets_missing)?;
        let archive = archive::validate(raw.archive, &unsubscribe, &src)?;
        Ok(Config {
            file: path.to_path_buf(),
            store_url,
            store_password,
            default_language,
            publisher,
            email,
            unsubscribe,
            delivery,
            catch_up_window: raw.scheduler.validate(),
            schedules,
            wechat,
            admin,
            public,
            notices: raw.notices.validate(),
            bounces,
            archive,
            send_secrets_missing,
        })
    }

    /// What stops this configuration from sending: a secret only sending needs (SMTP
    /// password, WeChat AppSecret) that is missing, or SMTP with an unsubscribe link to
    /// this machine. `serve` checks it before it starts; the commands that only read or
    /// enqueue do not need it.
    pub fn ready_to_send(&self) -> Result<(), ConfigError> {
        if let Some(e) = self.send_secrets_missing.first() {
            return Err(e.clone());
        }
        if let Some(m) = self.loopback_link_problem() {
            return Err(ConfigError {
                file: self.file.display().to_string(),
                line: None,
                column: None,
                key: Some("unsubscribe.base_url".into()),
                message: format!(
                    "{m}; serve refuses to send over SMTP with it (set unsubscribe.allow_loopback = true for tests)"
                ),
            });
        }
        Ok(())
    }

    /// A loopback `unsubscribe.base_url` with e-mail going out over SMTP, not allowed.
    pub fn loopback_link_problem(&self) -> Option<String> {
        let smtp = matches!(self.email.transport, EmailTransport::Smtp(_));
        (smtp && self.unsubscribe.loopback && !self.unsubscribe.allow_loopback).then(|| {
            format!(
                "`{}` points at this machine: the unsubscribe link in every e-mail would be dead \
                 for its reader; set the public address readers can reach",
                self.unsubscribe.base_url
            )
        })
    }

    /// Warnings for `check-config`: what `serve` would refuse, and links readers cannot use.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .send_secrets_missing
            .iter()
            .map(|e| format!("{e} (needed only to send: `serve` refuses to start without it)"))
            .collect();
        if let Some(m) = self.loopback_link_problem() {
            w.push(format!(
                "{}: unsubscribe.base_url: {m} (`serve` refuses to send over SMTP until it \
                 is fixed or unsubscribe.allow_loopback = true)",
                self.file.display()
            ));
        } else if self.unsubscribe.loopback && !self.unsubscribe.allow_loopback {
            w.push(format!(
                "{}: unsubscribe.base_url: `{}` points at this machine: fine for the outbox, \
                 dead in e-mails sent to readers",
                self.file.display(),
                self.unsubscribe.base_url
            ));
        }
        if let Some(m) = self.archive.missing_link() {
            w.push(format!("{}: archive: {m}", self.file.display()));
        }
        if let Some(d) = &self.email.dkim {
            let from = self.email.from.email.domain().to_ascii_lowercase();
            if from != d.domain && !from.ends_with(&format!(".{}", d.domain)) {
                w.push(format!(
                    "{}: email.dkim.domain: `{}` is not email.from's domain `{from}` nor a parent \
                     of it: the signature does not align with From, so DMARC does not pass on it",
                    self.file.display(),
                    d.domain
                ));
            }
        }
        w
    }

    /// The schedule called `name`.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests;
