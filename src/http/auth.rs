//! Signing in to the admin side, shared by the API and the dashboard: the bearer token
//! (SHA-256 of both sides compared in constant time) with its middleware, the
//! dashboard's session cookie (HMAC of the token, never the token itself), and the
//! back-off after failed sign-ins.

use super::error::ApiError;
use super::throttle::{retry_after_seconds, LoginThrottle};
use super::HttpContext;
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
