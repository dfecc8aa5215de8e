//! The lists: every list with its counts; one list's subscribers, searchable and paged;
//! add, remove and set a subscriber's status; CSV upload with the per-line report; CSV
//! export.

use super::{failed, field, form_pairs, gate, html, message, when, Chrome, Signed};
use crate::domain::subscriber::CsvSubscribers;
use crate::domain::Permission;
use crate::http::HttpContext;
use crate::ops::lists::AddSubscriberInput;
use crate::store::{ListSummary, SubscriberRow};
use askama::Template;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

/// Subscribers per page.
const PAGE: u32 = 50;
/// The largest CSV the console takes (bigger lists: `bulletin lists import`).
const MAX_CSV: usize = 20 * 1024 * 1024;

#[derive(Template)]
#[template(path = "console/lists.html")]
struct AllPage {
    c: Chrome,
    lists: Vec<ListSummary>,
}

/// Every list with its counts by status (HTML)
#[utoipa::path(get, path = "/console/lists", tag = "console",
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn all(State(ctx): State<HttpContext>, Signed(p): Signed) -> Response {
    let c = Chrome::new(&ctx, &p, "lists");
    match ctx.ops.lists().await {
        Ok(lists) => html(StatusCode::OK, &AllPage { c, lists }),
        Err(e) => failed(&c, e, "/console"),
    }
}

/// A list page's search.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct SubscriberQuery {
    /// A substring of the address or name, or `@domain` for one domain.
    q: Option<String>,
    /// The page, from 1.
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "console/list.html")]
struct OnePage {
    c: Chrome,
    list: ListSummary,
    subscribers: Vec<SubscriberRow>,
    total: i64,
    q: String,
    page: u32,
    pages: u32,
    /// What the last action did.
    done: Option<String>,
    /// A CSV import's refused lines.
    rejected: Vec<String>,
    statuses: &'static [&'static str],
}

impl OnePage {
    fn page_link(&self, page: u32) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "/console/lists/{}?q={}&page={page}",
            enc(&self.list.name),
            enc(&self.q)
        )
    }

    fn changed(&self, s: &SubscriberRow) -> String {
        when(s.status_changed_at)
    }
}

async fn one_page(
    ctx: &HttpContext,
    c: Chrome,
    name: &str,
    q: SubscriberQuery,
    done: Option<String>,
    rejected: Vec<String>,
) -> Response {
    let page = q.page.unwrap_or(1).max(1);
    let search = q.q.unwrap_or_default();
    let found = ctx
        .ops
        .subscribers(
            name,
            Some(search.as_str()),
            PAGE,
            (page - 1).saturating_mul(PAGE),
        )
        .await;
    let list = match ctx.ops.list(name).await {
        Ok(l) => l,
        Err(e) => return failed(&c, e, "/console/lists"),
    };
    match found {
        Ok(found) => html(
            StatusCode::OK,
            &OnePage {
                pages: (found.total.max(0) as u32).div_ceil(PAGE).max(1),
                c,
                list,
                subscribers: found.subscribers,
                total: found.total,
                q: search,
                page,
                done,
                rejected,
                statuses: &["active", "unsubscribed", "bounced"],
            },
        ),
        Err(e) => failed(&c, e, "/console/lists"),
    }
}

/// One list's subscribers, searchable by substring or domain, paged (HTML)
#[utoipa::path(get, path = "/console/lists/{name}", tag = "console",
    params(("name" = String, Path, description = "list name"), SubscriberQuery),
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
        (status = 404, description = "no such list", body = String, content_type = "text/html"),
    ))]
pub async fn one(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    Path(name): Path<String>,
    q: Result<Query<SubscriberQuery>, QueryRejection>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "lists");
    let q = q.map(|Query(q)| q).unwrap_or_default();
    one_page(&ctx, c, &name, q, None, Vec::new()).await
}

/// Add, remove, or set the status of one subscriber (form fields `csrf`, `action` = add |
/// remove | status, `email`, and `name`, `language` to add, `status` to set)
#[utoipa::path(post, path = "/console/lists/{name}", tag = "console",
    params(("name" = String, Path, description = "list name")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "csrf, action (add, remove or status), email, name, language, status"),
    responses(
        (status = 200, description = "done: the list page saying what changed", body = String, content_type = "text/html"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not manage lists", body = String, content_type = "text/html"),
        (status = 404, description = "no such list, or the address is not on it", body = String, content_type = "text/html"),
        (status = 422, description = "a field is not valid", body = String, content_type = "text/html"),
    ))]
pub async fn change(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let c = Chrome::new(&ctx, &p, "lists");
    let f = form_pairs(&body);
    if let Err(r) = gate(
        &ctx,
        &p,
        &headers,
        field(&f, "csrf"),
        Permission::Operate,
        &c,
    ) {
        return r;
    }
    let back = format!("/console/lists/{name}");
    let email = field(&f, "email");
    let opt = |k: &str| Some(field(&f, k).trim()).filter(|v| !v.is_empty());
    let done = match field(&f, "action") {
        "add" => ctx
            .ops
            .add_subscriber(
                &p.actor,
                AddSubscriberInput {
                    list: &name,
                    email,
                    name: opt("name"),
                    language: opt("language"),
                },
            )
            .await
            .map(|a| {
                let what = match a.outcome {
                    crate::ops::lists::AddOutcome::Added => "added",
                    crate::ops::lists::AddOutcome::Updated => "updated",
                    crate::ops::lists::AddOutcome::Unchanged => "already on the list, unchanged",
                };
                format!("{}: {what}.", a.email)
            }),
        "remove" => ctx
            .ops
            .remove_subscriber(&p.actor, &name, email)
            .await
            .map(|r| format!("{}: removed.", r.email)),
        "status" => ctx
            .ops
            .set_subscriber_status(&p.actor, &name, email, field(&f, "status"))
            .await
            .map(|r| {
                let st = r.status.map(|s| s.as_str().to_string()).unwrap_or_default();
                format!("{}: now {st}.", r.email)
            }),
        _ => {
            return message(
                &c,
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "The action is add, remove or status.",
                &back,
            )
        }
    };
    match done {
        Ok(text) => {
            one_page(
                &ctx,
                c,
                &name,
                SubscriberQuery::default(),
                Some(text),
                Vec::new(),
            )
            .await
        }
        Err(e) => failed(&c, e, &back),
    }
}

/// Import subscribers from a CSV file (a multipart form with `csrf` and `file`): the
/// counts and every refused line
#[utoipa::path(post, path = "/console/lists/{name}/import", tag = "console",
    params(("name" = String, Path, description = "list name")),
    request_body(content = String, content_type = "multipart/form-data",
        description = "fields `csrf` and `file` (CSV with a header: email, name, language)"),
    responses(
        (status = 200, description = "imported: the list page with the counts and the refused lines", body = String, content_type = "text/html"),
        (status = 400, description = "the upload or its CSV header could not be read", body = String, content_type = "text/html"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not manage lists", body = String, content_type = "text/html"),
        (status = 404, description = "no such list", body = String, content_type = "text/html"),
    ))]
pub async fn import(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Multipart,
) -> Response {
    let c = Chrome::new(&ctx, &p, "lists");
    let back = format!("/console/lists/{name}");
    let up = match super::read_upload(form, MAX_CSV).await {
        Ok(u) => u,
        Err(m) => return message(&c, StatusCode::BAD_REQUEST, "Not imported", &m, &back),
    };
    if let Err(r) = gate(
        &ctx,
        &p,
        &headers,
        field(&up.pairs, "csrf"),
        Permission::Operate,
        &c,
    ) {
        return r;
    }
    let rows = match CsvSubscribers::new(std::io::Cursor::new(up.file)) {
        Ok(r) => r,
        Err(e) => {
            return message(
                &c,
                StatusCode::BAD_REQUEST,
                "Not imported",
                &format!("{}: {e}", up.file_name),
                &back,
            )
        }
    };
    match ctx.ops.import_csv(&p.actor, &name, rows).await {
        Ok(imp) => {
            let n = imp.counts;
            let mut text = format!(
                "{}: {} added, {} updated, {} unchanged, {} refused.",
                up.file_name,
                n.added,
                n.updated,
                n.unchanged,
                imp.rejected.len()
            );
            if !imp.ignored_columns.is_empty() {
                text.push_str(&format!(
                    " Columns not read: {}.",
                    imp.ignored_columns.join(", ")
                ));
            }
            let rejected = imp.report(&up.file_name);
            one_page(
                &ctx,
                c,
                &name,
                SubscriberQuery::default(),
                Some(text),
                rejected,
            )
            .await
        }
        Err(e) => failed(&c, e, &back),
    }
}

/// The list as CSV (email, name, language, status, status_changed_at)
#[utoipa::path(get, path = "/console/lists/{name}/export", tag = "console",
    params(("name" = String, Path, description = "list name")),
    responses(
        (status = 200, description = "the CSV, as a download", body = String, content_type = "text/csv"),
        (status = 303, description = "sign in first"),
        (status = 404, description = "no such list", body = String, content_type = "text/html"),
    ))]
pub async fn export(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    Path(name): Path<String>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "lists");
    let mut out = Vec::new();
    match ctx.ops.export_csv(&name, &mut out).await {
        Ok(e) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.csv\"", e.list),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            out,
        )
            .into_response(),
        Err(e) => failed(&c, e, "/console/lists"),
    }
}
