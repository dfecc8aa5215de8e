//! `[bounces]`: the VERP return path and its signing key, the policy that turns
//! bounces and complaints into suppressions, and the two ways in besides the pipe:
//! `[bounces.imap]` (a mailbox the daemon polls) and `[bounces.webhook]` (the signed
//! `POST /webhooks/bounce`). Without the section, the From address is the envelope
//! sender (as before), the default policy applies to what is ingested, and neither the
//! poller nor the webhook runs.

use super::secrets::{read_secret, shorter_than};
use super::{ConfigError, Env, Source};
use crate::bounce::verp::MIN_KEY_BYTES as MIN_VERP_KEY_BYTES;
use crate::bounce::{ReturnPath, Verp, VerpKey};
use secrecy::SecretString;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The environment variable the VERP key is read from unless `verp_secret_env` says otherwise.
pub const VERP_SECRET_ENV: &str = "BULLETIN_VERP_SECRET";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBounces {
    return_path: Option<Spanned<String>>,
    #[serde(default = "default_secret_env")]
    verp_secret_env: String,
    verp_secret_file: Option<Spanned<PathBuf>>,
    #[serde(default = "one")]
    hard_bounces_to_suppress: Spanned<u32>,
    #[serde(default = "five")]
    soft_bounces_to_suppress: Spanned<u32>,
    #[serde(default = "thirty")]
    soft_window_days: Spanned<u32>,
    #[serde(default)]
    match_by_address: bool,
    imap: Option<Spanned<RawImap>>,
    webhook: Option<Spanned<RawWebhook>>,
}

/// The environment variable the IMAP password is read from unless `password_env` says otherwise.
pub const IMAP_PASSWORD_ENV: &str = "BULLETIN_IMAP_PASSWORD";
/// The environment variable the webhook secret is read from unless `secret_env` says otherwise.
pub const WEBHOOK_SECRET_ENV: &str = "BULLETIN_BOUNCE_WEBHOOK_SECRET";
/// The shortest webhook secret taken (bytes).
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    host: Spanned<String>,
    port: Option<u16>,
    #[serde(default = "implicit")]
    tls: Spanned<String>,
    user: String,
    #[serde(default = "default_imap_password_env")]
    password_env: String,
    password_file: Option<Spanned<PathBuf>>,
    #[serde(default = "inbox")]
    folder: String,
    #[serde(default = "processed")]
    processed_folder: Spanned<String>,
    #[serde(default = "sixty")]
    interval_seconds: Spanned<u64>,
}

fn implicit() -> Spanned<String> {
    Spanned::new(0..0, "implicit".into())
}
fn default_imap_password_env() -> String {
    IMAP_PASSWORD_ENV.into()
}
fn inbox() -> String {
    "INBOX".into()
}
fn processed() -> Spanned<String> {
    Spanned::new(0..0, "Processed".into())
}
fn sixty() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    #[serde(default = "default_webhook_secret_env")]
    secret_env: String,
    secret_file: Option<Spanned<PathBuf>>,
}

fn default_webhook_secret_env() -> String {
    WEBHOOK_SECRET_ENV.into()
}

/// How the IMAP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapTls {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain, then STARTTLS before logging in (port 143).
    StartTls,
    /// No TLS at all: only for a server on this machine or a trusted network.
    None,
}

/// `[bounces.imap]`: the mailbox the daemon polls for bounces. The password never prints.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: ImapTls,
    pub user: String,
    /// None until it is given (a secret only the poller needs; see `send_secrets_missing`).
    pub password: Option<SecretString>,
    /// Where bounces arrive (default INBOX).
    pub folder: String,
    /// Where recorded messages are moved (default `Processed`; created if missing).
    pub processed_folder: String,
    pub interval: Duration,
}

/// `[bounces.webhook]`: the shared secret `POST /webhooks/bounce` signatures are checked with.
#[derive(Clone)]
pub struct WebhookConfig {
    pub secret: SecretString,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookConfig { secret: [REDACTED] }")
    }
}

fn default_secret_env() -> String {
    VERP_SECRET_ENV.into()
}
fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn five() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
fn thirty() -> Spanned<u32> {
    Spanned::new(0..0, 30)
}

/// What bounces and complaints do to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BouncePolicy {
    /// Hard bounces after which the subscriber is marked `bounced` (0: never).
    pub hard_bounces_to_suppress: u32,
    /// Soft bounces within `soft_window` after which the subscriber is marked `bounced`
    /// (0: never).
    pub soft_bounces_to_suppress: u32,
    pub soft_window: Duration,
}

impl Default for BouncePolicy {
    fn default() -> Self {
        Self {
            hard_bounces_to_suppress: 1,
            soft_bounces_to_suppress: 5,
            soft_window: Duration::from_secs(30 * 86_400),
        }
    }
}

/// `[bounces]`, checked.
#[derive(Debug, Clone, Default)]
pub struct BouncesConfig {
    /// Set when `return_path` is: makes each message's envelope sender and reads the
    /// row back from a bounce. Its key never prints.
    pub verp: Option<Verp>,
    pub policy: BouncePolicy,
    /// Match a bounce with neither a verified VERP token nor a known Message-ID by its
    /// address alone (default off: a forged bounce naming only an address marks nobody).
    pub match_by_address: bool,
    /// `[bounces.imap]`: the mailbox the daemon polls.
    pub imap: Option<ImapConfig>,
    /// `[bounces.webhook]` with its secret: `POST /webhooks/bounce` is served.
    pub webhook: Option<WebhookConfig>,
}

/// Checks `[bounces]` (absent: no VERP, the default policy). A return path without its
/// key is a secret only sending and ingesting need: noted in `missing`, like the SMTP
/// password, so commands that only read still run.
pub(super) fn validate(
    raw: Option<Spanned<RawBounces>>,
    src: &Source,
    env: Env,
    missing: &mut Vec<ConfigError>,
) -> Result<BouncesConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(BouncesConfig::default());
    };
    let section = raw.span();
    let b = raw.into_inner();
    let at = |s: std::ops::Range<usize>| if s.is_empty() { None } else { Some(s) };
    let policy = BouncePolicy {
        hard_bounces_to_suppress: *b.hard_bounces_to_suppress.get_ref(),
        soft_bounces_to_suppress: *b.soft_bounces_to_suppress.get_ref(),
        soft_window: Duration::from_secs(u64::from(*b.soft_window_days.get_ref()) * 86_400),
    };
    if policy.soft_bounces_to_suppress > 0 && policy.soft_window.is_zero() {
        return Err(src.error(
            at(b.soft_window_days.span()),
            "bounces.soft_window_days",
            "must be at least 1 when soft_bounces_to_suppress counts soft bounces",
        ));
    }
    let imap = match b.imap {
        Some(i) => Some(validate_imap(i, src, env, missing)?),
        None => None,
    };
    let webhook = match b.webhook {
        Some(w) => validate_webhook(w, src, env)?,
        None => None,
    };
    let base = BouncesConfig {
        verp: None,
        policy,
        match_by_address: b.match_by_address,
        imap,
        webhook,
    };
    let Some(template) = b.return_path else {
        return Ok(base);
    };
    let rp_span = template.span();
    let return_path = ReturnPath::parse(template.get_ref())
        .map_err(|e| src.error(Some(rp_span.clone()), "bounces.return_path", e))?;
    let file_span = b.verp_secret_file.as_ref().map(|f| f.span());
    let secret = read_secret(
        env,
        &b.verp_secret_env,
        b.verp_secret_file.as_ref().map(|f| f.get_ref().as_path()),
    )
    .map_err(|e| {
        src.error(
            file_span.clone().or(Some(section.clone())),
            "bounces.verp_secret_file",
            e,
        )
    })?;
    let Some(secret) = secret else {
        missing.push(src.error(
            Some(rp_span),
            "bounces.verp_secret_env",
            format!(
                "return_path is set but the VERP key is missing: set {} or bounces.verp_secret_file",
                b.verp_secret_env
            ),
        ));
        return Ok(base);
    };
    if shorter_than(&secret, MIN_VERP_KEY_BYTES) {
        return Err(src.error(
            file_span.or(Some(rp_span)),
            "bounces.verp_secret_env",
            format!("the VERP key must be at least {MIN_VERP_KEY_BYTES} characters"),
        ));
    }
    let key = VerpKey::from_secret(&secret)
        .map_err(|e| src.error(Some(section), "bounces.verp_secret_env", e))?;
    Ok(BouncesConfig {
        verp: Some(Verp::new(return_path, key)),
        ..base
    })
}

fn validate_imap(
    raw: Spanned<RawImap>,
    src: &Source,
    env: Env,
    missing: &mut Vec<ConfigError>,
) -> Result<ImapConfig, ConfigError> {
    let section = raw.span();
    let i = raw.into_inner();
    let at = |s: std::ops::Range<usize>| if s.is_empty() { None } else { Some(s) };
    let tls = match i.tls.get_ref().as_str() {
        "implicit" => ImapTls::Implicit,
        "starttls" => ImapTls::StartTls,
        "none" => ImapTls::None,
        other => {
            return Err(src.error(
                at(i.tls.span()),
                "bounces.imap.tls",
                format!(
                    "unknown value `{}` (expected implicit, starttls or none)",
                    other.escape_default()
                ),
            ))
        }
    };
    let host = i.host.get_ref().trim().to_string();
    if host.is_empty() {
        return Err(src.error(at(i.host.span()), "bounces.imap.host", "must not be empty"));
    }
    if i.processed_folder.get_ref().trim().is_empty() || i.processed_folder.get_ref() == &i.folder {
        return Err(src.error(
            at(i.processed_folder.span()).or(Some(section.clone())),
            "bounces.imap.processed_folder",
            "must name a folder other than `folder`",
        ));
    }
    if *i.interval_seconds.get_ref() == 0 {
        return Err(src.error(
            at(i.interval_seconds.span()),
            "bounces.imap.interval_seconds",
            "must be at least 1",
        ));
    }
    let file_span = i.password_file.as_ref().map(|f| f.span());
    let password = read_secret(
        env,
        &i.password_env,
        i.password_file.as_ref().map(|f| f.get_ref().as_path()),
    )
    .map_err(|e| {
        src.error(
            file_span.or(Some(section.clone())),
            "bounces.imap.password_file",
            e,
        )
    })?;
    if password.is_none() {
        missing.push(src.error(
            Some(section),
            "bounces.imap.password_env",
            format!(
                "the IMAP password is missing: set {} or bounces.imap.password_file",
                i.password_env
            ),
        ));
    }
    Ok(ImapConfig {
        port: i.port.unwrap_or(match tls {
            ImapTls::Implicit => 993,
            ImapTls::StartTls | ImapTls::None => 143,
        }),
        host,
        tls,
        user: i.user,
        password,
        folder: i.folder,
        processed_folder: i.processed_folder.into_inner(),
        interval: Duration::from_secs(*i.interval_seconds.get_ref()),
    })
}

/// The webhook's secret; None (the endpoint answers 404) when neither the variable nor
/// the file gives one.
fn validate_webhook(
    raw: Spanned<RawWebhook>,
    src: &Source,
    env: Env,
) -> Result<Option<WebhookConfig>, ConfigError> {
    let section = raw.span();
    let w = raw.into_inner();
    let file_span = w.secret_file.as_ref().map(|f| f.span());
    let secret = read_secret(
        env,
        &w.secret_env,
        w.secret_file.as_ref().map(|f| f.get_ref().as_path()),
    )
    .map_err(|e| {
        src.error(
            file_span.clone().or(Some(section.clone())),
            "bounces.webhook.secret_file",
            e,
        )
    })?;
    let Some(secret) = secret else {
        return Ok(None);
    };
    if shorter_than(&secret, MIN_WEBHOOK_SECRET_BYTES) {
        return Err(src.error(
            file_span.or(Some(section)),
            "bounces.webhook.secret_env",
            format!("the webhook secret must be at least {MIN_WEBHOOK_SECRET_BYTES} characters"),
        ));
    }
    Ok(Some(WebhookConfig { secret }))
}
