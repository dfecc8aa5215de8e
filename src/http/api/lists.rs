//! `/api/lists`: lists, their subscribers (searched, paged, added, removed), CSV import
//! with the per-line report, and CSV export streamed a page at a time.

use crate::domain::subscriber::CsvSubscribers;
use crate::domain::{Permission, SubscriberStatus};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::HttpContext;
use crate::ops::lists::{
    AddSubscriberInput, ImportReport, ListCreated, SubscriberAdded, SubscriberChanged,
    SubscriberPage,
};
use crate::store::ListSummary;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Every list with its counts by subscriber status
#[utoipa::path(get, path = "/api/lists", tag = "api",
    responses((status = 200, description = "the lists, by name", body = Vec<ListSummary>))
)]
pub(crate) async fn lists(
    State(ctx): State<HttpContext>,
    p: Principal,
) -> ApiResult<Json<Vec<ListSummary>>> {
    p.require(Permission::Read)?;
    Ok(Json(ctx.ops.lists().await?))
}

/// The body of `POST /api/lists`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewListBody {
    /// Lower-case letters, digits and `-`.
    #[schema(example = "partners")]
    name: String,
    /// One line.
    #[serde(default)]
    description: String,
}

/// Create a list (nothing changes if it exists: `created: false`)
#[utoipa::path(post, path = "/api/lists", tag = "api",
    request_body = NewListBody,
    responses(
        (status = 201, description = "created", body = ListCreated),
        (status = 200, description = "a list of that name already existed", body = ListCreated),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 422, description = "the name or description is not valid (code invalid_field)", body = ErrorBody),
    )
)]
pub(crate) async fn create_list(
    State(ctx): State<HttpContext>,
    p: Principal,
    body: Result<Json<NewListBody>, JsonRejection>,
) -> ApiResult<Response> {
    p.require(Permission::Operate)?;
    let Json(b) = body?;
    let out = ctx
        .ops
        .create_list(&p.actor, &b.name, &b.description)
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

/// The query of `GET /api/lists/{name}/subscribers`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribersQuery {
    /// A substring of the address or name (case-insensitive); `@example.org`: that domain.
    q: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Subscribers to skip, default 0.
    offset: Option<u32>,
}

/// A list's subscribers, searched and paged (by id)
#[utoipa::path(get, path = "/api/lists/{name}/subscribers", tag = "api",
    params(("name" = String, Path, description = "list name"), SubscribersQuery),
    responses(
        (status = 200, description = "one page", body = SubscriberPage),
        (status = 400, description = "an unknown query parameter or a limit out of range (code invalid_query)", body = ErrorBody),
        (status = 422, description = "no such list (code unknown_list)", body = ErrorBody),
    )
)]
pub(crate) async fn subscribers(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(name): Path<String>,
    q: Result<Query<SubscribersQuery>, QueryRejection>,
) -> ApiResult<Json<SubscriberPage>> {
    p.require(Permission::Read)?;
    let Query(q) = q?;
    let page = ctx
        .ops
        .subscribers(
            &name,
            q.q.as_deref(),
            q.limit.unwrap_or(100),
            q.offset.unwrap_or(0),
        )
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(page))
}

/// The body of `POST /api/lists/{name}/subscribers`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriberBody {
    #[schema(example = "ana@example.org")]
    email: String,
    name: Option<String>,
    /// BCP 47, e.g. `fr`.
    language: Option<String>,
    /// Set the subscriber's status too (added subscribers are active).
    #[schema(value_type = Option<SubscriberStatus>)]
    status: Option<String>,
}

/// What `POST /api/lists/{name}/subscribers` did.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubscriberPosted {
    added: SubscriberAdded,
    /// When a status was given: the subscriber with it.
    status: Option<SubscriberChanged>,
}

/// Add a subscriber, or update their name, language and (if given) status
#[utoipa::path(post, path = "/api/lists/{name}/subscribers", tag = "api",
    params(("name" = String, Path, description = "list name")),
    request_body = SubscriberBody,
    responses(
        (status = 200, description = "added, updated or unchanged", body = SubscriberPosted),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 422, description = "a field is not valid, or no such list (codes invalid_field, unknown_list)", body = ErrorBody),
    )
)]
pub(crate) async fn add_subscriber(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(list): Path<String>,
    body: Result<Json<SubscriberBody>, JsonRejection>,
) -> ApiResult<Json<SubscriberPosted>> {
    p.require(Permission::Operate)?;
    let Json(b) = body?;
    if let Some(st) = &b.status {
        // Checked before anything is written.
        SubscriberStatus::parse(st).map_err(|m| {
            ApiError::from(crate::ops::OpsError::Invalid {
                field: "status".into(),
                message: m.to_string(),
            })
        })?;
    }
    let added = ctx
        .ops
        .add_subscriber(
            &p.actor,
            AddSubscriberInput {
                list: &list,
                email: &b.email,
                name: b.name.as_deref(),
                language: b.language.as_deref(),
            },
        )
        .await?;
    let status = match &b.status {
        Some(st) => Some(
            ctx.ops
                .set_subscriber_status(&p.actor, &list, &added.email, st)
                .await?,
        ),
        None => None,
    };
    Ok(Json(SubscriberPosted { added, status }))
}

/// The query of `DELETE /api/lists/{name}/subscribers`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveQuery {
    /// The subscriber's address.
    email: String,
}

/// Remove a subscriber from a list
#[utoipa::path(delete, path = "/api/lists/{name}/subscribers", tag = "api",
    params(("name" = String, Path, description = "list name"), RemoveQuery),
    responses(
        (status = 200, description = "removed", body = SubscriberChanged),
        (status = 400, description = "no or an unknown query parameter (code invalid_query)", body = ErrorBody),
        (status = 404, description = "the address is not on the list (code subscriber_not_found)", body = ErrorBody),
        (status = 422, description = "no such list (code unknown_list)", body = ErrorBody),
    )
)]
pub(crate) async fn remove_subscriber(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(list): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> ApiResult<Json<SubscriberChanged>> {
    p.require(Permission::Operate)?;
    let Query(q) = q?;
    Ok(Json(
        ctx.ops
            .remove_subscriber(&p.actor, &list, &q.email)
            .await
            .map_err(ApiError::from_query)?,
    ))
}

/// Import subscribers from a CSV body (columns email, name, language)
///
/// Valid rows are added or updated in batches; each refused row is reported by its line,
/// as `bulletin lists import` reports it.
#[utoipa::path(post, path = "/api/lists/{name}/import", tag = "api",
    params(("name" = String, Path, description = "list name")),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "the counts and the per-line report", body = ImportReport),
        (status = 422, description = "no such list, or a header without an email column (codes unknown_list, invalid_field)", body = ErrorBody),
    )
)]
pub(crate) async fn import(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(list): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ImportReport>> {
    p.require(Permission::Operate)?;
    // The list first: a missing one is named before the body is read.
    ctx.ops.list(&list).await?;
    let rows = CsvSubscribers::new(&body[..]).map_err(|e| {
        ApiError::from(crate::ops::OpsError::Invalid {
            field: "csv".into(),
            message: e.to_string(),
        })
    })?;
    let done = ctx.ops.import_csv(&p.actor, &list, rows).await?;
    Ok(Json(ImportReport::new(&list, "body", &done)))
}

/// Export a list as CSV (email, name, language, status, status_changed_at)
///
/// Streamed a page of 1,000 subscribers at a time.
#[utoipa::path(get, path = "/api/lists/{name}/export", tag = "api",
    params(("name" = String, Path, description = "list name")),
    responses(
        (status = 200, description = "the CSV", body = String, content_type = "text/csv"),
        (status = 422, description = "no such list (code unknown_list)", body = ErrorBody),
    )
)]
pub(crate) async fn export(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(list): Path<String>,
) -> ApiResult<Response> {
    p.require(Permission::Read)?;
    let l = ctx.ops.list(&list).await?;
    let header_only = crate::ops::lists::csv_header()?;
    let ops = ctx.ops.clone();
    // State: (the id after which the next page starts, whether a page was sent); None: done.
    let pages = futures::stream::unfold(Some((0i64, false)), move |state| {
        let ops = ops.clone();
        let header_only = header_only.clone();
        async move {
            let (after, sent) = state?;
            match ops.export_page(l.id, after).await {
                Ok(Some(page)) => Some((
                    Ok::<_, std::io::Error>(Bytes::from(page.csv)),
                    Some((page.last_id, true)),
                )),
                Ok(None) if !sent => Some((Ok(Bytes::from(header_only)), None)),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "list export: store error mid-stream");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.csv\"", l.name),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}
