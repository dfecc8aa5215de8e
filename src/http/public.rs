//! The public side: one-click unsubscribe (RFC 8058), and the archive (`archive.rs`). GET shows a confirmation page with a
//! button (link scanners must not unsubscribe anyone); POST, from that button or from a
//! mail client's `List-Unsubscribe=One-Click`, unsubscribes at once. A token that does not
//! verify changes nothing. And `POST /webhooks/bounce`: a bounce event signed with the
//! `[bounces.webhook]` secret (checked by `Ops::bounce_webhook`), documented in the
//! OpenAPI document beside the admin API ([`webhook_openapi`]).

use super::error::{ApiError, ErrorBody};
use super::HttpContext;
use crate::domain::subscriber::SubscriberStatus;
use crate::ops::bounces::{BounceEvent, WebhookError};
use crate::ops::OpsError;
use crate::store::BounceRecorded;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Template)]
#[template(path = "public/unsubscribe.html")]
struct Page<'a> {
    publisher: &'a str,
    heading: &'a str,
    message: &'a str,
    email: Option<&'a str>,
    list: Option<&'a str>,
    confirm: bool,
}

/// The public router: /unsubscribe/{token} (GET, POST), /webhooks/bounce (POST), /healthz,
/// and with `[archive] enabled` the archive (`super::archive`; off, its paths answer 404).
/// Every response carries the security headers (`Referrer-Policy: no-referrer` keeps the
/// token in the URL from leaking to any other site).
pub fn public_router(ctx: HttpContext) -> Router {
    let mut router = Router::new()
        .route("/unsubscribe/{token}", get(confirm_page).post(unsubscribe))
        .route("/healthz", get(|| async { "ok" }))
        .route(WEBHOOK_PATH, post(bounce_webhook));
    if ctx.config.archive.enabled {
        router = router.merge(super::archive::routes());
    }
    super::with_security_headers(router.with_state(ctx))
}

fn page(ctx: &HttpContext, status: StatusCode, p: Page<'_>) -> Response {
    let p = Page {
        publisher: &ctx.config.publisher.names[0],
        ..p
    };
    match p.render() {
        Ok(html) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn invalid(ctx: &HttpContext) -> Response {
    page(
        ctx,
        StatusCode::BAD_REQUEST,
        Page {
            publisher: "",
            heading: "This unsubscribe link is not valid",
            message: "The link may have been cut or altered. Nothing was changed. Please use the link from the e-mail itself, or reply to the e-mail to ask us to unsubscribe you.",
            email: None,
            list: None,
            confirm: false,
        },
    )
}

fn gone(ctx: &HttpContext) -> Response {
    page(
        ctx,
        StatusCode::NOT_FOUND,
        Page {
            publisher: "",
            heading: "Subscription not found",
            message: "This address is no longer on the list, so there is nothing to unsubscribe.",
            email: None,
            list: None,
            confirm: false,
        },
    )
}

/// The page for an operation's refusal: a link that does not verify, a subscription
/// that is gone, or a store that did not answer (nothing changed in any case).
fn refused(ctx: &HttpContext, e: OpsError) -> Response {
    match e {
        OpsError::Invalid { .. } => invalid(ctx),
        OpsError::NotFound { .. } => gone(ctx),
        e => store_failed(ctx, e),
    }
}

async fn confirm_page(State(ctx): State<HttpContext>, Path(token): Path<String>) -> Response {
    let sub = match ctx.ops.unsubscribe_target(&token).await {
        Ok(s) => s,
        Err(e) => return refused(&ctx, e),
    };
    let active = sub.status == SubscriberStatus::Active;
    page(
        &ctx,
        StatusCode::OK,
        Page {
            publisher: "",
            heading: if active {
                "Unsubscribe?"
            } else {
                "You are already unsubscribed"
            },
            message: if active {
                "Press the button to stop receiving these e-mails at this address."
            } else {
                "This address receives nothing more from this list."
            },
            email: Some(&sub.email),
            list: Some(&sub.list),
            confirm: active,
        },
    )
}

async fn unsubscribe(State(ctx): State<HttpContext>, Path(token): Path<String>) -> Response {
    let sub = match ctx.ops.unsubscribe(&token).await {
        Ok(s) => s,
        Err(e) => return refused(&ctx, e),
    };
    page(
        &ctx,
        StatusCode::OK,
        Page {
            publisher: "",
            heading: "You are unsubscribed",
            message: "This address receives nothing more from this list, including bulletins already queued for it.",
            email: Some(&sub.email),
            list: Some(&sub.list),
            confirm: false,
        },
    )
}

fn store_failed(ctx: &HttpContext, e: OpsError) -> Response {
    tracing::error!(error = %e, "unsubscribe: store error");
    page(
        ctx,
        StatusCode::SERVICE_UNAVAILABLE,
        Page {
            publisher: "",
            heading: "Please try again later",
            message: "We could not record your request just now. Nothing was changed.",
            email: None,
            list: None,
            confirm: false,
        },
    )
}

const WEBHOOK_PATH: &str = "/webhooks/bounce";
/// The header with the event's time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Bulletin-Timestamp";
/// The header with `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Bulletin-Signature";

/// The webhook's part of the OpenAPI document (it is served on `public.bind`, not the
/// admin side; the admin document adds it with that server named).
pub fn webhook_openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<HttpContext>::new()
        .routes(routes!(bounce_webhook))
        .into_openapi()
}

/// A bounce event from a relay or provider, signed with the shared secret
///
/// Served on the public listener (`public.bind`). `X-Bulletin-Signature` is `sha256=`
/// and the hex HMAC-SHA256, under `[bounces.webhook]`'s secret, of
/// `X-Bulletin-Timestamp` (Unix seconds), a `.` and the body exactly as sent; the
/// timestamp must be within 5 minutes of the server's clock; an event (its `id`, else
/// its signature) is taken once. The event is matched to its delivery by `message_id`,
/// else by `recipient`, and the `[bounces]` policy applies.
#[utoipa::path(post, path = "/webhooks/bounce", tag = "public",
    request_body(content = BounceEvent, content_type = "application/json"),
    params(
        ("X-Bulletin-Timestamp" = i64, Header, description = "the event's time, Unix seconds"),
        ("X-Bulletin-Signature" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of `timestamp.body`"),
    ),
    responses(
        (status = 200, description = "recorded, with what it did", body = BounceRecorded),
        (status = 400, description = "the body is not a bounce event (code invalid_event)", body = ErrorBody),
        (status = 401, description = "a signature or timestamp missing or wrong (code bad_signature), or a timestamp more than 5 minutes away (code stale_timestamp)", body = ErrorBody),
        (status = 404, description = "no webhook secret configured: the endpoint is off (code webhook_disabled)", body = ErrorBody),
        (status = 409, description = "this event was received before (code replay); nothing changed", body = ErrorBody),
        (status = 503, description = "the store did not answer (code store_unavailable): send it again", body = ErrorBody),
    )
)]
async fn bounce_webhook(
    State(ctx): State<HttpContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match ctx
        .ops
        .bounce_webhook(header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), &body)
        .await
    {
        Ok(r) => Json(r).into_response(),
        Err(e) => {
            let (status, code) = match &e {
                WebhookError::Disabled => (StatusCode::NOT_FOUND, "webhook_disabled"),
                WebhookError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
                WebhookError::Stale(_) => (StatusCode::UNAUTHORIZED, "stale_timestamp"),
                WebhookError::Replay(_) => (StatusCode::CONFLICT, "replay"),
                WebhookError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_event"),
                WebhookError::Store(_) => {
                    tracing::error!(error = %e, "bounce webhook: store error");
                    (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
                }
            };
            if status == StatusCode::UNAUTHORIZED {
                tracing::warn!(reason = %e, "bounce webhook: refused");
            }
            ApiError::new(status, code, e.to_string()).into_response()
        }
    }
}
