//! The bulletins: the latest, and one bulletin's detail — per channel a progress bar
//! (sent, failed, suppressed, remaining, with the numbers in text beside it), its
//! failures with the server's answer, Pause / Resume / Retry failed behind a confirmation
//! page, and its ledger searchable by substring or domain, paged.

use super::{failed, gate, html, message, when, Chrome, Signed};
use crate::domain::{ChannelKind, Permission};
use crate::http::HttpContext;
use crate::ops::deliveries::{DeliveryQuery, RetryInput};
use crate::store::DeliveryRow;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// Ledger rows per page.
const PAGE: u32 = 50;

pub(super) struct Bar {
    channel: String,
    sent: u64,
    failed: u64,
    suppressed: u64,
    unconfirmed: u64,
    bounced: u64,
    remaining: u64,
    total: u64,
    /// Segment widths in percent, in the order sent, failed (with unconfirmed and
    /// bounced), suppressed, remaining.
    widths: [u64; 4],
}

struct Row {
    id: i64,
    subject: String,
    kind: String,
    state: String,
    created: String,
    total: u64,
    percent: u64,
}

#[derive(Template)]
#[template(path = "console/bulletins.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
}

/// The latest bulletins (HTML), each linking to its detail page
#[utoipa::path(get, path = "/console/bulletins", tag = "console",
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn list(State(ctx): State<HttpContext>, Signed(p): Signed) -> Response {
    let c = Chrome::new(&ctx, &p, "bulletins");
    let bs = match ctx.ops.bulletins(50).await {
        Ok(b) => b,
        Err(e) => return failed(&c, e, "/console"),
    };
    let rows = bs
        .into_iter()
        .map(|b| {
            let pr = b.deliveries.progress();
            Row {
                id: b.id,
                subject: b.subject,
                kind: b.kind,
                state: b.state,
                created: when(b.created_at),
                total: pr.total,
                percent: pr.percent_done(),
            }
        })
        .collect();
    html(StatusCode::OK, &ListPage { c, rows })
}

/// The ledger search of a bulletin's page.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// A substring of the address, or `@domain` for one domain.
    q: Option<String>,
    /// Only rows in this status.
    status: Option<String>,
    /// The page, from 1.
    page: Option<u32>,
    /// Set after a notice was sent: `repeat` when it had been sent already.
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/bulletin.html")]
struct DetailPage {
    c: Chrome,
    id: i64,
    subject: String,
    kind: String,
    state: String,
    created: String,
    lists: String,
    bars: Vec<Bar>,
    failures: Vec<DeliveryRow>,
    failures_total: i64,
    can_pause: bool,
    can_resume: bool,
    can_retry: bool,
    notice: Option<String>,
    q: String,
    status: String,
    search_error: Option<String>,
    ledger: Vec<DeliveryRow>,
    ledger_total: i64,
    page: u32,
    pages: u32,
    statuses: &'static [crate::domain::DeliveryStatus],
}

impl DetailPage {
    /// The query string of another page of the same search.
    fn page_link(&self, page: u32) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "/console/bulletins/{}?q={}&status={}&page={page}#ledger",
            self.id,
            enc(&self.q),
            enc(&self.status)
        )
    }
}

/// One bulletin's progress, failures, actions and ledger (HTML)
#[utoipa::path(get, path = "/console/bulletins/{id}", tag = "console",
    params(("id" = i64, Path, description = "bulletin id"), LedgerQuery),
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
        (status = 404, description = "no such bulletin", body = String, content_type = "text/html"),
    ))]
pub async fn detail(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    Path(id): Path<String>,
    q: Result<Query<LedgerQuery>, QueryRejection>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "bulletins");
    let Ok(id) = id.parse::<i64>() else {
        return message(
            &c,
            StatusCode::NOT_FOUND,
            "No such bulletin",
            "A bulletin id is a number.",
            "/console/bulletins",
        );
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let ops = &ctx.ops;
    let b = match ops.bulletin(id).await {
        Ok(b) => b,
        Err(e) => return failed(&c, e, "/console/bulletins"),
    };
    let mut bars = Vec::new();
    for ch in ChannelKind::ALL {
        let pr = b.deliveries.channel(*ch);
        if pr.total == 0 {
            continue;
        }
        let remaining = pr.open();
        let bad = pr.failed + pr.unconfirmed + pr.bounced;
        let pct = |n: u64| n * 100 / pr.total;
        let mut widths = [pct(pr.sent), pct(bad), pct(pr.suppressed), pct(remaining)];
        // Rounding down leaves a few percent: give them to the largest segment.
        let rest = 100u64.saturating_sub(widths.iter().sum::<u64>());
        if let Some(max) = (0..4).max_by_key(|i| widths[*i]) {
            widths[max] += rest;
        }
        bars.push(Bar {
            channel: ch.as_str().to_string(),
            sent: pr.sent,
            failed: pr.failed,
            suppressed: pr.suppressed,
            unconfirmed: pr.unconfirmed,
            bounced: pr.bounced,
            remaining,
            total: pr.total,
            widths,
        });
    }
    let failed_rows = ops
        .deliveries(&DeliveryQuery {
            bulletin: Some(id),
            status: Some("failed"),
            limit: 20,
            ..Default::default()
        })
        .await;
    let (failures, failures_total) = match failed_rows {
        Ok(pg) => (pg.deliveries.into_iter().map(|d| d.row).collect(), pg.total),
        Err(e) => return failed(&c, e, "/console/bulletins"),
    };
    let page = q.page.unwrap_or(1).max(1);
    let search = q.q.clone().unwrap_or_default();
    let status = q.status.clone().unwrap_or_default();
    let ledger = ops
        .deliveries(&DeliveryQuery {
            bulletin: Some(id),
            recipient_contains: Some(search.as_str()),
            status: Some(status.as_str()).filter(|s| !s.is_empty()),
            limit: PAGE,
            offset: (page - 1).saturating_mul(PAGE),
            ..Default::default()
        })
        .await;
    let (ledger, ledger_total, search_error) = match ledger {
        Ok(pg) => (
            pg.deliveries.into_iter().map(|d| d.row).collect(),
            pg.total,
            None,
        ),
        Err(e @ crate::ops::OpsError::Invalid { .. }) => (Vec::new(), 0, Some(e.to_string())),
        Err(e) => return failed(&c, e, "/console/bulletins"),
    };
    let pages = (ledger_total.max(0) as u32).div_ceil(PAGE).max(1);
    let progress = b.deliveries.progress();
    let notice = match q.notice.as_deref() {
        Some("repeat") => Some(format!(
            "This notice had already been sent as notice {id}: nothing new was queued. Its progress is below."
        )),
        Some(_) => Some(format!("Notice {id} is queued. Its progress is below.")),
        None => None,
    };
    html(
        StatusCode::OK,
        &DetailPage {
            can_pause: c.can_operate && b.state == "sending",
            can_resume: c.can_operate && b.state == "paused",
            can_retry: c.can_operate && progress.failed > 0,
            c,
            id,
            subject: b.subject,
            kind: b.kind,
            state: b.state,
            created: when(b.created_at),
            lists: b.lists.join(", "),
            bars,
            failures,
            failures_total,
            notice,
            q: search,
            status,
            search_error,
            ledger,
            ledger_total,
            page,
            pages,
            statuses: crate::domain::DeliveryStatus::ALL,
        },
    )
}

/// What the confirmation page asks about.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActionQuery {
    /// `pause`, `resume` or `retry` (the failed rows).
    action: String,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub(super) struct ConfirmPage {
    pub c: Chrome,
    pub title: String,
    pub question: String,
    /// Where the form posts.
    pub action: String,
    /// Hidden fields besides the CSRF token.
    pub fields: Vec<(String, String)>,
    pub button: String,
    pub back: String,
}

fn describe(action: &str, id: i64) -> Option<(&'static str, String, &'static str)> {
    Some(match action {
        "pause" => ("Pause", format!("Pause bulletin {id}? No further row of it is sent until it is resumed; rows being sent now finish."), "Pause now"),
        "resume" => ("Resume", format!("Resume bulletin {id}? Its remaining rows are sent again."), "Resume now"),
        "retry" => ("Retry failed", format!("Queue the failed rows of bulletin {id} again? Each is tried once more."), "Retry failed rows"),
        _ => return None,
    })
}

/// The confirmation step of Pause / Resume / Retry failed (HTML)
#[utoipa::path(get, path = "/console/bulletins/{id}/confirm", tag = "console",
    params(("id" = i64, Path, description = "bulletin id"), ActionQuery),
    responses(
        (status = 200, description = "the question and its button", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
        (status = 400, description = "an unknown action", body = String, content_type = "text/html"),
    ))]
pub async fn confirm(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    Path(id): Path<i64>,
    Query(q): Query<ActionQuery>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "bulletins");
    let back = format!("/console/bulletins/{id}");
    let Some((title, question, button)) = describe(&q.action, id) else {
        return message(
            &c,
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "The action is pause, resume or retry.",
            &back,
        );
    };
    html(
        StatusCode::OK,
        &ConfirmPage {
            c,
            title: format!("{title} bulletin {id}"),
            question,
            action: back.clone(),
            fields: vec![("action".into(), q.action)],
            button: button.into(),
            back,
        },
    )
}

/// The confirmed action's form.
#[derive(Deserialize, ToSchema)]
pub struct ActionForm {
    /// The session's CSRF token.
    csrf: String,
    /// `pause`, `resume` or `retry`.
    action: String,
}

/// Pause, resume, or retry the failed rows of a bulletin (the confirmed form)
#[utoipa::path(post, path = "/console/bulletins/{id}", tag = "console",
    params(("id" = i64, Path, description = "bulletin id")),
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "done: back to the bulletin's page"),
        (status = 400, description = "an unknown action", body = String, content_type = "text/html"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not operate", body = String, content_type = "text/html"),
        (status = 404, description = "no such bulletin", body = String, content_type = "text/html"),
        (status = 409, description = "not possible in the bulletin's state", body = String, content_type = "text/html"),
    ))]
pub async fn act(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "bulletins");
    if let Err(r) = gate(&ctx, &p, &headers, &f.csrf, Permission::Operate, &c) {
        return r;
    }
    let back = format!("/console/bulletins/{id}");
    let done = match f.action.as_str() {
        "pause" | "resume" => ctx
            .ops
            .set_paused(&p.actor, id, f.action == "pause")
            .await
            .map(|_| ()),
        "retry" => ctx
            .ops
            .retry(
                &p.actor,
                RetryInput {
                    bulletin: Some(id),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
        _ => {
            return message(
                &c,
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "The action is pause, resume or retry.",
                &back,
            )
        }
    };
    match done {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => failed(&c, e, &back),
    }
}
