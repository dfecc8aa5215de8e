//! The admin API: JSON in and out, behind a bearer token or a session (`auth.rs`),
//! errors as `{"error": {"code", "message"}}` (`error.rs`). Each handler takes the
//! signed-in [`Principal`], requires the permission its action needs (403 otherwise),
//! parses its input, calls one operation (`crate::ops`, passing the actor) and answers
//! with its typed result; it never sends. The routes are declared once, with their
//! OpenAPI documentation (utoipa): [`openapi`] is the document docs/openapi.json holds.
//! Endpoint groups added later live in `api/`, one file each.

use super::api;
use super::auth::{require_principal, Principal};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::throttle::LoginThrottle;
use super::HttpContext;
use crate::bounce::BounceKind;
use crate::domain::{ChannelKind, DeliveryStatus, Permission, RecordState};
use crate::notice::NoticeOutcome;
use crate::notice::Severity;
use crate::ops::bulletins::{BulletinSummary, PauseResult};
use crate::ops::deliveries::{DeliveryPage, DeliveryQuery, RetryInput, RetryOutcome};
use crate::ops::notices::NoticeInput;
use crate::ops::records::{Approval, PreviewFormat, PreviewInput, RecordDetail, RecordSummary};
use crate::ops::status::Readiness;
use crate::store::{BounceRow, BounceUndone};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The admin API's top level: what the generated document says before any route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "bulletin admin API",
        description = "Served by `bulletin serve` on admin.bind (default 127.0.0.1:8080). \
Every operation without `security: []` wants `Authorization: Bearer TOKEN` (the admin \
token, or a user's personal token from `bulletin users token`) or a signed-in session, and \
the role its action needs: reads any role; records upload `editor`; approve and send back \
`approver`; notices, pause/resume/retry, lists and subscribers, firing schedules, bounce \
undo `operator`; users `admin` (answered 403 otherwise). Every change is in the audit log \
under the signed-in name. It never sends: it writes the store and wakes the dispatcher. Generated from the router \
(`bulletin::http::openapi`); tests/it/openapi.rs fails when docs/openapi.json is stale."
    ),
    servers((url = "http://127.0.0.1:8080")),
    // Named only by query parameters, which do not bring their schemas along.
    components(schemas(PreviewFormat, RecordState, ChannelKind, DeliveryStatus)),
    security(("bearer" = [])),
    modifiers(&TokenAnswers),
    tags(
        (name = "health", description = "Liveness and readiness, open"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "api", description = "Records, bulletins, the delivery ledger and notices"),
        (name = "dashboard", description = "The HTML dashboard and its sign-in"),
        (name = "public", description = "Served on public.bind, not the admin side: the signed bounce webhook"),
        (name = "console", description = "The operator console's pages and forms (HTML; signed in by the session cookie)"),
    )
)]
struct ApiDoc;

/// The bearer scheme and the answers the token check gives before any handler runs,
/// shared by every operation behind it.
struct TokenAnswers;

impl Modify for TokenAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build()
        };
        let retry_after = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            ))
            .description(Some("seconds until the address may try again"))
            .build();
        for (name, description, headers) in [
            (
                UNAUTHORIZED,
                "no or wrong bearer token (code unauthorized)",
                None,
            ),
            (
                TOO_MANY_FAILURES,
                "too many failed sign-ins from this address (code too_many_failures): after 5 \
                 failures each further one locks the address out for 2, 4, 8 ... s, at most 15 \
                 minutes; even a right token is refused until then",
                Some(retry_after),
            ),
            (
                FORBIDDEN,
                "the signed-in role may not do this (code forbidden)",
                None,
            ),
        ] {
            let mut r = ResponseBuilder::new()
                .description(description)
                .content("application/json", error());
            if let Some(h) = headers {
                r = r.header("Retry-After", h);
            }
            components
                .responses
                .insert(name.into(), RefOr::T(r.build()));
        }
    }
}

const UNAUTHORIZED: &str = "Unauthorized";
const TOO_MANY_FAILURES: &str = "TooManyFailures";
const FORBIDDEN: &str = "Forbidden";

/// The routes behind the bearer token. Each handler's `#[utoipa::path]` is both its route
/// and its documentation: a route added here is documented, and nothing else is routed.
fn authed_routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(records))
        .routes(routes!(record))
        .routes(routes!(approve))
        .routes(routes!(preview))
        .routes(routes!(bulletins))
        .routes(routes!(bulletin))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(deliveries))
        .routes(routes!(retry))
        .routes(routes!(bounces))
        .routes(routes!(undo_bounce))
        .routes(routes!(notice))
        .routes(routes!(api::records::upload))
        .routes(routes!(api::records::send_back))
        .routes(routes!(api::lists::lists, api::lists::create_list))
        .routes(routes!(
            api::lists::subscribers,
            api::lists::add_subscriber,
            api::lists::remove_subscriber
        ))
        .routes(routes!(api::lists::import))
        .routes(routes!(api::lists::export))
        .routes(routes!(api::schedules::schedules))
        .routes(routes!(api::schedules::fire))
        .routes(routes!(api::users::users, api::users::add_user))
        .routes(routes!(api::users::disable))
        .routes(routes!(api::users::enable))
        .routes(routes!(api::users::password))
        .routes(routes!(api::users::token))
        .routes(routes!(api::audit::audit))
}

/// The routes without the guard. The dashboard resolves the bearer header or its session
/// cookie itself, and sends a browser that has neither to the login form.
fn open_routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(super::dashboard::dashboard))
        .routes(routes!(super::dashboard::bounce_raw))
        .routes(routes!(
            super::dashboard::login_page,
            super::dashboard::login
        ))
        .routes(routes!(super::dashboard::logout))
        .merge(super::console::routes())
}

/// Every operation of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The whole admin API, documented: [`authed_routes`] marked as wanting the token (with
/// the token check's own answers) and passed through `guard`, which puts the check in
/// front of them; then [`open_routes`], marked `security: []`. Both the router and the
/// document come from here.
fn api(
    guard: impl FnOnce(OpenApiRouter<HttpContext>) -> OpenApiRouter<HttpContext>,
) -> OpenApiRouter<HttpContext> {
    let mut authed = authed_routes();
    for item in authed.get_openapi_mut().paths.paths.values_mut() {
        for op in operations(item) {
            op.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            for (code, name) in [
                ("401", UNAUTHORIZED),
                ("429", TOO_MANY_FAILURES),
                ("403", FORBIDDEN),
            ] {
                op.responses
                    .responses
                    .entry(code.into())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
    let mut open = open_routes();
    for item in open.get_openapi_mut().paths.paths.values_mut() {
        for op in operations(item) {
            op.security = Some(Vec::new());
        }
    }
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(guard(authed))
        .merge(open)
}

/// The admin API's OpenAPI document, generated from the router's own declarations
/// (docs/openapi.json is this, written by `BULLETIN_BLESS=1 cargo test --test it openapi::`).
/// The bounce webhook, served on the public listener, is in it too: its path names
/// that server and its own security (the HMAC signature header).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue};
    let mut doc = api(|r| r).into_openapi();
    let mut hook = super::public::webhook_openapi();
    for item in hook.paths.paths.values_mut() {
        item.servers = Some(vec![utoipa::openapi::server::Server::new(
            "http://127.0.0.1:8081",
        )]);
        for op in operations(item) {
            op.security = Some(vec![SecurityRequirement::new(
                "webhook_signature",
                Vec::<String>::new(),
            )]);
        }
    }
    doc.merge(hook);
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "webhook_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Bulletin-Signature",
                "sha256= and the hex HMAC-SHA256, under [bounces.webhook]'s secret, of \
                 X-Bulletin-Timestamp, a `.` and the body",
            ))),
        );
    doc
}

/// [`openapi`] as the pretty-printed JSON of docs/openapi.json, ending in a newline.
pub fn openapi_json() -> String {
    let mut s = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    s.push('\n');
    s
}

/// The admin router: the authed routes behind the bearer token, then the open ones;
/// failed sign-ins (token or login form) back off per client address; every response
/// carries the security headers.
pub fn admin_router(ctx: HttpContext) -> Router {
    let throttle = Arc::new(LoginThrottle::new());
    let guard_ctx = ctx.clone();
    let (router, _) =
        api(move |r| r.route_layer(middleware::from_fn_with_state(guard_ctx, require_principal)))
            .split_for_parts();
    super::with_security_headers(
        router
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

/// The answer of `/healthz`.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Alive
///
/// The process answers; nothing else is checked.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process answers", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Store reachable and every migration applied; each channel's last attempt reported
///
/// Channels are reported, not judged: a relay refusing mail is an alert, not a reason to
/// take the daemon out of service.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "ready: the store answers and is migrated", body = Readiness),
        (status = 503, description = "the store is not reachable or not migrated (code store_unavailable)", body = ErrorBody),
    )
)]
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

/// Prometheus metrics (OpenMetrics text)
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "the process's metrics and the ledger's counts",
            body = String, content_type = "application/openmetrics-text"),
    )
)]
async fn metrics(State(ctx): State<HttpContext>, p: Principal) -> ApiResult<Response> {
    p.require(Permission::Read)?;
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

/// The query of `GET /api/records`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    /// Only records in this state.
    #[param(value_type = Option<RecordState>)]
    state: Option<String>,
}

/// Records, newest session first
#[utoipa::path(get, path = "/api/records", tag = "api",
    params(RecordsQuery),
    responses(
        (status = 200, description = "the records", body = Vec<RecordSummary>),
        (status = 400, description = "an unknown query parameter or state (code invalid_query)", body = ErrorBody),
    )
)]
async fn records(
    State(ctx): State<HttpContext>,
    p: Principal,
    q: Result<Query<RecordsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<RecordSummary>>> {
    p.require(Permission::Read)?;
    let Query(q) = q?;
    let rows = ctx
        .ops
        .records(q.state.as_deref())
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(rows))
}

/// One record with its content and approval
#[utoipa::path(get, path = "/api/records/{id}", tag = "api",
    params(("id" = String, Path, description = "record id")),
    responses(
        (status = 200, description = "the record", body = RecordDetail),
        (status = 404, description = "no such record (code record_not_found)", body = ErrorBody),
    )
)]
async fn record(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordDetail>> {
    p.require(Permission::Read)?;
    Ok(Json(ctx.ops.record(&id).await?))
}

/// Approve a draft (freezes its content hash), as the signed-in approver
///
/// `approved_by` is the signed-in user's name; a body, if any, is ignored. Approving an
/// approved record again answers `already_approved` and changes nothing.
#[utoipa::path(post, path = "/api/records/{id}/approve", tag = "api",
    params(("id" = String, Path, description = "record id")),
    responses(
        (status = 200, description = "outcome: approved or already_approved", body = Approval),
        (status = 404, description = "no such record (code record_not_found)", body = ErrorBody),
        (status = 422, description = "the record is not valid, or WeChat would refuse it (codes invalid_field, invalid_record, article_too_long)", body = ErrorBody),
    )
)]
async fn approve(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Approval>> {
    p.require(Permission::Approve)?;
    Ok(Json(ctx.ops.approve(&p.actor, &id).await?))
}

/// The query of `GET /api/records/{id}/preview`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    /// `html` (the default) or `text`.
    #[param(value_type = Option<PreviewFormat>)]
    format: Option<String>,
    /// The language version to show (its tag, e.g. `th`); default: the primary.
    language: Option<String>,
}

/// The record's bulletin as it will be sent
///
/// The e-mail's HTML or plain-text part, rendered as the dispatcher would render it now,
/// of the primary version or of the one `language` names.
#[utoipa::path(get, path = "/api/records/{id}/preview", tag = "api",
    params(("id" = String, Path, description = "record id"), PreviewQuery),
    responses(
        (status = 200, description = "HTML or text", content(
            (String = "text/html"),
            (String = "text/plain"),
        )),
        (status = 400, description = "an unknown query parameter or format (code invalid_query)", body = ErrorBody),
        (status = 404, description = "no such record, or no version in that language (code record_not_found)", body = ErrorBody),
    )
)]
async fn preview(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<PreviewQuery>, QueryRejection>,
) -> ApiResult<Response> {
    p.require(Permission::Read)?;
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
            language: q.language.as_deref(),
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

/// The query of `GET /api/bulletins`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct BulletinsQuery {
    /// How many, newest first: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Latest bulletins with delivery counts per channel and status
#[utoipa::path(get, path = "/api/bulletins", tag = "api",
    params(BulletinsQuery),
    responses(
        (status = 200, description = "the bulletins, newest first", body = Vec<BulletinSummary>),
        (status = 400, description = "an unknown query parameter or a limit out of range (code invalid_query)", body = ErrorBody),
    )
)]
async fn bulletins(
    State(ctx): State<HttpContext>,
    p: Principal,
    q: Result<Query<BulletinsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<BulletinSummary>>> {
    p.require(Permission::Read)?;
    let Query(q) = q?;
    let out = ctx
        .ops
        .bulletins(q.limit.unwrap_or(100))
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(out))
}

/// One bulletin: state and deliveries {total, remaining, by_channel}
#[utoipa::path(get, path = "/api/bulletins/{id}", tag = "api",
    params(("id" = i64, Path, description = "bulletin id")),
    responses(
        (status = 200, description = "the bulletin", body = BulletinSummary),
        (status = 400, description = "the id is not a number (code invalid_path)", body = ErrorBody),
        (status = 404, description = "no such bulletin (code bulletin_not_found)", body = ErrorBody),
    )
)]
async fn bulletin(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(raw): Path<String>,
) -> ApiResult<Json<BulletinSummary>> {
    p.require(Permission::Read)?;
    let id = parse_id("bulletin", &raw)?;
    Ok(Json(ctx.ops.bulletin(id).await?))
}

/// Pause a sending bulletin: its rows are not claimed
///
/// Pausing a paused bulletin answers `changed: false`.
#[utoipa::path(post, path = "/api/bulletins/{id}/pause", tag = "api",
    params(("id" = i64, Path, description = "bulletin id")),
    responses(
        (status = 200, description = "the bulletin's state", body = PauseResult),
        (status = 400, description = "the id is not a number (code invalid_path)", body = ErrorBody),
        (status = 404, description = "no such bulletin (code bulletin_not_found)", body = ErrorBody),
        (status = 409, description = "the bulletin cannot be paused or resumed in its state (code bulletin_not_pausable)", body = ErrorBody),
    )
)]
async fn pause(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(raw): Path<String>,
) -> ApiResult<Json<PauseResult>> {
    p.require(Permission::Operate)?;
    let id = parse_id("bulletin", &raw)?;
    Ok(Json(ctx.ops.set_paused(&p.actor, id, true).await?))
}

/// Resume a paused bulletin and wake the dispatcher
///
/// Resuming a bulletin that is not paused answers `changed: false`.
#[utoipa::path(post, path = "/api/bulletins/{id}/resume", tag = "api",
    params(("id" = i64, Path, description = "bulletin id")),
    responses(
        (status = 200, description = "the bulletin's state", body = PauseResult),
        (status = 400, description = "the id is not a number (code invalid_path)", body = ErrorBody),
        (status = 404, description = "no such bulletin (code bulletin_not_found)", body = ErrorBody),
        (status = 409, description = "the bulletin cannot be paused or resumed in its state (code bulletin_not_pausable)", body = ErrorBody),
    )
)]
async fn resume(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(raw): Path<String>,
) -> ApiResult<Json<PauseResult>> {
    p.require(Permission::Operate)?;
    let id = parse_id("bulletin", &raw)?;
    Ok(Json(ctx.ops.set_paused(&p.actor, id, false).await?))
}

/// The query of `GET /api/bounces`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct BouncesQuery {
    /// Only this kind.
    #[param(value_type = Option<BounceKind>)]
    kind: Option<String>,
    /// How many, newest first: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Bounces, complaints and replies received after the relay, newest first
///
/// Each is kept whole (`size` bytes) with what it was read as and the delivery it was
/// matched to (none: kept for an operator).
#[utoipa::path(get, path = "/api/bounces", tag = "api",
    params(BouncesQuery),
    responses(
        (status = 200, description = "the bounces, newest first", body = Vec<BounceRow>),
        (status = 400, description = "an unknown query parameter, kind or a limit out of range (code invalid_query)", body = ErrorBody),
    )
)]
async fn bounces(
    State(ctx): State<HttpContext>,
    p: Principal,
    q: Result<Query<BouncesQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<BounceRow>>> {
    p.require(Permission::Read)?;
    let Query(q) = q?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| k.parse::<BounceKind>())
        .transpose()
        .map_err(|e| ApiError::bad_query("kind", e))?;
    let out = ctx
        .ops
        .bounces(kind, q.limit.unwrap_or(100))
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(out))
}

/// Undo a wrong bounce: its delivery back to sent, the subscriptions it suppressed active
///
/// Undoing it again answers `undone: false` and changes nothing.
#[utoipa::path(post, path = "/api/bounces/{id}/undo", tag = "api",
    params(("id" = i64, Path, description = "bounce id")),
    responses(
        (status = 200, description = "what the undo restored", body = BounceUndone),
        (status = 400, description = "the id is not a number (code invalid_path)", body = ErrorBody),
        (status = 404, description = "no such bounce (code bounce_not_found)", body = ErrorBody),
    )
)]
async fn undo_bounce(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(raw): Path<String>,
) -> ApiResult<Json<BounceUndone>> {
    p.require(Permission::Operate)?;
    let id = parse_id("bounce", &raw)?;
    Ok(Json(ctx.ops.undo_bounce(&p.actor, id).await?))
}

/// The query of `GET /api/deliveries`: every filter given must hold.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// Bulletin id.
    bulletin: Option<i64>,
    /// The channel.
    #[param(value_type = Option<ChannelKind>)]
    channel: Option<String>,
    /// The row's status.
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    /// Address, exact.
    recipient: Option<String>,
    /// A search on the address, case-insensitive: `@example.org` finds that domain (and
    /// only it), anything else a substring (the console's ledger search).
    q: Option<String>,
    /// RFC 3339 time or a duration back from now (`24h`, `7d`); on the row's last update.
    #[param(example = "24h")]
    since: Option<String>,
    /// Only rows that may have been delivered twice.
    #[serde(default)]
    ambiguous: bool,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Rows to skip, default 0.
    offset: Option<u32>,
}

/// Ledger rows, filtered and paged, each with its attempts (history)
#[utoipa::path(get, path = "/api/deliveries", tag = "api",
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "one page of rows, newest update first", body = DeliveryPage),
        (status = 400, description = "an unknown query parameter or a value that does not parse (code invalid_query)", body = ErrorBody),
    )
)]
async fn deliveries(
    State(ctx): State<HttpContext>,
    p: Principal,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> ApiResult<Json<DeliveryPage>> {
    p.require(Permission::Read)?;
    let Query(q) = q?;
    let page = ctx
        .ops
        .deliveries(&DeliveryQuery {
            bulletin: q.bulletin,
            channel: q.channel.as_deref(),
            status: q.status.as_deref(),
            recipient: q.recipient.as_deref(),
            recipient_contains: q.q.as_deref(),
            since: q.since.as_deref(),
            ambiguous: q.ambiguous,
            limit: q.limit.unwrap_or(100),
            offset: q.offset.unwrap_or(0),
        })
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(page))
}

/// The body of `POST /api/deliveries/retry`: a bulletin or one delivery.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// Every matching row of this bulletin.
    #[schema(example = 12)]
    bulletin: Option<i64>,
    /// This one row.
    delivery: Option<i64>,
    /// Release held rows instead of failed ones.
    #[serde(default)]
    held: bool,
    /// Send unconfirmed rows (no final reply: they may have been delivered) again
    /// instead of failed ones.
    #[serde(default)]
    unconfirmed: bool,
    /// With `held` or `unconfirmed`: failed rows too.
    #[serde(default)]
    failed: bool,
}

/// Queue failed (or held) rows of a bulletin, or one row, again
#[utoipa::path(post, path = "/api/deliveries/retry", tag = "api",
    request_body = RetryBody,
    responses(
        (status = 200, description = "how many rows were queued again, and from which statuses", body = RetryOutcome),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 404, description = "no such bulletin or delivery (codes bulletin_not_found, delivery_not_found)", body = ErrorBody),
        (status = 422, description = "neither or both of bulletin and delivery (code invalid_field)", body = ErrorBody),
    )
)]
async fn retry(
    State(ctx): State<HttpContext>,
    p: Principal,
    body: Result<Json<RetryBody>, JsonRejection>,
) -> ApiResult<Json<RetryOutcome>> {
    p.require(Permission::Operate)?;
    let Json(b) = body?;
    let out = ctx
        .ops
        .retry(
            &p.actor,
            RetryInput {
                bulletin: b.bulletin,
                delivery: b.delivery,
                all: false,
                held: b.held,
                unconfirmed: b.unconfirmed,
                failed: b.failed,
            },
        )
        .await?;
    Ok(Json(out))
}

/// The body of `POST /api/notices`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    /// One line, at most 200 characters.
    #[schema(max_length = 200, example = "Venue change")]
    title: String,
    /// Markdown, at most 10,000 characters.
    #[schema(example = "Tomorrow's session moves to **Room 4**.")]
    body: String,
    #[serde(default = "default_severity")]
    #[schema(value_type = Severity, default = "info")]
    severity: String,
    /// The lists to send to, by name.
    #[schema(min_items = 1)]
    lists: Vec<String>,
    /// Idempotency key: a notice with a key already used is not queued again.
    key: Option<String>,
    /// Ignored (kept so older clients are not refused): the notice's `by` is the
    /// signed-in user.
    #[schema(deprecated)]
    by: Option<String>,
    /// `email` is always included; `wechat` adds one text mass send to the account's
    /// followers, refused when the 24 h mass-send quota is used up.
    #[serde(default)]
    #[schema(value_type = Vec<ChannelKind>)]
    channels: Vec<String>,
    /// The notice in other languages (`title` and `body` are in `[defaults] language`):
    /// each reader gets the version matching their language.
    #[serde(default)]
    versions: Vec<crate::notice::NoticeVersion>,
}

fn default_severity() -> String {
    "info".into()
}

/// Queue an urgent notice ahead of scheduled work (once per key or content window)
///
/// The same notice (same key, or same content within the window) is not queued twice:
/// the second call answers 200 with the first one's id.
#[utoipa::path(post, path = "/api/notices", tag = "api",
    request_body = NoticeBody,
    responses(
        (status = 201, description = "created", body = NoticeOutcome),
        (status = 200, description = "the same notice was already triggered: its id", body = NoticeOutcome),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 422, description = "a field is not valid, a list is unknown, or the WeChat quota is used up (codes invalid_field, unknown_list)", body = ErrorBody),
    )
)]
async fn notice(
    State(ctx): State<HttpContext>,
    p: Principal,
    body: Result<Json<NoticeBody>, JsonRejection>,
) -> ApiResult<Response> {
    p.require(Permission::Operate)?;
    let Json(b) = body?;
    let _ = b.by;
    let req = ctx.ops.check_notice(
        &p.actor,
        NoticeInput {
            title: &b.title,
            body: &b.body,
            severity: &b.severity,
            lists: &b.lists,
            key: b.key.as_deref(),
            channels: &b.channels,
            versions: &b.versions,
        },
    )?;
    // The notice is queued in a task of its own: a client that hangs up or times out
    // mid-request does not cut its fan-out short.
    let ops = ctx.ops.clone();
    let actor = p.actor.clone();
    let out: NoticeOutcome = tokio::spawn(async move { ops.send_notice(&actor, &req).await })
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
