//! The audit log page: every action by anyone, newest first, filterable by who, what,
//! which object and since when, paged.

use super::{failed, html, when, Chrome, Signed};
use crate::http::HttpContext;
use crate::ops::audit::AuditQuery;
use crate::store::AuditRow;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

/// Entries per page.
const PAGE: u32 = 50;

/// The audit page's filters (empty: any).
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AuditFilters {
    /// Who, exactly.
    actor: Option<String>,
    /// The action, exactly (`record.approve`).
    action: Option<String>,
    /// The object, exactly (`bulletin:12`).
    object: Option<String>,
    /// RFC 3339 time, or a duration back from now (`24h`, `7d`).
    since: Option<String>,
    /// The page, from 1.
    page: Option<u32>,
}

struct Line {
    at: String,
    actor: String,
    action: String,
    object: String,
    before: String,
    after: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Page {
    c: Chrome,
    lines: Vec<Line>,
    total: i64,
    actor: String,
    action: String,
    object: String,
    since: String,
    error: Option<String>,
    page: u32,
    pages: u32,
}

impl Page {
    fn page_link(&self, page: u32) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "/console/audit?actor={}&action={}&object={}&since={}&page={page}",
            enc(&self.actor),
            enc(&self.action),
            enc(&self.object),
            enc(&self.since)
        )
    }
}

fn json(v: &Option<serde_json::Value>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

/// The audit log, filterable (HTML)
#[utoipa::path(get, path = "/console/audit", tag = "console",
    params(AuditFilters),
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn page(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    q: Result<Query<AuditFilters>, QueryRejection>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "audit");
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let page = q.page.unwrap_or(1).max(1);
    let (actor, action, object, since) = (
        q.actor.unwrap_or_default(),
        q.action.unwrap_or_default(),
        q.object.unwrap_or_default(),
        q.since.unwrap_or_default(),
    );
    let nonempty = |s: &String| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string);
    let (a, b, o, s) = (
        nonempty(&actor),
        nonempty(&action),
        nonempty(&object),
        nonempty(&since),
    );
    let found = ctx
        .ops
        .audit_log(&AuditQuery {
            actor: a.as_deref(),
            action: b.as_deref(),
            object: o.as_deref(),
            since: s.as_deref(),
            limit: PAGE,
            offset: (page - 1).saturating_mul(PAGE),
        })
        .await;
    let (rows, total, error): (Vec<AuditRow>, i64, Option<String>) = match found {
        Ok(p) => (p.entries, p.total, None),
        Err(e @ crate::ops::OpsError::Invalid { .. }) => (Vec::new(), 0, Some(e.to_string())),
        Err(e) => return failed(&c, e, "/console"),
    };
    let lines = rows
        .into_iter()
        .map(|r| Line {
            at: when(r.at),
            before: json(&r.before),
            after: json(&r.after),
            actor: r.actor,
            action: r.action,
            object: r.object,
        })
        .collect();
    html(
        StatusCode::OK,
        &Page {
            c,
            lines,
            pages: (total.max(0) as u32).div_ceil(PAGE).max(1),
            total,
            actor,
            action,
            object,
            since,
            error,
            page,
        },
    )
}
