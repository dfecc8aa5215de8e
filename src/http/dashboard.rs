//! The dashboard: one server-rendered page (Askama, no JavaScript) on the admin bind with
//! bulletins and their progress per channel, recent failures with the servers' answers,
//! the latest bounces (filtered by kind by links, each with its raw message at
//! `/dashboard/bounces/{id}/raw`, read-only), a delivery search and the schedules. Signed in by a bearer header, or by the login form
//! (name and password, or the bootstrap admin token): a server-side session whose random
//! id is the HttpOnly, SameSite=Strict cookie (`Secure` when `admin.public_url` is
//! https); signing out (a POST carrying the session's CSRF token) ends it. Failed
//! sign-ins back off per client address and per user name.

use super::auth::{bearer, resolve, Principal, COOKIE};
use super::throttle::{retry_after_seconds, LoginThrottle};
use super::{ClientAddr, HttpContext};
use crate::bounce::BounceKind;
use crate::domain::{ChannelKind, DeliveryStatus};
use crate::ops::deliveries::DeliveryQuery;
use crate::ops::OpsError;
use crate::store::DeliveryRow;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::Path;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// How long a browser keeps the session cookie: the session's own life.
const SESSION_SECONDS: i64 = crate::ops::users::SESSION_HOURS * 3600;

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

/// The sign-in form (HTML)
#[utoipa::path(get, path = "/login", tag = "dashboard",
    responses(
        (status = 200, description = "the form", body = String, content_type = "text/html"),
    )
)]
pub async fn login_page(State(ctx): State<HttpContext>) -> Response {
    login_form(&ctx, StatusCode::OK, None)
}

fn login_form(ctx: &HttpContext, status: StatusCode, message: Option<&str>) -> Response {
    html(
        status,
        LoginPage {
            publisher: &ctx.config.publisher.names[0],
            message,
        }
        .render(),
    )
}

/// The sign-in form's fields: a name and password, or the bootstrap admin token.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// The user's name.
    #[serde(default)]
    name: String,
    /// The user's password.
    #[serde(default)]
    password: String,
    /// Instead of a name and password: the admin token (the bootstrap administrator).
    #[serde(default)]
    token: String,
}

/// The session cookie's attributes: HttpOnly (no script reads it), SameSite=Strict (no
/// other site's page sends it), `Secure` when browsers reach the admin side over https
/// (`admin.public_url`), so the cookie never travels in clear.
fn cookie_attributes(ctx: &HttpContext) -> &'static str {
    let https = ctx
        .config
        .admin
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    if https {
        "HttpOnly; Secure; SameSite=Strict; Path=/"
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    }
}

/// 429: the login page with the wait.
fn login_locked(ctx: &HttpContext, wait: std::time::Duration, whose: &str) -> Response {
    let secs = retry_after_seconds(wait);
    let message = format!("Too many failed sign-ins {whose}: try again in {secs} seconds.");
    let mut r = login_form(ctx, StatusCode::TOO_MANY_REQUESTS, Some(&message));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Sign in with name and password (or the admin token): starts a server-side session and redirects to /dashboard
#[utoipa::path(post, path = "/login", tag = "dashboard",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed in: the session cookie is set"),
        (status = 401, description = "wrong name or password (or token): the form again", body = String, content_type = "text/html"),
        (status = 429, description = "too many failed sign-ins from this address or as this user: the login page with the wait", body = String, content_type = "text/html",
            headers(("Retry-After" = u32, description = "seconds until a sign-in may be tried again"))),
        (status = 503, description = "the store did not answer", body = String, content_type = "text/html"),
    )
)]
pub async fn login(
    State(ctx): State<HttpContext>,
    Extension(throttle): Extension<Arc<LoginThrottle>>,
    client: ClientAddr,
    Form(f): Form<LoginForm>,
) -> Response {
    let now = ctx.clock.now();
    if let Some(wait) = client.0.and_then(|ip| throttle.locked(ip, now)) {
        return login_locked(&ctx, wait, "from your address");
    }
    let by_token = f.name.trim().is_empty() && !f.token.trim().is_empty();
    let name = f.name.trim();
    if !by_token {
        if let Some(wait) = throttle.user_locked(name, now) {
            return login_locked(&ctx, wait, "as this user");
        }
    }
    let outcome = if by_token {
        ctx.ops.login_with_admin_token(&f.token, client.0).await
    } else {
        let password = SecretString::from(f.password);
        ctx.ops.login(name, &password, client.0).await
    };
    let session = match outcome {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => {
            if let Some(ip) = client.0 {
                if let Some(lock) = throttle.failed(ip, now) {
                    tracing::warn!(client = %ip, lock_seconds = lock.as_secs(), "failed sign-ins: address locked out");
                }
            }
            if !by_token {
                if let Some(lock) = throttle.user_failed(name, now) {
                    tracing::warn!(
                        lock_seconds = lock.as_secs(),
                        "failed sign-ins: user name locked out"
                    );
                }
            }
            let message = if by_token {
                "That token is not valid."
            } else {
                "That name and password do not match an enabled user."
            };
            return login_form(&ctx, StatusCode::UNAUTHORIZED, Some(message));
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in: store error");
            return login_form(
                &ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The store did not answer; try again."),
            );
        }
    };
    if let Some(ip) = client.0 {
        throttle.succeeded(ip);
    }
    if !by_token {
        throttle.user_succeeded(name);
    }
    let cookie = format!(
        "{COOKIE}={}; {}; Max-Age={SESSION_SECONDS}",
        session.id.expose_secret(),
        cookie_attributes(&ctx)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response()
}

/// The sign-out form's field.
#[derive(Deserialize, ToSchema)]
pub struct LogoutForm {
    /// The session's CSRF token (every page's forms carry it).
    #[serde(default)]
    csrf: String,
}

/// Sign out: ends the server-side session and clears the cookie
///
/// The form must carry the session's CSRF token: another site cannot sign a user out.
#[utoipa::path(post, path = "/logout", tag = "dashboard",
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed out: to the login form"),
        (status = 403, description = "the CSRF token is missing or wrong: nothing changed", body = String, content_type = "text/plain"),
    )
)]
pub async fn logout(
    State(ctx): State<HttpContext>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // No form (or a malformed one) carries no CSRF token: refused below if a session
    // would end.
    let f = form.map(|Form(f)| f).unwrap_or(LogoutForm {
        csrf: String::new(),
    });
    let clear = [(
        header::SET_COOKIE,
        format!("{COOKIE}=; {}; Max-Age=0", cookie_attributes(&ctx)),
    )];
    match resolve(&ctx, &headers).await {
        Ok(Some(
            p @ Principal {
                session: Some(_), ..
            },
        )) => {
            if !p.csrf_ok(&f.csrf) {
                return (
                    StatusCode::FORBIDDEN,
                    "the form's CSRF token is missing or wrong: nothing changed",
                )
                    .into_response();
            }
            let id = p.session.clone().unwrap_or_default();
            if let Err(e) = ctx.ops.logout(&p.actor, &id).await {
                tracing::error!(error = %e, "sign-out: store error");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store did not answer; the session was not ended",
                )
                    .into_response();
            }
            (clear, Redirect::to("/login")).into_response()
        }
        // No live session: nothing to end.
        _ => (clear, Redirect::to("/login")).into_response(),
    }
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

/// The dashboard's delivery search; a malformed one is shown as an empty search.
#[derive(Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Search: address.
    recipient: Option<String>,
    /// Search: status.
    status: Option<String>,
    /// Search: bulletin id.
    bulletin: Option<String>,
    /// The bounces shown: only this kind (hard, soft, delayed, delivered, complaint,
    /// auto_reply, unmatched).
    bounce_kind: Option<String>,
}

/// One received bounce as the page shows it.
struct BounceView {
    id: i64,
    received: String,
    kind: String,
    recipient: String,
    code: String,
    diagnostic: String,
    delivery: Option<i64>,
    bulletin: Option<i64>,
    undone: bool,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage<'a> {
    publisher: &'a str,
    /// Who is signed in, with the role.
    actor: String,
    /// The session's CSRF token, for the sign-out form.
    csrf: String,
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
    bounces: Vec<BounceView>,
    bounce_kind: String,
    bounce_kinds: &'static [BounceKind],
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn fmt(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The dashboard page (HTML); without the header or session cookie, a 303 to /login
///
/// The bearer header works here too and counts in the sign-in back-off.
#[utoipa::path(get, path = "/dashboard", tag = "dashboard",
    params(SearchQuery),
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
        (status = 429, description = "too many failed sign-ins from this address (with a bearer header)", body = String, content_type = "text/plain",
            headers(("Retry-After" = u32, description = "seconds until the address may try again"))),
        (status = 503, description = "the store did not answer", body = String, content_type = "text/plain"),
    )
)]
pub async fn dashboard(
    State(ctx): State<HttpContext>,
    Extension(throttle): Extension<Arc<LoginThrottle>>,
    client: ClientAddr,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Response {
    // A bearer header here is a sign-in like any other: it counts in the back-off.
    let bearer = bearer(&headers).is_some();
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
    let principal = match resolve(&ctx, &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let (true, Some(ip)) = (bearer, client.0) {
        if principal.is_some() {
            throttle.succeeded(ip);
        } else if let Some(lock) = throttle.failed(ip, now) {
            tracing::warn!(client = %ip, lock_seconds = lock.as_secs(), "failed dashboard sign-ins: address locked out");
        }
    }
    let Some(principal) = principal else {
        return Redirect::to("/login").into_response();
    };
    // A malformed query string is shown as an empty search, not an error page.
    let q = q.map(|Query(q)| q).unwrap_or_default();
    match render(&ctx, &principal, q).await {
        Ok(body) => html(StatusCode::OK, body),
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

/// The page, from the operations' results; Err: the store did not answer.
async fn render(
    ctx: &HttpContext,
    principal: &Principal,
    q: SearchQuery,
) -> Result<Result<String, askama::Error>, OpsError> {
    let ops = &ctx.ops;
    let now = ctx.clock.now();
    let mut bulletins = Vec::new();
    for b in ops.bulletins(20).await? {
        let mut channels = Vec::new();
        for ch in ChannelKind::ALL {
            let p = b.deliveries.channel(*ch);
            if p.total == 0 {
                continue;
            }
            let n = |v: u64| v as i64;
            channels.push(ChannelProgress {
                channel: ch.as_str().to_string(),
                sent: n(p.sent),
                failed: n(p.failed),
                suppressed: n(p.suppressed),
                unconfirmed: n(p.unconfirmed),
                remaining: n(p.open()),
                total: n(p.total),
                percent: n(p.percent_done()),
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
    let failures = ops.latest_failures(20).await?;

    let schedules = ops
        .schedules()
        .await?
        .into_iter()
        .map(|s| ScheduleView {
            last: s.last_firing.map(fmt).unwrap_or_else(|| "never".into()),
            next: match (s.next_firing_local(), s.next_firing) {
                (Some(local), Some(n)) => format!("{local} ({})", fmt(n)),
                _ => String::new(),
            },
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
        })
        .collect();

    // The latest bounces, of the kind asked for (an unknown kind shows them all).
    let bounce_kind = nonempty(&q.bounce_kind).and_then(|k| k.parse::<BounceKind>().ok());
    let bounces = ops
        .bounces(bounce_kind, 20)
        .await?
        .into_iter()
        .map(|b| BounceView {
            id: b.id,
            received: fmt(b.received_at),
            kind: b.kind.to_string(),
            recipient: b.recipient.unwrap_or_default(),
            code: b.status_code.unwrap_or_default(),
            diagnostic: b.diagnostic.unwrap_or_default(),
            delivery: b.delivery_id,
            bulletin: b.bulletin_id,
            undone: b.undone_at.is_some(),
        })
        .collect();

    let searched = nonempty(&q.recipient).is_some()
        || nonempty(&q.status).is_some()
        || nonempty(&q.bulletin).is_some();
    let mut search_error = None;
    let mut results = Vec::new();
    if searched {
        let query = |bulletin| DeliveryQuery {
            status: nonempty(&q.status),
            bulletin,
            recipient: nonempty(&q.recipient),
            limit: 50,
            ..Default::default()
        };
        let bulletin = nonempty(&q.bulletin)
            .map(|b| {
                b.parse::<i64>()
                    .map_err(|_| format!("bulletin `{}` is not a number", b.escape_default()))
            })
            .transpose();
        // A bad status is reported before a bad bulletin id.
        let checked = ops
            .delivery_filter(&query(None))
            .map_err(search_message)
            .and(bulletin);
        match checked {
            Ok(bulletin) => results = ops.delivery_rows(&query(bulletin)).await?,
            Err(e) => search_error = Some(e),
        }
    }
    Ok(DashboardPage {
        publisher: &ctx.config.publisher.names[0],
        actor: format!("{} ({})", principal.actor.name, principal.actor.role),
        csrf: principal.csrf_token(),
        now: fmt(now),
        bulletins,
        failures: failures.rows,
        failures_total: failures.total,
        schedules,
        searched,
        search_error,
        results,
        q_recipient: q.recipient.unwrap_or_default(),
        q_status: q.status.unwrap_or_default(),
        q_bulletin: q.bulletin.unwrap_or_default(),
        statuses: DeliveryStatus::ALL,
        bounces,
        bounce_kind: bounce_kind.map(|k| k.to_string()).unwrap_or_default(),
        bounce_kinds: BounceKind::ALL,
    }
    .render())
}

/// A refused search field, as the page shows it (the reason alone).
fn search_message(e: OpsError) -> String {
    match e {
        OpsError::Invalid { message, .. } => message,
        other => other.to_string(),
    }
}

/// A received bounce's raw message, as text (read-only); without the header or session
/// cookie, a 303 to /login
#[utoipa::path(get, path = "/dashboard/bounces/{id}/raw", tag = "dashboard",
    params(("id" = i64, Path, description = "bounce id")),
    responses(
        (status = 200, description = "the message byte for byte as received", body = String, content_type = "text/plain"),
        (status = 303, description = "sign in first"),
        (status = 404, description = "no such bounce", body = String, content_type = "text/plain"),
        (status = 503, description = "the store did not answer", body = String, content_type = "text/plain"),
    )
)]
pub async fn bounce_raw(
    State(ctx): State<HttpContext>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Response {
    match resolve(&ctx, &headers).await {
        Ok(Some(_)) => {}
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return e.into_response(),
    }
    let Ok(id) = raw_id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, "no such bounce").into_response();
    };
    match ctx.ops.bounce_raw(id).await {
        Ok(raw) => (
            [
                // Shown as text, never rendered: a returned message may carry HTML.
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            raw,
        )
            .into_response(),
        Err(OpsError::NotFound { message, .. }) => (StatusCode::NOT_FOUND, message).into_response(),
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
