//! Signing in to the admin side, shared by the API and the dashboard: the bearer token
//! (SHA-256 of both sides compared in constant time) with its middleware, the
//! dashboard's session cookie (HMAC of the token, never the token itself), and the
//! back-off after failed sign-ins.

use super::error::ApiError;
use super::throttle::{retry_after_seconds, LoginThrottle};
use super::HttpContext;
use crate::domain::{Actor, Permission};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The dashboard's session cookie.
pub const COOKIE: &str = "bulletin_session";

/// The cookie value for a token: HMAC(token, label). Changing the token ends every session.
pub(super) fn session_value(token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"bulletin-dashboard-session-v1");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether the request carries the bearer token or a valid session cookie.
pub fn signed_in(ctx: &HttpContext, headers: &HeaderMap) -> bool {
    let Some(token) = &ctx.config.admin.token else {
        return false;
    };
    let token = token.expose_secret();
    if let Some(given) = bearer(headers) {
        return token_matches(given.trim(), token);
    }
    has_session(headers, &session_value(token))
}

/// Whether the request's cookies (every `Cookie` header) include the session cookie with
/// the value `want`, compared in constant time.
fn has_session(headers: &HeaderMap, want: &str) -> bool {
    CookieJar::from_headers(headers)
        .get(COOKIE)
        .is_some_and(|c| bool::from(c.value().as_bytes().ct_eq(want.as_bytes())))
}

/// The credentials of an `Authorization: Bearer …` header (the scheme is case-insensitive).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Equal-length digests compared in constant time: neither content nor length leaks.
pub(super) fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// 429 for an address locked out after failed sign-ins.
fn locked_out(wait: std::time::Duration) -> Response {
    let secs = retry_after_seconds(wait);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many failed sign-ins from this address: try again in {secs} s"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The middleware in front of the API: the bearer token, or 401 (503 while no token is
/// configured); failures count in the router's [`LoginThrottle`].
pub(super) async fn require_token(
    State(ctx): State<HttpContext>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = &ctx.config.admin.token else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_token_unset",
            format!(
                "no admin token is configured: set the environment variable {} or admin.token_file",
                ctx.config.admin.token_env
            ),
        )
        .into_response();
    };
    let ip = super::peer(req.extensions()).map(|a| a.ip());
    let throttle = req.extensions().get::<Arc<LoginThrottle>>().cloned();
    let now = ctx.clock.now();
    let guard = ip.zip(throttle);
    if let Some(wait) = guard.as_ref().and_then(|(ip, th)| th.locked(*ip, now)) {
        return locked_out(wait);
    }
    match bearer(req.headers()) {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the header `Authorization: Bearer TOKEN`",
        )
        .into_response(),
        Some(t) if !token_matches(t.trim(), expected.expose_secret()) => {
            if let Some((ip, th)) = &guard {
                if let Some(lock) = th.failed(*ip, now) {
                    tracing::warn!(client = %ip, lock_seconds = lock.as_secs(), "failed admin sign-ins: address locked out");
                }
            }
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
            .into_response()
        }
        Some(_) => {
            if let Some((ip, th)) = &guard {
                th.succeeded(*ip);
            }
            next.run(req).await
        }
    }
}

#[cfg(test)]
mod session_cookie_tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_compared_whole() {
        let yes = |c: &[&str]| has_session(&headers(c), "abc123");
        assert!(yes(&["bulletin_session=abc123"]));
        assert!(yes(&["theme=dark; bulletin_session=abc123; lang=en"]));
        assert!(yes(&["theme=dark", "bulletin_session=abc123"]));
        // RFC 6265 §5.2 trims whitespace around the name and the value.
        assert!(yes(&["theme=dark; bulletin_session = abc123"]));
        assert!(!yes(&[]));
        assert!(!yes(&["bulletin_session=abc1234"]));
        assert!(!yes(&["bulletin_session=abc12"]));
        assert!(!yes(&["xbulletin_session=abc123"]));
        assert!(!yes(&["other=bulletin_session=abc123"]));
    }
}

/// The signed-in person behind a request, for every handler that needs one: today the
/// bearer token or the dashboard cookie, both the bootstrap administrator. Rejects with
/// 401 when nobody is signed in. Handlers check a permission with
/// [`Principal::require`] before calling an operation, and pass `actor` to it.
///
/// The console's seam: named users, personal tokens and server-side sessions change how
/// this is built, not how handlers use it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    /// The browser session this request came with (none for a bearer token): what the
    /// CSRF token of its forms is bound to.
    pub session: Option<String>,
}

impl Principal {
    /// `Ok` when the actor's role grants `p`; otherwise 403 naming what is missing.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.actor.may(p) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} (role {}) may not {}",
                self.actor.name,
                self.actor.role,
                p.as_str()
            ),
        ))
    }

    /// The CSRF token every state-changing form of this session carries (empty without a
    /// session: a bearer request is not sent by a browser on its own).
    pub fn csrf_token(&self) -> String {
        self.session.as_deref().map(csrf_of).unwrap_or_default()
    }

    /// Whether `given` is this session's CSRF token (always true for a bearer request),
    /// compared in constant time.
    pub fn csrf_ok(&self, given: &str) -> bool {
        match &self.session {
            None => true,
            Some(s) => bool::from(csrf_of(s).as_bytes().ct_eq(given.as_bytes())),
        }
    }
}

/// The CSRF token bound to a session: HMAC(session, label), so it changes with the session.
fn csrf_of(session: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(session.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"bulletin-csrf-v1");
    hex::encode(mac.finalize().into_bytes())
}

impl axum::extract::FromRequestParts<HttpContext> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ctx: &HttpContext,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in, or send the header `Authorization: Bearer TOKEN`",
            )
        };
        let Some(token) = &ctx.config.admin.token else {
            return Err(unauthorized());
        };
        let token = token.expose_secret();
        if let Some(given) = bearer(&parts.headers) {
            return if token_matches(given.trim(), token) {
                Ok(Principal {
                    actor: Actor::bootstrap_admin(),
                    session: None,
                })
            } else {
                Err(unauthorized())
            };
        }
        let want = session_value(token);
        if has_session(&parts.headers, &want) {
            return Ok(Principal {
                actor: Actor::bootstrap_admin(),
                session: Some(want),
            });
        }
        Err(unauthorized())
    }
}

#[cfg(test)]
mod principal_tests {
    use super::*;
    use crate::domain::Role;

    fn principal(role: Role, session: Option<&str>) -> Principal {
        Principal {
            actor: Actor {
                name: "mai".into(),
                role,
            },
            session: session.map(str::to_string),
        }
    }

    #[test]
    fn a_role_without_the_permission_is_refused_with_403_naming_it() {
        let viewer = principal(Role::Viewer, None);
        assert!(viewer.require(Permission::Read).is_ok());
        let err = viewer.require(Permission::Operate).unwrap_err();
        let r = err.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(principal(Role::Operator, None)
            .require(Permission::Operate)
            .is_ok());
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_session() {
        let a = principal(Role::Admin, Some("session-a"));
        let b = principal(Role::Admin, Some("session-b"));
        assert!(a.csrf_ok(&a.csrf_token()));
        assert!(!a.csrf_ok(&b.csrf_token()));
        assert!(!a.csrf_ok(""));
        assert_eq!(a.csrf_token().len(), 64);
        // A bearer request carries no cookie, so no browser can forge it.
        assert!(principal(Role::Admin, None).csrf_ok(""));
    }
}
