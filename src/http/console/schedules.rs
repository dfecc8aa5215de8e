//! The schedules page: each schedule's cron, time zone, lists, last and next firings;
//! Fire now behind a confirmation page.

use super::bulletins::ConfirmPage;
use super::{failed, gate, html, when, Chrome, Signed};
use crate::domain::Permission;
use crate::http::HttpContext;
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

struct Line {
    name: String,
    cron: String,
    timezone: String,
    mode: String,
    lists: String,
    last: String,
    next: String,
}

#[derive(Template)]
#[template(path = "console/schedules.html")]
struct Page {
    c: Chrome,
    schedules: Vec<Line>,
    done: Option<String>,
}

async fn page_with(ctx: &HttpContext, c: Chrome, done: Option<String>) -> Response {
    let all = match ctx.ops.schedules().await {
        Ok(s) => s,
        Err(e) => return failed(&c, e, "/console"),
    };
    let schedules = all
        .into_iter()
        .map(|s| Line {
            last: s.last_firing.map(when).unwrap_or_else(|| "never".into()),
            next: match (s.next_firing_local(), s.next_firing) {
                (Some(local), Some(n)) => format!("{local} ({})", when(n)),
                _ => "none".into(),
            },
            mode: s.mode.to_string(),
            lists: s.lists.join(", "),
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
        })
        .collect();
    html(StatusCode::OK, &Page { c, schedules, done })
}

/// The schedules with their last and next firings (HTML)
#[utoipa::path(get, path = "/console/schedules", tag = "console",
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn page(State(ctx): State<HttpContext>, Signed(p): Signed) -> Response {
    let c = Chrome::new(&ctx, &p, "schedules");
    page_with(&ctx, c, None).await
}

/// The confirmation step of Fire now (HTML)
#[utoipa::path(get, path = "/console/schedules/{name}/fire", tag = "console",
    params(("name" = String, Path, description = "schedule name")),
    responses(
        (status = 200, description = "the question and its button", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn confirm(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    Path(name): Path<String>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "schedules");
    html(
        StatusCode::OK,
        &ConfirmPage {
            c,
            title: format!("Fire {name} now"),
            question: format!(
                "Fire schedule {name} now? The approved records it has not carried yet become bulletins and are queued for its lists at once."
            ),
            action: format!("/console/schedules/{name}/fire"),
            fields: Vec::new(),
            button: "Fire now".into(),
            back: "/console/schedules".into(),
        },
    )
}

/// Fire a schedule now (the confirmed form)
#[utoipa::path(post, path = "/console/schedules/{name}/fire", tag = "console",
    params(("name" = String, Path, description = "schedule name")),
    request_body(content = super::records::CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "fired: the schedules page saying what was queued", body = String, content_type = "text/html"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not operate", body = String, content_type = "text/html"),
        (status = 404, description = "no such schedule", body = String, content_type = "text/html"),
    ))]
pub async fn fire(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<super::records::CsrfForm>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "schedules");
    if let Err(r) = gate(&ctx, &p, &headers, &f.csrf, Permission::Operate, &c) {
        return r;
    }
    match ctx.ops.fire(&p.actor, &name).await {
        Ok(fired) => {
            let done = if fired.already_fired {
                format!("{name} had already fired this second: nothing more was done.")
            } else if fired.bulletins.is_empty() {
                format!("{name} fired: there was no approved record it had not carried, so nothing was queued.")
            } else {
                format!(
                    "{name} fired: bulletin(s) {} with {} deliveries queued.",
                    fired
                        .bulletins
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    fired.deliveries
                )
            };
            page_with(&ctx, c, Some(done)).await
        }
        Err(e) => failed(&c, e, "/console/schedules"),
    }
}
