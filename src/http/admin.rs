//! The admin API: JSON in and out, behind the bearer token (`auth.rs`), errors as
//! `{"error": {"code", "message"}}` (`error.rs`). Each handler parses its input, calls
//! one operation (`crate::ops`) and answers with its typed result; it never sends.

use super::auth::require_token;
use super::error::{ApiError, ApiResult};
use super::throttle::LoginThrottle;
use super::HttpContext;
use crate::domain::ChannelKind;
use crate::notice::NoticeOutcome;
use crate::ops::bulletins::{BulletinSummary, PauseResult};
use crate::ops::deliveries::{DeliveryPage, DeliveryQuery, RetryInput, RetryOutcome};
use crate::ops::notices::NoticeInput;
use crate::ops::records::{
    Approval, ApproveInput, PreviewFormat, PreviewInput, RecordDetail, RecordSummary,
};
use crate::ops::status::Readiness;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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

fn parse_id(what: &str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("{what} id `{}` is not a number", raw.escape_default()),
        )
    })
}

/// `/healthz`: the process answers.
#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn readyz(State(ctx): State<HttpContext>) -> Response {
    // Channels are reported, not judged: a relay refusing mail is an alert, not a
    // reason to take the daemon out of service.
    match ctx.ops.readiness().await {
        Ok(r) => Json::<Readiness>(r).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("store not ready: {e}"),
        )
        .into_response(),
    }
}

async fn metrics(State(ctx): State<HttpContext>) -> ApiResult<Response> {
    let body = ctx.ops.metrics_text().await?;
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

async fn records(
    State(ctx): State<HttpContext>,
    q: Result<Query<RecordsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<RecordSummary>>> {
    let Query(q) = q?;
    let rows = ctx
        .ops
        .records(q.state.as_deref())
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(rows))
}

async fn record(
    State(ctx): State<HttpContext>,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordDetail>> {
    Ok(Json(ctx.ops.record(&id).await?))
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
) -> ApiResult<Json<Approval>> {
    let Json(body) = body?;
    let done = ctx
        .ops
        .approve(ApproveInput {
            id: &id,
            by: &body.by,
        })
        .await?;
    Ok(Json(done))
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
    let format = q
        .format
        .as_deref()
        .unwrap_or("html")
        .parse::<PreviewFormat>()
        .map_err(|e| ApiError::bad_query("format", e))?;
    let p = ctx
        .ops
        .preview(PreviewInput {
            id: &id,
            channel: ChannelKind::Email,
            format,
        })
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            format!("{}; charset=utf-8", p.content_type),
        )],
        p.body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulletinsQuery {
    limit: Option<u32>,
}

async fn bulletins(
    State(ctx): State<HttpContext>,
    q: Result<Query<BulletinsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<BulletinSummary>>> {
    let Query(q) = q?;
    let out = ctx
        .ops
        .bulletins(q.limit.unwrap_or(100))
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(out))
}

async fn bulletin(
    State(ctx): State<HttpContext>,
    Path(raw): Path<String>,
) -> ApiResult<Json<BulletinSummary>> {
    let id = parse_id("bulletin", &raw)?;
    Ok(Json(ctx.ops.bulletin(id).await?))
}

async fn pause(
    State(ctx): State<HttpContext>,
    Path(raw): Path<String>,
) -> ApiResult<Json<PauseResult>> {
    let id = parse_id("bulletin", &raw)?;
    Ok(Json(ctx.ops.set_paused(id, true).await?))
}

async fn resume(
    State(ctx): State<HttpContext>,
    Path(raw): Path<String>,
) -> ApiResult<Json<PauseResult>> {
    let id = parse_id("bulletin", &raw)?;
    Ok(Json(ctx.ops.set_paused(id, false).await?))
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

async fn deliveries(
    State(ctx): State<HttpContext>,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> ApiResult<Json<DeliveryPage>> {
    let Query(q) = q?;
    let page = ctx
        .ops
        .deliveries(&DeliveryQuery {
            bulletin: q.bulletin,
            channel: q.channel.as_deref(),
            status: q.status.as_deref(),
            recipient: q.recipient.as_deref(),
            since: q.since.as_deref(),
            ambiguous: q.ambiguous,
            limit: q.limit.unwrap_or(100),
            offset: q.offset.unwrap_or(0),
        })
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(page))
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
) -> ApiResult<Json<RetryOutcome>> {
    let Json(b) = body?;
    let out = ctx
        .ops
        .retry(RetryInput {
            bulletin: b.bulletin,
            delivery: b.delivery,
            all: false,
            held: b.held,
            unconfirmed: b.unconfirmed,
            failed: b.failed,
        })
        .await?;
    Ok(Json(out))
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
    let req = ctx.ops.check_notice(NoticeInput {
        title: &b.title,
        body: &b.body,
        severity: &b.severity,
        lists: &b.lists,
        by: &b.by,
        key: b.key.as_deref(),
        channels: &b.channels,
    })?;
    // The notice is queued in a task of its own: a client that hangs up or times out
    // mid-request does not cut its fan-out short.
    let ops = ctx.ops.clone();
    let out: NoticeOutcome = tokio::spawn(async move { ops.send_notice(&req).await })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("queueing the notice failed: {e}"),
            )
        })??;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}
