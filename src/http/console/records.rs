//! The records page: drafts waiting for approval first, each with its e-mail and WeChat
//! previews in sandboxed frames, the WeChat article's size and the schedules it goes out
//! on; approving; uploading a record file.

use super::{failed, gate, html, message, when, Chrome, Signed};
use crate::domain::{ChannelKind, Permission, RecordState};
use crate::http::HttpContext;
use crate::ops::records::{PreviewFormat, PreviewInput, WechatSize};
use askama::Template;
use axum::extract::{Form, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use utoipa::ToSchema;

/// Records shown with their previews (the newest first after the drafts).
const SHOWN: usize = 30;

struct RecordView {
    id: String,
    title: String,
    held_on: String,
    language: String,
    state: String,
    approved: String,
    /// The e-mail's HTML, for a sandboxed `srcdoc` frame (none once published).
    email: Option<String>,
    /// The WeChat article's HTML, when a schedule sends over WeChat.
    wechat: Option<String>,
    wechat_size: Option<WechatSize>,
    /// Why the WeChat article could not be made.
    wechat_error: Option<String>,
}

struct ScheduleLine {
    name: String,
    next: String,
    lists: String,
}

#[derive(Template)]
#[template(path = "console/records.html")]
struct RecordsPage {
    c: Chrome,
    drafts: usize,
    records: Vec<RecordView>,
    more: usize,
    schedules: Vec<ScheduleLine>,
    /// What the last action did, shown once.
    notice: Option<String>,
}

/// The records page (HTML): drafts waiting for approval first
#[utoipa::path(get, path = "/console/records", tag = "console",
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 303, description = "sign in first"),
    ))]
pub async fn page(State(ctx): State<HttpContext>, Signed(p): Signed) -> Response {
    let c = Chrome::new(&ctx, &p, "records");
    match build(&ctx, c, None).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn build(ctx: &HttpContext, c: Chrome, notice: Option<String>) -> Result<Response, Response> {
    let ops = &ctx.ops;
    let mut all = ops
        .records(None)
        .await
        .map_err(|e| failed(&c, e, "/console"))?;
    // Drafts first (waiting for approval), then approved, then published; newest first
    // within each, as the store lists them.
    let rank = |s: RecordState| match s {
        RecordState::Draft => 0,
        RecordState::Approved => 1,
        _ => 2,
    };
    all.sort_by_key(|r| rank(r.state));
    let drafts = all.iter().filter(|r| r.state == RecordState::Draft).count();
    let more = all.len().saturating_sub(SHOWN);
    let mut records = Vec::new();
    for r in all.into_iter().take(SHOWN) {
        let unpublished = r.state != RecordState::Published;
        let email = if unpublished {
            let p = ops
                .preview(PreviewInput {
                    id: &r.id,
                    channel: ChannelKind::Email,
                    format: PreviewFormat::Html,
                    language: None,
                })
                .await
                .map_err(|e| failed(&c, e, "/console"))?;
            Some(p.body)
        } else {
            None
        };
        let (wechat, wechat_size) = if unpublished && ops.sends_to_wechat() {
            match ops
                .preview(PreviewInput {
                    id: &r.id,
                    channel: ChannelKind::Wechat,
                    format: PreviewFormat::Html,
                    language: None,
                })
                .await
            {
                Ok(p) => (Ok(p.body), p.wechat_size),
                Err(e) => (Err(e.to_string()), None),
            }
        } else {
            (Ok(String::new()), None)
        };
        let (wechat, wechat_error) = match wechat {
            Ok(w) if w.is_empty() => (None, None),
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
        records.push(RecordView {
            approved: match (&r.approved_by, r.approved_at) {
                (Some(by), Some(at)) => format!("approved by {by}, {}", when(at)),
                _ => String::new(),
            },
            id: r.id,
            title: r.title,
            held_on: r.held_on.to_string(),
            language: r.language,
            state: r.state.to_string(),
            email,
            wechat,
            wechat_size,
            wechat_error,
        });
    }
    let schedules = ops
        .schedules()
        .await
        .map_err(|e| failed(&c, e, "/console"))?
        .into_iter()
        .map(|s| ScheduleLine {
            next: match (s.next_firing_local(), s.next_firing) {
                (Some(local), Some(n)) => format!("{local} ({})", when(n)),
                _ => "no next firing".into(),
            },
            lists: s.lists.join(", "),
            name: s.name,
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &RecordsPage {
            c,
            drafts,
            records,
            more,
            schedules,
            notice,
        },
    ))
}

/// A console form with only its CSRF token.
#[derive(Deserialize, ToSchema)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// Approve a draft as the signed-in approver (a form)
#[utoipa::path(post, path = "/console/records/{id}/approve", tag = "console",
    params(("id" = String, Path, description = "record id")),
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "approved: back to the records page"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not approve", body = String, content_type = "text/html"),
        (status = 404, description = "no such record", body = String, content_type = "text/html"),
        (status = 409, description = "refused in its state (e.g. the WeChat article is too long)", body = String, content_type = "text/html"),
    ))]
pub async fn approve(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "records");
    if let Err(r) = gate(&ctx, &p, &headers, &f.csrf, Permission::Approve, &c) {
        return r;
    }
    match ctx.ops.approve(&p.actor, &id).await {
        Ok(_) => Redirect::to("/console/records").into_response(),
        Err(e) => failed(&c, e, "/console/records"),
    }
}

/// The send-back form: the approver's comment for the editor.
#[derive(Deserialize, ToSchema)]
pub struct SendBackForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// What the editor should change (kept on the record).
    pub comment: String,
}

/// Send a record back to its editor as a draft, with a comment (a form)
#[utoipa::path(post, path = "/console/records/{id}/send-back", tag = "console",
    params(("id" = String, Path, description = "record id")),
    request_body(content = SendBackForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "sent back: to the records page"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not approve", body = String, content_type = "text/html"),
        (status = 404, description = "no such record", body = String, content_type = "text/html"),
        (status = 422, description = "the comment is not valid", body = String, content_type = "text/html"),
    ))]
pub async fn send_back(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<SendBackForm>,
) -> Response {
    let c = Chrome::new(&ctx, &p, "records");
    if let Err(r) = gate(&ctx, &p, &headers, &f.csrf, Permission::Approve, &c) {
        return r;
    }
    match ctx.ops.send_back(&p.actor, &id, &f.comment).await {
        Ok(_) => Redirect::to("/console/records").into_response(),
        Err(e) => failed(&c, e, "/console/records"),
    }
}

/// Upload a record file (TOML): stored as a draft, or refused with every error by line
/// and field (a multipart form with `csrf` and `file`)
#[utoipa::path(post, path = "/console/records/upload", tag = "console",
    request_body(content = String, content_type = "multipart/form-data",
        description = "fields `csrf` and `file` (the record's TOML)"),
    responses(
        (status = 200, description = "stored: the records page saying so", body = String, content_type = "text/html"),
        (status = 403, description = "cross-site, a wrong CSRF token, or a role that may not edit records", body = String, content_type = "text/html"),
        (status = 422, description = "the file is refused: its errors by line and field", body = String, content_type = "text/html"),
    ))]
pub async fn upload(
    State(ctx): State<HttpContext>,
    Signed(p): Signed,
    headers: HeaderMap,
    form: Multipart,
) -> Response {
    let c = Chrome::new(&ctx, &p, "records");
    let up = match super::read_upload(form, crate::domain::record::MAX_FILE_BYTES).await {
        Ok(u) => u,
        Err(m) => {
            return message(
                &c,
                StatusCode::BAD_REQUEST,
                "Not uploaded",
                &m,
                "/console/records",
            )
        }
    };
    if let Err(r) = gate(
        &ctx,
        &p,
        &headers,
        super::field(&up.pairs, "csrf"),
        Permission::EditRecords,
        &c,
    ) {
        return r;
    }
    let name = if up.file_name.is_empty() {
        "upload.toml".to_string()
    } else {
        up.file_name.clone()
    };
    let Ok(text) = String::from_utf8(up.file) else {
        return message(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not stored",
            &format!("{name}: the file is not valid UTF-8"),
            "/console/records",
        );
    };
    match ctx.ops.import_record_text(&p.actor, &name, &text).await {
        Ok(r) => {
            use crate::store::ImportOutcome::*;
            let what = match r.outcome {
                Created => "stored as a new draft",
                Unchanged => "unchanged (the same content is already stored)",
                Updated => "updated",
                ReturnedToDraft => "changed, so it is a draft again and needs approval",
            };
            let text = format!("{name}: record {}: {what}.", r.id);
            build(&ctx, c, Some(text)).await.unwrap_or_else(|r| r)
        }
        Err(e) => failed(&c, e, "/console/records"),
    }
}

/// The records page of `c` with one draft, rendered (for the role tests).
#[cfg(test)]
pub(super) fn test_page(c: Chrome) -> String {
    RecordsPage {
        c,
        drafts: 1,
        records: vec![RecordView {
            id: "r1".into(),
            title: "A session".into(),
            held_on: "2026-02-27".into(),
            language: "en".into(),
            state: "draft".into(),
            approved: String::new(),
            email: Some("<p>hello</p>".into()),
            wechat: None,
            wechat_size: None,
            wechat_error: None,
        }],
        more: 0,
        schedules: Vec::new(),
        notice: None,
    }
    .render()
    .unwrap()
}
