//! Signing in to the admin side, shared by the API and the pages: who a request comes
//! from ([`Principal`]: a bearer token, the bootstrap administrator's or a user's
//! personal one, else the server-side session named by the cookie), the middleware in
//! front of the API that resolves it once and counts failed bearer tokens in the
//! back-off, and the CSRF token bound to a session. Roles are checked only through
//! [`Principal::require`].

use super::error::ApiError;
use super::throttle::{retry_after_seconds, LoginThrottle};
use super::HttpContext;
use crate::domain::{Actor, Permission};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The session cookie.
pub const COOKIE: &str = "bulletin_session";

/// The header an API request made with the session cookie carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session id the request's cookies (every `Cookie` header) carry, if any.
pub(super) fn session_id(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

/// Who the request comes from, without counting failures: a bearer token (never falling
/// back to the cookie when one is given), else the session cookie. None: nobody.
pub(super) async fn resolve(
    ctx: &HttpContext,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    if let Some(given) = bearer(headers) {
        return Ok(ctx
            .ops
            .actor_for_token(given)
            .await?
            .map(|actor| Principal {
                actor,
                session: None,
            }));
    }
    let Some(id) = session_id(headers) else {
        return Ok(None);
    };
    Ok(ctx
        .ops
        .actor_for_session(&id)
        .await?
        .map(|actor| Principal {
            actor,
            session: Some(id),
        }))
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

/// The middleware in front of the API: resolves the [`Principal`] once (a bearer token,
/// else the session cookie) and hands it to the handler, or answers 401; a wrong bearer
/// token counts in the router's [`LoginThrottle`], and a locked-out address gets 429.
pub(super) async fn require_principal(
    State(ctx): State<HttpContext>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = super::peer(req.extensions()).map(|a| a.ip());
    let throttle = req.extensions().get::<Arc<LoginThrottle>>().cloned();
    let now = ctx.clock.now();
    let guard = ip.zip(throttle);
    if let Some(wait) = guard.as_ref().and_then(|(ip, th)| th.locked(*ip, now)) {
        return locked_out(wait);
    }
    let with_bearer = bearer(req.headers()).is_some();
    match resolve(&ctx, req.headers()).await {
        Err(e) => e.into_response(),
        Ok(None) if with_bearer => {
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
        Ok(None) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in, or send the header `Authorization: Bearer TOKEN`",
        )
        .into_response(),
        Ok(Some(p)) => {
            if let (true, Some((ip, th))) = (with_bearer, &guard) {
                th.succeeded(*ip);
            }
            // A change made with the session cookie (a browser) must carry the session's
            // CSRF token in a header, which no other site's form or script can set.
            let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe && p.session.is_some() {
                let given = req
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !p.csrf_ok(given) {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        "csrf",
                        format!(
                            "a change made with the session cookie needs the session's CSRF token in the header `{CSRF_HEADER}`"
                        ),
                    )
                    .into_response();
                }
            }
            req.extensions_mut().insert(p);
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
    fn the_session_cookie_is_found_among_others() {
        let id = |c: &[&str]| session_id(&headers(c));
        assert_eq!(id(&["bulletin_session=abc123"]).as_deref(), Some("abc123"));
        assert_eq!(
            id(&["theme=dark; bulletin_session=abc123; lang=en"]).as_deref(),
            Some("abc123")
        );
        assert_eq!(
            id(&["theme=dark", "bulletin_session=abc123"]).as_deref(),
            Some("abc123")
        );
        // RFC 6265 §5.2 trims whitespace around the name and the value.
        assert_eq!(
            id(&["theme=dark; bulletin_session = abc123"]).as_deref(),
            Some("abc123")
        );
        assert_eq!(id(&[]), None);
        assert_eq!(id(&["bulletin_session="]), None);
        assert_eq!(id(&["xbulletin_session=abc123"]), None);
        assert_eq!(id(&["other=bulletin_session=abc123"]), None);
    }
}

/// The signed-in person behind a request, for every handler that needs one: a bearer
/// token (the bootstrap administrator's, or a user's personal token) or the server-side
/// session the cookie names; a disabled user's token or session is no one. Rejects with
/// 401 when nobody is signed in. Handlers check a permission with
/// [`Principal::require`] before calling an operation, and pass `actor` to it.
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
        // Behind [`require_principal`], resolved once already.
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        resolve(ctx, &parts.headers).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in, or send the header `Authorization: Bearer TOKEN`",
            )
        })
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
