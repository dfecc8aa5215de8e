//! `[unsubscribe]`: the public base URL of unsubscribe links and the key that signs them.

use super::secrets::{read_secret, shorter_than};
use super::{ConfigError, Env, Source};
use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUnsubscribe {
    base_url: String,
    secret_env: String,
    secret_file: Option<std::path::PathBuf>,
    allow_loopback: bool,
}

impl Default for RawUnsubscribe {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8081".into(),
            secret_env: "BULLETIN_UNSUBSCRIBE_SECRET".into(),
            secret_file: None,
            allow_loopback: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UnsubscribeConfig {
    /// Validated and normalised by [`check_base_url`].
    pub base_url: String,
    /// `base_url` points at this machine (loopback): links in e-mails would be dead.
    pub loopback: bool,
    /// `unsubscribe.allow_loopback`: send over SMTP with a loopback `base_url` all the
    /// same (tests, a local demo).
    pub allow_loopback: bool,
    /// None: a key generated once and kept in the store is used.
    pub secret: Option<SecretString>,
}

/// Checks `[unsubscribe]` (absent: the defaults).
pub(super) fn validate(
    raw: Option<Spanned<RawUnsubscribe>>,
    src: &Source,
    env: Env,
) -> Result<UnsubscribeConfig, ConfigError> {
    let (span, u) = match raw {
        Some(u) => (Some(u.span()), u.into_inner()),
        None => (None, RawUnsubscribe::default()),
    };
    let base_url = check_base_url(&u.base_url)
        .map_err(|m| src.error(span.clone(), "unsubscribe.base_url", m))?;
    let secret = read_secret(env, &u.secret_env, u.secret_file.as_deref())
        .map_err(|m| src.error(span.clone(), "unsubscribe.secret_file", m))?;
    if secret.as_ref().is_some_and(|s| shorter_than(s, 16)) {
        return Err(src.error(
            span,
            "unsubscribe.secret_env",
            "the unsubscribe secret must be at least 16 characters",
        ));
    }
    Ok(UnsubscribeConfig {
        loopback: is_loopback_url(&base_url),
        base_url,
        secret,
        allow_loopback: u.allow_loopback,
    })
}

/// Why an `unsubscribe.base_url` is refused; the URL is shown escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("`{shown}` is not an absolute URL ({reason})")]
    NotAbsolute { shown: String, reason: String },
    #[error("`{0}` must start with http:// or https://")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` must not carry a user name or password")]
    Credentials(String),
    #[error(
        "`{0}` must not have a query (?) or fragment (#): /unsubscribe/TOKEN is appended to it"
    )]
    QueryOrFragment(String),
}

/// Validates `unsubscribe.base_url`: an absolute http(s) URL with a host and no
/// credentials, query or fragment (`/unsubscribe/TOKEN` is appended to it). Returns it
/// normalised by the `url` crate, which percent-encodes what may not stand in a URL
/// (`"`, `<`, `>`, spaces); `'` and `&` are encoded too, so the URL can be written into
/// an HTML attribute or a mail header as it is. Without the trailing `/`.
pub fn check_base_url(raw: &str) -> Result<String, BaseUrlError> {
    let shown = raw.escape_default().to_string();
    let u = url::Url::parse(raw.trim()).map_err(|e| BaseUrlError::NotAbsolute {
        shown: shown.clone(),
        reason: e.to_string(),
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(BaseUrlError::Scheme(shown));
    }
    if u.host().is_none() {
        return Err(BaseUrlError::NoHost(shown));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(BaseUrlError::Credentials(shown));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(BaseUrlError::QueryOrFragment(shown));
    }
    Ok(u.as_str()
        .trim_end_matches('/')
        .replace('\'', "%27")
        .replace('&', "%26"))
}

/// Whether a URL's host is a loopback address (127.0.0.0/8, ::1) or `localhost`: a link
/// there is dead for every reader.
pub fn is_loopback_url(u: &str) -> bool {
    match url::Url::parse(u)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(a)) => a.is_loopback() || a.is_unspecified(),
        Some(url::Host::Ipv6(a)) => a.is_loopback() || a.is_unspecified(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}
