//! `/api/records` beyond reading: a record sent as TOML becomes a draft (the CLI's
//! file:line field errors), and an approver sends one back with a comment.

use crate::domain::Permission;
use crate::http::auth::Principal;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::HttpContext;
use crate::ops::records::{ImportedRecord, SentBack};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// The query of `POST /api/records`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    /// The name errors give the record (default `upload.toml`), as a file name would be.
    name: Option<String>,
}

/// Upload a record as TOML: stored as a draft, or refused whole
///
/// The same checks as `bulletin import`, with every error by line and field
/// (`upload.toml:12: title: ...`). A record uploaded this way cannot carry image files.
/// Uploading changed content of an approved record makes it a draft again.
#[utoipa::path(post, path = "/api/records", tag = "api",
    params(UploadQuery),
    request_body(content = String, content_type = "application/toml"),
    responses(
        (status = 201, description = "created", body = ImportedRecord),
        (status = 200, description = "an existing record: updated, unchanged or returned to draft", body = ImportedRecord),
        (status = 422, description = "the record is not valid: every error with its line and field (code invalid_record)", body = ErrorBody),
    )
)]
pub(crate) async fn upload(
    State(ctx): State<HttpContext>,
    p: Principal,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: String,
) -> ApiResult<Response> {
    p.require(Permission::EditRecords)?;
    let Query(q) = q?;
    let name = q.name.as_deref().unwrap_or("upload.toml");
    let out = ctx.ops.import_record_text(&p.actor, name, &body).await?;
    let status = if out.outcome == crate::store::ImportOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

/// The body of `POST /api/records/{id}/send-back`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendBackBody {
    /// Why, for the editor; kept on the record. At most 2,000 characters.
    #[schema(example = "The date of the second session is wrong.")]
    comment: String,
}

/// Send a record back to its editor with a comment: a draft again
#[utoipa::path(post, path = "/api/records/{id}/send-back", tag = "api",
    params(("id" = String, Path, description = "record id")),
    request_body = SendBackBody,
    responses(
        (status = 200, description = "sent back", body = SentBack),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 404, description = "no such record (code record_not_found)", body = ErrorBody),
        (status = 409, description = "the record is published (code record_published)", body = ErrorBody),
        (status = 422, description = "no comment (code invalid_field)", body = ErrorBody),
    )
)]
pub(crate) async fn send_back(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(id): Path<String>,
    body: Result<Json<SendBackBody>, JsonRejection>,
) -> ApiResult<Json<SentBack>> {
    p.require(Permission::Approve)?;
    let Json(b) = body?;
    Ok(Json(ctx.ops.send_back(&p.actor, &id, &b.comment).await?))
}
