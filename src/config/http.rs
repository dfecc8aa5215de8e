//! `[admin]` and `[public]`: where the two HTTP sides listen, the admin token, and what
//! each listener allows a client.

use super::secrets::{read_secret, shorter_than};
use super::{ConfigError, Env, Source};
use secrecy::SecretString;
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    bind: String,
    token_env: String,
    token_file: Option<PathBuf>,
    public_url: Option<String>,
    max_connections: u32,
    header_timeout_seconds: u64,
    request_timeout_seconds: u64,
    shutdown_grace_seconds: u64,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            token_env: "BULLETIN_ADMIN_TOKEN".into(),
            token_file: None,
            public_url: None,
            max_connections: 64,
            header_timeout_seconds: 10,
            request_timeout_seconds: 60,
            shutdown_grace_seconds: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPublic {
    bind: String,
    max_connections: u32,
    header_timeout_seconds: u64,
    request_timeout_seconds: u64,
    shutdown_grace_seconds: u64,
}

impl Default for RawPublic {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8081".into(),
            max_connections: 256,
            header_timeout_seconds: 10,
            request_timeout_seconds: 30,
            shutdown_grace_seconds: 5,
        }
    }
}

/// One listener's limits, as written in `[admin]` or `[public]`.
struct RawLimits {
    max_connections: u32,
    header_timeout_seconds: u64,
    request_timeout_seconds: u64,
    shutdown_grace_seconds: u64,
}

/// The admin HTTP API: where it listens and the bearer token it wants.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: std::net::SocketAddr,
    /// None: no token configured, so every endpoint but health refuses (503).
    pub token: Option<SecretString>,
    /// The environment variable the token is read from (for messages).
    pub token_env: String,
    /// The URL browsers reach the admin side at (e.g. through a TLS proxy); an
    /// `https://` one marks the session cookie `Secure`.
    pub public_url: Option<String>,
    pub limits: HttpLimits,
}

/// The public HTTP side (one-click unsubscribe).
#[derive(Debug, Clone)]
pub struct PublicConfig {
    pub bind: std::net::SocketAddr,
    pub limits: HttpLimits,
}

/// What one HTTP listener allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head within this is closed
    /// (idle keep-alive connections too).
    pub header_timeout: Duration,
    /// A request not answered within this (body read included) gets 408.
    pub request_timeout: Duration,
    /// On shutdown, connections still open this long after it began are dropped.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl RawLimits {
    /// Checks one listener's limits (`table` names it in errors).
    fn validate(
        self,
        src: &Source,
        span: Option<Range<usize>>,
        table: &str,
    ) -> Result<HttpLimits, ConfigError> {
        for (key, v) in [
            ("max_connections", u64::from(self.max_connections)),
            ("header_timeout_seconds", self.header_timeout_seconds),
            ("request_timeout_seconds", self.request_timeout_seconds),
        ] {
            if v == 0 {
                let key = format!("{table}.{key}");
                return Err(src.error(span, &key, "must be at least 1"));
            }
        }
        Ok(HttpLimits {
            max_connections: self.max_connections as usize,
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
        })
    }
}

/// Checks `[admin]` (absent: the defaults).
pub(super) fn validate_admin(
    raw: Option<Spanned<RawAdmin>>,
    src: &Source,
    env: Env,
) -> Result<AdminConfig, ConfigError> {
    let (span, a) = match raw {
        Some(a) => (Some(a.span()), a.into_inner()),
        None => (None, RawAdmin::default()),
    };
    let e = |key: &str, m: String| src.error(span.clone(), key, m);
    let bind = a.bind.parse().map_err(|_| {
        e(
            "admin.bind",
            format!(
                "`{}` is not an address and port such as 127.0.0.1:8080",
                a.bind.escape_default()
            ),
        )
    })?;
    let token = read_secret(env, &a.token_env, a.token_file.as_deref())
        .map_err(|m| e("admin.token_file", m.to_string()))?;
    if token.as_ref().is_some_and(|t| shorter_than(t, 16)) {
        return Err(e(
            "admin.token_env",
            format!(
                "the admin token (from {} or admin.token_file) must be at least 16 characters",
                a.token_env
            ),
        ));
    }
    let public_url = match a.public_url {
        Some(u) => {
            let u = u.trim_end_matches('/').to_string();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(e(
                    "admin.public_url",
                    format!(
                        "`{}` must start with http:// or https://",
                        u.escape_default()
                    ),
                ));
            }
            Some(u)
        }
        None => None,
    };
    let limits = RawLimits {
        max_connections: a.max_connections,
        header_timeout_seconds: a.header_timeout_seconds,
        request_timeout_seconds: a.request_timeout_seconds,
        shutdown_grace_seconds: a.shutdown_grace_seconds,
    }
    .validate(src, span.clone(), "admin")?;
    Ok(AdminConfig {
        bind,
        token,
        token_env: a.token_env,
        public_url,
        limits,
    })
}

/// Checks `[public]` (absent: the defaults).
pub(super) fn validate_public(
    raw: Option<Spanned<RawPublic>>,
    src: &Source,
) -> Result<PublicConfig, ConfigError> {
    let (span, p) = match raw {
        Some(p) => (Some(p.span()), p.into_inner()),
        None => (None, RawPublic::default()),
    };
    let limits = RawLimits {
        max_connections: p.max_connections,
        header_timeout_seconds: p.header_timeout_seconds,
        request_timeout_seconds: p.request_timeout_seconds,
        shutdown_grace_seconds: p.shutdown_grace_seconds,
    }
    .validate(src, span.clone(), "public")?;
    let bind = p.bind.parse().map_err(|_| {
        src.error(
            span,
            "public.bind",
            format!(
                "`{}` is not an address and port such as 0.0.0.0:8081",
                p.bind.escape_default()
            ),
        )
    })?;
    Ok(PublicConfig { bind, limits })
}
