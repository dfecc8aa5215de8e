//! The admin API: JSON in and out, bearer token compared in constant time, errors as
//! `{"error": {"code", "message"}}`. It writes the store and wakes the dispatcher; it never sends.

use super::throttle::{retry_after_seconds, LoginThrottle};
use super::HttpContext;
use crate::domain::{ChannelKind, DeliveryStatus, RecordState};
use crate::notice::{NoticeError, NoticeRequest};
use crate::store::{DeliveryFilter, PauseOutcome, StoreError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// An API error: HTTP status, a stable machine code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {message}"),
        )
    }
    fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Refused(m) => Self::new(StatusCode::CONFLICT, "refused", m),
            other => {
                tracing::error!(error = %other, "store error in the admin API");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    other.to_string(),
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Declares a route table once: a const listing (method, path) for the OpenAPI check and
/// a function adding exactly those routes, so the list cannot drift from the router.
macro_rules! route_table {
    ($list:ident, $add:ident; $($method:ident $path:literal => $handler:expr),+ $(,)?) => {
        pub const $list: &[(&str, &str)] = &[$((stringify!($method), $path)),+];
        fn $add(r: Router<HttpContext>) -> Router<HttpContext> {
            r$(.route($path, $method($handler)))+
        }
    };
}

route_table!(AUTHED_ROUTES, add_authed_routes;
    get "/metrics" => metrics,
    get "/api/records" => records,
    get "/api/records/{id}" => record,
    post "/api/records/{id}/approve" => approve,
    get "/api/records/{id}/preview" => preview,
    get "/api/bulletins" => bulletins,
    get "/api/bulletins/{id}" => bulletin,
    post "/api/bulletins/{id}/pause" => pause,
    post "/api/bulletins/{id}/resume" => resume,
    get "/api/deliveries" => deliveries,
    post "/api/deliveries/retry" => retry,
    post "/api/notices" => notice,
);

// The dashboard checks the bearer header or its session cookie itself, and sends a
// browser that has neither to the login form.
route_table!(OPEN_ROUTES, add_open_routes;
    get "/healthz" => healthz,
    get "/readyz" => readyz,
    get "/dashboard" => super::dashboard::dashboard,
    get "/login" => super::dashboard::login_page,
    post "/login" => super::dashboard::login,
    post "/logout" => super::dashboard::logout,
);

/// The admin router: [`AUTHED_ROUTES`] behind the bearer token, then [`OPEN_ROUTES`];
/// failed sign-ins (token or login form) back off per client address; every response
/// carries the security headers.
pub fn admin_router(ctx: HttpContext) -> Router {
    let throttle = Arc::new(LoginThrottle::new());
    super::with_security_headers(
        add_open_routes(
            add_authed_routes(Router::new())
                .route_layer(middleware::from_fn_with_state(ctx.clone(), require_token)),
        )
        .fallback(|| async {
            ApiError::not_found(
                "no_such_endpoint",
                "no such endpoint; see docs/openapi.json",
            )
        })
        .with_state(ctx)
        .layer(Extension(throttle)),
    )
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

/// The credentials of an `Authorization: Bearer …` header (the scheme is case-insensitive).
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
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

async fn require_token(State(ctx): State<HttpContext>, req: Request, next: Next) -> Response {
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

fn parse_id(what: &str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("{what} id `{}` is not a number", raw.escape_default()),
        )
    })
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(ctx): State<HttpContext>) -> Response {
    match ctx.store.ready().await {
        // Channels are reported, not judged: a relay refusing mail is an alert, not a
        // reason to take the daemon out of service.
        Ok(()) => Json(json!({
            "status": "ready",
            "store": "ok",
            "channels": ctx.metrics.last_attempts(),
        }))
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("store not ready: {e}"),
        )
        .into_response(),
    }
}

async fn metrics(State(ctx): State<HttpContext>) -> ApiResult<Response> {
    let body = ctx.metrics.render(ctx.store.as_ref()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    state: Option<String>,
}

fn record_summary(r: &crate::store::StoredRecord) -> Value {
    json!({
        "id": r.record.id, "title": r.record.title, "held_on": r.record.held_on,
        "language": r.record.language, "state": r.state, "approved_by": r.approved_by,
        "approved_at": r.approved_at, "published_at": r.published_at,
        "content_hash": r.content_hash,
    })
}

async fn records(
    State(ctx): State<HttpContext>,
    q: Result<Query<RecordsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let state = q
        .state
        .as_deref()
        .map(|s| s.parse::<RecordState>())
        .transpose()
        .map_err(|m| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("state: {m}"),
            )
        })?;
    let rows = ctx.store.records(state).await?;
    Ok(Json(Value::Array(
        rows.iter().map(record_summary).collect(),
    )))
}

async fn record(State(ctx): State<HttpContext>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let r = ctx
        .store
        .record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("record_not_found", format!("no record `{id}`")))?;
    Ok(Json(json!(r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    by: String,
}

async fn approve(
    State(ctx): State<HttpContext>,
    Path(id): Path<String>,
    body: Result<Json<ApproveBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body?;
    let by = body.by.trim();
    crate::domain::text::check_line(by, 200, true).map_err(|m| ApiError::invalid("by", m))?;
    if let Some(why) =
        crate::channel::wechat::approval_refusal(&ctx.config, ctx.store.as_ref(), &id).await?
    {
        return Err(ApiError::invalid("id", why));
    }
    if let Some(r) = ctx.store.record(&id).await? {
        crate::render::check_approvable(&ctx.config, &r.record)
            .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "article_too_long", m))?;
    }
    let outcome = match ctx.store.approve_record(&id, by, ctx.clock.now()).await {
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::not_found(
                "record_not_found",
                format!("no record `{id}`"),
            ))
        }
        other => other?,
    };
    Ok(Json(json!({ "id": id, "outcome": outcome, "by": by })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    format: Option<String>,
}

async fn preview(
    State(ctx): State<HttpContext>,
    Path(id): Path<String>,
    q: Result<Query<PreviewQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let html = match q.format.as_deref() {
        None | Some("html") => true,
        Some("text") => false,
        Some(o) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("format: `{}` is not html or text", o.escape_default()),
            ))
        }
    };
    let r = ctx
        .store
        .record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("record_not_found", format!("no record `{id}`")))?;
    let widths = vec![ctx
        .store
        .record_images(&id)
        .await?
        .iter()
        .map(|i| i.width)
        .collect::<Vec<_>>()];
    let rendered = crate::render::render_bulletin(
        std::slice::from_ref(&r.record),
        &widths,
        &ctx.config.publisher,
        &ctx.config.default_language,
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "render_failed",
            e.to_string(),
        )
    })?;
    let url = format!("{}/unsubscribe/PREVIEW", ctx.config.unsubscribe.base_url);
    Ok(if html {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::render::personalise(&rendered.html, &url),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "Subject: {}\n\n{}",
                rendered.subject,
                crate::render::personalise(&rendered.text, &url)
            ),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulletinsQuery {
    limit: Option<u32>,
}

/// Counts as {channel: {status: n}} plus totals.
async fn progress(ctx: &HttpContext, id: i64) -> ApiResult<Value> {
    let counts = ctx.store.delivery_counts(Some(id)).await?;
    let mut by_channel = serde_json::Map::new();
    let (mut total, mut open) = (0i64, 0i64);
    for c in &counts {
        let entry = by_channel
            .entry(c.channel.to_string())
            .or_insert_with(|| json!({}));
        entry[c.status.as_str()] = json!(c.count);
        total += c.count;
        if !c.status.is_terminal() {
            open += c.count;
        }
    }
    Ok(json!({ "total": total, "remaining": open, "by_channel": by_channel }))
}

fn bulletin_json(b: &crate::store::StoredBulletin, progress: Value) -> Value {
    json!({
        "id": b.id, "kind": b.kind, "schedule": b.schedule, "subject": b.subject,
        "language": b.language, "state": b.state, "lists": b.lists, "records": b.record_ids,
        "channels": b.channels, "created_at": b.created_at, "deliveries": progress,
    })
}

async fn bulletins(
    State(ctx): State<HttpContext>,
    q: Result<Query<BulletinsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit: must be 1 to 1000",
        ));
    }
    let mut out = Vec::new();
    for b in ctx.store.bulletins(limit).await? {
        let p = progress(&ctx, b.id).await?;
        out.push(bulletin_json(&b, p));
    }
    Ok(Json(Value::Array(out)))
}

async fn bulletin(
    State(ctx): State<HttpContext>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("bulletin", &raw)?;
    let b =
        ctx.store.bulletin(id).await?.ok_or_else(|| {
            ApiError::not_found("bulletin_not_found", format!("no bulletin {id}"))
        })?;
    let p = progress(&ctx, id).await?;
    Ok(Json(bulletin_json(&b, p)))
}

async fn set_paused(ctx: &HttpContext, raw: &str, paused: bool) -> ApiResult<Json<Value>> {
    let id = parse_id("bulletin", raw)?;
    let outcome = match ctx.store.set_bulletin_paused(id, paused).await {
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::not_found(
                "bulletin_not_found",
                format!("no bulletin {id}"),
            ))
        }
        other => other?,
    };
    let b =
        ctx.store.bulletin(id).await?.ok_or_else(|| {
            ApiError::not_found("bulletin_not_found", format!("no bulletin {id}"))
        })?;
    if outcome == PauseOutcome::NotApplicable {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "bulletin_not_pausable",
            format!(
                "bulletin {id} is `{}`: only a sending bulletin can be paused, and only a paused one resumed",
                b.state
            ),
        ));
    }
    if !paused {
        ctx.wake.notify_one();
    }
    Ok(Json(
        json!({ "id": id, "state": b.state, "changed": outcome == PauseOutcome::Changed }),
    ))
}

async fn pause(State(ctx): State<HttpContext>, Path(raw): Path<String>) -> ApiResult<Json<Value>> {
    set_paused(&ctx, &raw, true).await
}

async fn resume(State(ctx): State<HttpContext>, Path(raw): Path<String>) -> ApiResult<Json<Value>> {
    set_paused(&ctx, &raw, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    bulletin: Option<i64>,
    channel: Option<String>,
    status: Option<String>,
    recipient: Option<String>,
    since: Option<String>,
    #[serde(default)]
    ambiguous: bool,
    limit: Option<u32>,
    offset: Option<u32>,
}

fn bad_query(field: &str, m: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("{field}: {m}"),
    )
}

fn parse_since(s: &str, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        bad_query(
            "since",
            format!(
                "`{}`: give an RFC 3339 time or a duration such as 24h",
                s.escape_default()
            ),
        )
    })?;
    Ok(now - chrono::Duration::from_std(d).map_err(|e| bad_query("since", e))?)
}

async fn deliveries(
    State(ctx): State<HttpContext>,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad_query("limit", "must be 1 to 1000"));
    }
    let filter = DeliveryFilter {
        bulletin: q.bulletin,
        channel: q
            .channel
            .as_deref()
            .map(|c| c.parse::<ChannelKind>())
            .transpose()
            .map_err(|m| bad_query("channel", m))?,
        status: q
            .status
            .as_deref()
            .map(|s| s.parse::<DeliveryStatus>())
            .transpose()
            .map_err(|m| bad_query("status", m))?,
        recipient: q.recipient.clone(),
        since: q
            .since
            .as_deref()
            .map(|s| parse_since(s, ctx.clock.now()))
            .transpose()?,
        ambiguous_only: q.ambiguous,
        limit,
        offset: q.offset.unwrap_or(0),
    };
    let rows = ctx.store.deliveries(&filter).await?;
    let total = ctx.store.count_deliveries(&filter).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let attempts = ctx.store.attempts(&ids).await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = json!(r);
            v["history"] = json!(attempts
                .iter()
                .filter(|a| a.delivery_id == r.id)
                .collect::<Vec<_>>());
            v
        })
        .collect();
    Ok(Json(json!({
        "total": total, "limit": filter.limit, "offset": filter.offset, "deliveries": out,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    bulletin: Option<i64>,
    delivery: Option<i64>,
    #[serde(default)]
    held: bool,
    #[serde(default)]
    unconfirmed: bool,
    #[serde(default)]
    failed: bool,
}

async fn retry(
    State(ctx): State<HttpContext>,
    body: Result<Json<RetryBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(b) = body?;
    if b.bulletin.is_none() && b.delivery.is_none() {
        return Err(ApiError::invalid(
            "bulletin",
            "give `bulletin` (its failed rows) or `delivery` (one row)",
        ));
    }
    if let Some(id) = b.bulletin {
        if ctx.store.bulletin(id).await?.is_none() {
            return Err(ApiError::not_found(
                "bulletin_not_found",
                format!("no bulletin {id}"),
            ));
        }
    }
    if let Some(id) = b.delivery {
        if ctx.store.delivery(id).await?.is_none() {
            return Err(ApiError::not_found(
                "delivery_not_found",
                format!("no delivery {id}"),
            ));
        }
    }
    let mut statuses = Vec::new();
    if b.failed || !(b.held || b.unconfirmed) {
        statuses.push(DeliveryStatus::Failed);
    }
    if b.held {
        statuses.push(DeliveryStatus::Held);
    }
    if b.unconfirmed {
        statuses.push(DeliveryStatus::Unconfirmed);
    }
    let n = ctx
        .store
        .requeue(b.bulletin, b.delivery, &statuses, ctx.clock.now())
        .await?;
    if n > 0 {
        ctx.wake.notify_one();
    }
    Ok(Json(json!({
        "requeued": n,
        "statuses": statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    title: String,
    body: String,
    #[serde(default = "default_severity")]
    severity: String,
    lists: Vec<String>,
    key: Option<String>,
    #[serde(default = "default_by")]
    by: String,
    /// `email` (always) and optionally `wechat`.
    #[serde(default)]
    channels: Vec<String>,
}

fn default_severity() -> String {
    "info".into()
}
fn default_by() -> String {
    "admin-api".into()
}

async fn notice(
    State(ctx): State<HttpContext>,
    body: Result<Json<NoticeBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body?;
    let req = NoticeRequest::parse(
        &b.title,
        &b.body,
        &b.severity,
        &b.lists,
        &b.by,
        b.key.as_deref(),
    )
    .and_then(|r| r.with_channels(&b.channels))
    .map_err(notice_error)?;
    // The notice is queued in a task of its own: a client that hangs up or times out
    // mid-request does not cut its fan-out short.
    let notices = ctx.notices.clone();
    let out = tokio::spawn(async move { notices.send(&req).await })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("queueing the notice failed: {e}"),
            )
        })?
        .map_err(notice_error)?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(out))).into_response())
}

fn notice_error(e: NoticeError) -> ApiError {
    match e {
        NoticeError::Invalid { field, message } => ApiError::invalid(&field, message),
        e @ NoticeError::UnknownList(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_list",
            e.to_string(),
        ),
        NoticeError::Store(s) => s.into(),
        e @ NoticeError::Render(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "render_failed",
            e.to_string(),
        ),
    }
}
