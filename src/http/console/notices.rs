//! The notice page: title, Markdown body with a server-rendered preview, lists,
//! channels and severity; then a confirmation step showing the recipient count and the
//! WeChat quota; then sending, and the notice's bulletin page (which says plainly when
//! the same notice had already been sent).

use super::{failed, field, fields, form_pairs, gate, html, Chrome, Signed};
use crate::domain::Permission;
use crate::http::HttpContext;
use crate::ops::notices::NoticeInput;
use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

struct ListChoice {
    name: String,
    active: i64,
    checked: bool,
}

#[derive(Template)]
#[template(path = "console/notice.html")]
struct FormPage {
    c: Chrome,
    title: String,
    body: String,
    urgent: bool,
    lists: Vec<ListChoice>,
    wechat_available: bool,
    wechat: bool,
    error: Option<String>,
    /// The e-mail as it will look, for a sandboxed frame.
    preview: Option<String>,
}

#[derive(Template)]
#[template(path = "console/notice_confirm.html")]
struct ConfirmPage {
    c: Chrome,
    title: String,
    severity: String,
    lists: String,
    channels: String,
    /// Active subscribers of the chosen lists, summed (an address on two lists counts
    /// twice here; it is sent to once).
    recipients: i64,
    /// WeChat mass sends used and allowed in 24 h, when WeChat is chosen.
    quota: Option<(i64, i64)>,
    /// Every field of the form, carried to the send step.
    fields: Vec<(String, String)>,
    preview: String,
}

/// The notice form (HTML)
#[utoipa::path(get, path = "/console/notice", tag = "console",
    responses(
        (status = 200, description = "the form", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn form(State(ctx): State<HttpContext>, Signed(p): Signed) -> Response {
    let c = Chrome::new(&ctx, &p, "notice");
    match form_page(&ctx, c, &[], None, None).await {
        Ok(r) | Err(r) => r,
    }
}

async fn form_page(
    ctx: &HttpContext,
    c: Chrome,
    pairs: &[(String, String)],
    error: Option<String>,
    preview: Option<String>,
) -> Result<Response, Response> {
    let chosen = fields(pairs, "lists");
    let lists = ctx
        .ops
        .lists()
        .await
        .map_err(|e| failed(&c, e, "/console"))?
        .into_iter()
        .map(|l| ListChoice {
            checked: chosen.contains(&l.name),
            name: l.name,
            active: l.active,
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(html(
        status,
        &FormPage {
            c,
            title: field(pairs, "title").to_string(),
            body: field(pairs, "body").to_string(),
            urgent: field(pairs, "severity") == "urgent",
            lists,
            wechat_available: ctx.config.wechat.is_some(),
            wechat: fields(pairs, "channels").iter().any(|c| c == "wechat"),
            error,
            preview,
        },
    ))
}

/// The notice form's steps (form fields `csrf`, `step` = preview | confirm | send | edit,
/// `title`, `body`, `severity`, `lists` (repeated), `channels` (repeated), `key`)
#[utoipa::path(post, path = "/console/notice", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "csrf, step (preview, confirm, send or edit), title, body, severity, lists (repeated), channels (repeated), key"),
    responses(
        (status = 200, description = "the preview, or the confirmation with the recipient count and the WeChat quota", body = String, content_type = "text/html"),
        (status = 303, description = "sent: to the notice's bulletin page (`?notice=repeat` when it had been sent already)"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not send notices", body = String, content_type = "text/html"),
        (status = 422, description = "a field is not valid: the form again, naming it", body = String, content_type = "text/html"),
    ))]
pub async fn submit(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let c = Chrome::new(&ctx, &p, "notice");
    let pairs = form_pairs(&body);
    if let Err(r) = gate(
        &ctx,
        &p,
        &headers,
        field(&pairs, "csrf"),
        Permission::Operate,
        &c,
    ) {
        return r;
    }
    let lists = fields(&pairs, "lists");
    let channels = fields(&pairs, "channels");
    let key = Some(field(&pairs, "key")).filter(|k| !k.is_empty());
    let severity = match field(&pairs, "severity") {
        "" => "info",
        s => s,
    };
    let checked = ctx.ops.check_notice(
        &p.actor,
        NoticeInput {
            title: field(&pairs, "title"),
            body: field(&pairs, "body"),
            severity,
            lists: &lists,
            key,
            channels: &channels,
            versions: &[],
        },
    );
    let step = field(&pairs, "step");
    let req = match checked {
        Ok(r) => r,
        Err(e) => {
            return form_page(&ctx, c, &pairs, Some(e.to_string()), None)
                .await
                .unwrap_or_else(|r| r)
        }
    };
    if step == "edit" {
        return form_page(&ctx, c, &pairs, None, None)
            .await
            .unwrap_or_else(|r| r);
    }
    let preview = match ctx.ops.preview_notice(&req) {
        Ok(p) => p,
        Err(e) => return failed(&c, e, "/console/notice"),
    };
    match step {
        "preview" => form_page(&ctx, c, &pairs, None, Some(preview))
            .await
            .unwrap_or_else(|r| r),
        "confirm" => {
            let all = match ctx.ops.lists().await {
                Ok(l) => l,
                Err(e) => return failed(&c, e, "/console/notice"),
            };
            let recipients = all
                .iter()
                .filter(|l| lists.contains(&l.name))
                .map(|l| l.active)
                .sum();
            let wechat = req.channels.contains(&crate::domain::ChannelKind::Wechat);
            let quota = if wechat {
                match ctx.ops.wechat_quota().await {
                    Ok(q) => Some((q.used, q.limit)),
                    Err(e) => return failed(&c, e, "/console/notice"),
                }
            } else {
                None
            };
            let carried = pairs
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "title" | "body" | "severity" | "lists" | "channels" | "key"
                    )
                })
                .cloned()
                .collect();
            html(
                StatusCode::OK,
                &ConfirmPage {
                    c,
                    title: req.title.clone(),
                    severity: req.severity.to_string(),
                    lists: lists.join(", "),
                    channels: req
                        .channels
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    recipients,
                    quota,
                    fields: carried,
                    preview,
                },
            )
        }
        "send" => {
            let ops = ctx.ops.clone();
            // In a task of its own, as the API does: a browser that gives up mid-request
            // does not cut the fan-out short.
            let actor = p.actor.clone();
            let sent = tokio::spawn(async move { ops.send_notice(&actor, &req).await }).await;
            match sent {
                Ok(Ok(out)) => {
                    let tag = if out.created { "created" } else { "repeat" };
                    Redirect::to(&format!("/console/bulletins/{}?notice={tag}", out.id))
                        .into_response()
                }
                Ok(Err(e)) => form_page(&ctx, c, &pairs, Some(e.to_string()), None)
                    .await
                    .unwrap_or_else(|r| r),
                Err(e) => {
                    tracing::error!(error = %e, "console: the notice task failed");
                    super::message(
                        &c,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Not sent",
                        "Queueing the notice failed; see the log.",
                        "/console/notice",
                    )
                }
            }
        }
        _ => form_page(&ctx, c, &pairs, None, None)
            .await
            .unwrap_or_else(|r| r),
    }
}
