//! The public side: one-click unsubscribe (RFC 8058), and the archive (`archive.rs`). GET shows a confirmation page with a
//! button (link scanners must not unsubscribe anyone); POST, from that button or from a
//! mail client's `List-Unsubscribe=One-Click`, unsubscribes at once. A token that does not
//! verify changes nothing.

use super::HttpContext;
use crate::domain::subscriber::SubscriberStatus;
use crate::ops::OpsError;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

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

/// The public router: /unsubscribe/{token} (GET, POST), /healthz, and with `[archive]
/// enabled` the archive (`super::archive`; off, its paths answer 404).
/// Every response carries the security headers (`Referrer-Policy: no-referrer` keeps the
/// token in the URL from leaking to any other site).
pub fn public_router(ctx: HttpContext) -> Router {
    let mut router = Router::new()
        .route("/unsubscribe/{token}", get(confirm_page).post(unsubscribe))
        .route("/healthz", get(|| async { "ok" }));
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
