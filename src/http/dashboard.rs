//! The dashboard: one server-rendered page (Askama, no JavaScript) on the admin bind with
//! bulletins and their progress per channel, recent failures with the servers' answers, a
//! delivery search and the schedules. Signed in by the bearer header, or by a login form
//! that sets an HttpOnly cookie derived from the token (never the token itself; `Secure`
//! when `admin.public_url` is https). Failed sign-ins back off per client address.

use super::throttle::{retry_after_seconds, LoginThrottle};
use super::{ClientAddr, HttpContext};
use crate::domain::{ChannelKind, DeliveryStatus};
use crate::store::{DeliveryFilter, DeliveryRow, StoreError};
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum_extra::extract::cookie::CookieJar;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "bulletin_session";
/// How long a browser keeps the session cookie.
const SESSION_SECONDS: u32 = 8 * 3600;

/// The cookie value for a token: HMAC(token, label). Changing the token ends every session.
fn session_value(token: &str) -> String {
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
    if let Some(given) = super::admin::bearer(headers) {
        return super::admin::token_matches(given.trim(), token);
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

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    publisher: &'a str,
    message: Option<&'a str>,
}

fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(b) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            b,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

pub async fn login_page(State(ctx): State<HttpContext>) -> Response {
    let unset = ctx.config.admin.token.is_none();
    html(
        if unset {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        },
        LoginPage {
            publisher: &ctx.config.publisher.names[0],
            message: unset.then_some("No admin token is configured, so nobody can sign in."),
        }
        .render(),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// The session cookie's attributes: `Secure` when browsers reach the admin side over
/// https (`admin.public_url`), so the cookie never travels in clear.
fn cookie_attributes(ctx: &HttpContext) -> &'static str {
    let https = ctx
        .config
        .admin
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    if https {
        "HttpOnly; Secure; SameSite=Lax; Path=/"
    } else {
        "HttpOnly; SameSite=Lax; Path=/"
    }
}

pub async fn login(
    State(ctx): State<HttpContext>,
    Extension(throttle): Extension<Arc<LoginThrottle>>,
    client: ClientAddr,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(token) = &ctx.config.admin.token else {
        return login_page(State(ctx)).await;
    };
    let now = ctx.clock.now();
    if let Some(wait) = client.0.and_then(|ip| throttle.locked(ip, now)) {
        let secs = retry_after_seconds(wait);
        let message =
            format!("Too many failed sign-ins from your address: try again in {secs} seconds.");
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            LoginPage {
                publisher: &ctx.config.publisher.names[0],
                message: Some(&message),
            }
            .render(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    if !super::admin::token_matches(f.token.trim(), token.expose_secret()) {
        if let Some(ip) = client.0 {
            if let Some(lock) = throttle.failed(ip, now) {
                tracing::warn!(client = %ip, lock_seconds = lock.as_secs(), "failed dashboard sign-ins: address locked out");
            }
        }
        return html(
            StatusCode::UNAUTHORIZED,
            LoginPage {
                publisher: &ctx.config.publisher.names[0],
                message: Some("That token is not valid."),
            }
            .render(),
        );
    }
    if let Some(ip) = client.0 {
        throttle.succeeded(ip);
    }
    let cookie = format!(
        "{COOKIE}={}; {}; Max-Age={SESSION_SECONDS}",
        session_value(token.expose_secret()),
        cookie_attributes(&ctx)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response()
}

pub async fn logout(State(ctx): State<HttpContext>) -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; {}; Max-Age=0", cookie_attributes(&ctx)),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

struct ChannelProgress {
    channel: String,
    sent: i64,
    failed: i64,
    suppressed: i64,
    /// No final reply, resending used up: may have been delivered.
    unconfirmed: i64,
    remaining: i64,
    total: i64,
    percent: i64,
}

struct BulletinView {
    id: i64,
    kind: String,
    subject: String,
    state: String,
    created: String,
    channels: Vec<ChannelProgress>,
}

struct ScheduleView {
    name: String,
    cron: String,
    timezone: String,
    last: String,
    next: String,
}

#[derive(Default, Deserialize)]
pub struct SearchQuery {
    recipient: Option<String>,
    status: Option<String>,
    bulletin: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage<'a> {
    publisher: &'a str,
    now: String,
    bulletins: Vec<BulletinView>,
    failures: Vec<DeliveryRow>,
    failures_total: i64,
    schedules: Vec<ScheduleView>,
    searched: bool,
    search_error: Option<String>,
    results: Vec<DeliveryRow>,
    q_recipient: String,
    q_status: String,
    q_bulletin: String,
    statuses: &'static [DeliveryStatus],
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn fmt(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub async fn dashboard(
    State(ctx): State<HttpContext>,
    Extension(throttle): Extension<Arc<LoginThrottle>>,
    client: ClientAddr,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Response {
    // A bearer header here is a sign-in like any other: it counts in the back-off.
    let bearer = super::admin::bearer(&headers).is_some();
    let now = ctx.clock.now();
    if let Some(wait) = client
        .0
        .filter(|_| bearer)
        .and_then(|ip| throttle.locked(ip, now))
    {
        let secs = retry_after_seconds(wait);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(secs))],
            format!("too many failed sign-ins from this address: try again in {secs} s"),
        )
            .into_response();
    }
    let ok = signed_in(&ctx, &headers);
    if let (true, Some(ip)) = (bearer, client.0) {
        if ok {
            throttle.succeeded(ip);
        } else if let Some(lock) = throttle.failed(ip, now) {
            tracing::warn!(client = %ip, lock_seconds = lock.as_secs(), "failed dashboard sign-ins: address locked out");
        }
    }
    if !ok {
        return Redirect::to("/login").into_response();
    }
    // A malformed query string is shown as an empty search, not an error page.
    let q = q.map(|Query(q)| q).unwrap_or_default();
    match render(&ctx, q).await {
        Ok(body) => html(StatusCode::OK, Ok(body)),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: store error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store did not answer: {e}"),
            )
                .into_response()
        }
    }
}

async fn render(ctx: &HttpContext, q: SearchQuery) -> Result<String, StoreError> {
    let store = &ctx.store;
    let now = ctx.clock.now();
    let mut bulletins = Vec::new();
    for b in store.bulletins(20).await? {
        let counts = store.delivery_counts(Some(b.id)).await?;
        let mut channels = Vec::new();
        for ch in ChannelKind::ALL {
            let n = |st: DeliveryStatus| {
                counts
                    .iter()
                    .filter(|c| c.channel == *ch && c.status == st)
                    .map(|c| c.count)
                    .sum::<i64>()
            };
            let total: i64 = counts
                .iter()
                .filter(|c| c.channel == *ch)
                .map(|c| c.count)
                .sum();
            if total == 0 {
                continue;
            }
            let (sent, failed, suppressed) = (
                n(DeliveryStatus::Sent),
                n(DeliveryStatus::Failed),
                n(DeliveryStatus::Suppressed),
            );
            let unconfirmed = n(DeliveryStatus::Unconfirmed);
            let remaining = total - sent - failed - suppressed - unconfirmed;
            channels.push(ChannelProgress {
                channel: ch.as_str().to_string(),
                sent,
                failed,
                suppressed,
                unconfirmed,
                remaining,
                total,
                percent: (total - remaining) * 100 / total,
            });
        }
        bulletins.push(BulletinView {
            id: b.id,
            kind: b.kind.to_string(),
            subject: b.subject,
            state: b.state.to_string(),
            created: fmt(b.created_at),
            channels,
        });
    }
    // The latest failures: the last page of failed rows.
    let failed = DeliveryFilter {
        status: Some(DeliveryStatus::Failed),
        ..Default::default()
    };
    let failures_total = store.count_deliveries(&failed).await?;
    let mut failures = store
        .deliveries(&DeliveryFilter {
            limit: 20,
            offset: (failures_total - 20).max(0) as u32,
            ..failed
        })
        .await?;
    failures.reverse();

    let mut schedules = Vec::new();
    for s in &ctx.config.schedules {
        schedules.push(ScheduleView {
            name: s.name.clone(),
            cron: s.cron_text.clone(),
            timezone: s.timezone.to_string(),
            last: store
                .last_firing(&s.name)
                .await?
                .map(fmt)
                .unwrap_or_else(|| "never".into()),
            next: s
                .next_after(now)
                .map(|n| {
                    format!(
                        "{} ({})",
                        n.with_timezone(&s.timezone).format("%Y-%m-%d %H:%M %Z"),
                        fmt(n)
                    )
                })
                .unwrap_or_default(),
        });
    }

    let searched = nonempty(&q.recipient).is_some()
        || nonempty(&q.status).is_some()
        || nonempty(&q.bulletin).is_some();
    let mut search_error = None;
    let mut results = Vec::new();
    if searched {
        let status = nonempty(&q.status)
            .map(|s| s.parse::<DeliveryStatus>().map_err(|e| e.to_string()))
            .transpose();
        let bulletin = nonempty(&q.bulletin)
            .map(|b| {
                b.parse::<i64>()
                    .map_err(|_| format!("bulletin `{}` is not a number", b.escape_default()))
            })
            .transpose();
        match (status, bulletin) {
            (Ok(status), Ok(bulletin)) => {
                results = store
                    .deliveries(&DeliveryFilter {
                        status,
                        bulletin,
                        recipient: nonempty(&q.recipient).map(str::to_string),
                        limit: 50,
                        ..Default::default()
                    })
                    .await?;
            }
            (Err(e), _) | (_, Err(e)) => search_error = Some(e),
        }
    }
    DashboardPage {
        publisher: &ctx.config.publisher.names[0],
        now: fmt(now),
        bulletins,
        failures,
        failures_total,
        schedules,
        searched,
        search_error,
        results,
        q_recipient: q.recipient.unwrap_or_default(),
        q_status: q.status.unwrap_or_default(),
        q_bulletin: q.bulletin.unwrap_or_default(),
        statuses: DeliveryStatus::ALL,
    }
    .render()
    .map_err(|e| StoreError::Corrupt(format!("dashboard template: {e}")))
}
