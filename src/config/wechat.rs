//! `[wechat]`: the official account's AppID and AppSecret, what is done with each
//! bulletin (draft, publish, mass send), the cover image and the API's timings.

use super::secrets::read_secret;
use super::{ConfigError, Env, Source};
use crate::domain::vocab::text_enum;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

text_enum!(
    /// What the WeChat channel does with each bulletin.
    WechatMode("WeChat mode") {
        /// Create the draft only; an editor publishes it in the WeChat back office.
        Draft => "draft",
        /// Draft, then `freepublish/submit`, then poll until published or failed.
        Publish => "publish",
        /// Draft, then a mass send to all followers (or a tag), deduplicated by `clientmsgid`.
        MassSend => "mass_send",
    }
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWechat {
    #[serde(default = "yes")]
    enabled: bool,
    appid: String,
    #[serde(default = "default_secret_env")]
    secret_env: String,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_api_base")]
    api_base: String,
    #[serde(default = "default_mode")]
    mode: WechatMode,
    #[serde(default)]
    author: String,
    cover_image: PathBuf,
    mass_send_tag: Option<i64>,
    #[serde(default = "one")]
    mass_send_daily_quota: i64,
    #[serde(default = "default_poll_interval")]
    poll_interval_seconds: u64,
    #[serde(default = "default_poll_timeout")]
    poll_timeout_minutes: u64,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    outbox_dir: Option<PathBuf>,
    #[serde(default = "default_publish_settle")]
    publish_settle_minutes: u64,
    #[serde(default = "default_language")]
    language: String,
}

fn default_language() -> String {
    "zh-Hans".into()
}

fn yes() -> bool {
    true
}
fn one() -> i64 {
    1
}
fn default_secret_env() -> String {
    "BULLETIN_WECHAT_SECRET".into()
}
fn default_api_base() -> String {
    "https://api.weixin.qq.com".into()
}
fn default_mode() -> WechatMode {
    WechatMode::Draft
}
fn default_poll_interval() -> u64 {
    30
}
fn default_poll_timeout() -> u64 {
    60
}
fn default_timeout() -> u64 {
    15
}
fn default_publish_settle() -> u64 {
    60
}

/// The WeChat official account channel.
#[derive(Debug, Clone)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: Option<SecretString>,
    pub api_base: String,
    pub mode: WechatMode,
    pub author: String,
    pub cover_image: PathBuf,
    pub mass_send_tag: Option<i64>,
    /// Mass sends allowed per 24 h (urgent notices check it before sending).
    pub mass_send_daily_quota: i64,
    pub poll_interval: Duration,
    pub poll_timeout: Duration,
    pub timeout: Duration,
    /// Write the article and the calls it would make here instead of calling WeChat.
    pub outbox_dir: Option<PathBuf>,
    /// The longest a publish may take: after a `freepublish/submit` whose answer was
    /// lost, "WeChat did not take it" is concluded only once this has passed.
    pub publish_settle: Duration,
    /// The language version the account publishes (BCP 47; default `zh-Hans`): a
    /// record's version for it by [`crate::domain::language::negotiate`], else its
    /// primary.
    pub language: String,
}

/// Checks `[wechat]`; None when it is disabled. A missing AppSecret (with no outbox) is
/// not an error here, only sending needs it: it is pushed to `send_secrets_missing`.
pub(super) fn validate(
    raw: Spanned<RawWechat>,
    src: &Source,
    env: Env,
    send_secrets_missing: &mut Vec<ConfigError>,
) -> Result<Option<WechatConfig>, ConfigError> {
    let span = raw.span();
    let w = raw.into_inner();
    let e = |key: &str, m: String| src.error(Some(span.clone()), &format!("wechat.{key}"), m);
    if !w.enabled {
        return Ok(None);
    }
    w.check(&e)?;
    let secret = read_secret(env, &w.secret_env, w.secret_file.as_deref())
        .map_err(|m| e("secret_file", m.to_string()))?;
    if secret.is_none() && w.outbox_dir.is_none() {
        send_secrets_missing.push(e(
            "secret_env",
            format!(
                "no AppSecret: set the environment variable {} or wechat.secret_file",
                w.secret_env
            ),
        ));
    }
    Ok(Some(WechatConfig {
        appid: w.appid,
        secret,
        api_base: w.api_base.trim_end_matches('/').to_string(),
        mode: w.mode,
        author: w.author,
        cover_image: w.cover_image,
        mass_send_tag: w.mass_send_tag,
        mass_send_daily_quota: w.mass_send_daily_quota.max(0),
        poll_interval: Duration::from_secs(w.poll_interval_seconds),
        poll_timeout: Duration::from_secs(w.poll_timeout_minutes * 60),
        timeout: Duration::from_secs(w.timeout_seconds),
        outbox_dir: w.outbox_dir,
        publish_settle: Duration::from_secs(w.publish_settle_minutes * 60),
        language: w.language,
    }))
}

impl RawWechat {
    /// The checks of single settings; `e` makes the error for `wechat.KEY`.
    fn check(&self, e: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if self.appid.is_empty() || !self.appid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(e(
                "appid",
                format!(
                    "`{}` is not an AppID (letters and digits, e.g. wx1234567890abcdef)",
                    self.appid.escape_default()
                ),
            ));
        }
        if !(self.api_base.starts_with("https://") || self.api_base.starts_with("http://")) {
            return Err(e(
                "api_base",
                format!(
                    "`{}` must start with https:// or http://",
                    self.api_base.escape_default()
                ),
            ));
        }
        if crate::domain::language::parse_tag(&self.language).is_none() {
            return Err(e(
                "language",
                format!(
                    "`{}` is not a BCP 47 language tag (e.g. zh-Hans)",
                    self.language.escape_default()
                ),
            ));
        }
        if self.author.chars().any(char::is_control) {
            return Err(e("author", "must be one line".into()));
        }
        if !self.cover_image.is_file() {
            return Err(e(
                "cover_image",
                format!(
                    "{} is not a readable file (every WeChat article needs a cover image)",
                    self.cover_image.display()
                ),
            ));
        }
        if self.publish_settle_minutes == 0 {
            return Err(e(
                "publish_settle_minutes",
                "publish_settle_minutes must be at least 1 (the longest a publish may take; 0 would submit again while a publish is still in progress)".into(),
            ));
        }
        if self.poll_interval_seconds == 0 || self.timeout_seconds == 0 {
            return Err(e(
                "poll_interval_seconds",
                "poll_interval_seconds and timeout_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
