//! `[bounces]`: the VERP return path and its signing key, and the policy that turns
//! bounces and complaints into suppressions. Without the section, the From address is
//! the envelope sender (as before) and the default policy applies to what is ingested.

use super::secrets::{read_secret, shorter_than};
use super::{ConfigError, Env, Source};
use crate::bounce::verp::MIN_KEY_BYTES as MIN_VERP_KEY_BYTES;
use crate::bounce::{ReturnPath, Verp, VerpKey};
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
    let Some(template) = b.return_path else {
        return Ok(BouncesConfig { verp: None, policy });
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
        return Ok(BouncesConfig { verp: None, policy });
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
        policy,
    })
}
