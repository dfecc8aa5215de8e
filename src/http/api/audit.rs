//! `GET /api/audit`: the audit log, filtered and paged.

use crate::domain::Permission;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::HttpContext;
use crate::ops::audit::{AuditPage, AuditQuery};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

/// The query of `GET /api/audit`: every filter given must hold.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Who, exact (a user name, `admin-token`, `cli:USER`).
    actor: Option<String>,
    /// What, exact: `record.approve`, `record.send_back`, `record.import`, `notice.send`,
    /// `bulletin.pause`, `bulletin.resume`, `deliveries.retry`, `list.create`,
    /// `list.import`, `subscriber.add`, `subscriber.remove`, `subscriber.status`,
    /// `schedule.fire`, `bounce.undo`, `user.add`, `user.disable`, `user.enable`,
    /// `user.password`, `user.token`, `login`, `login.failed`, `logout`.
    action: Option<String>,
    /// On what, exact: `record:ID`, `bulletin:ID`, `list:NAME`, `user:NAME`, ...
    object: Option<String>,
    /// RFC 3339 time or a duration back from now (`24h`, `7d`).
    #[param(example = "7d")]
    since: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Entries to skip, default 0.
    offset: Option<u32>,
}

/// The audit log, newest first: who did what, when, to which object
#[utoipa::path(get, path = "/api/audit", tag = "api",
    params(AuditParams),
    responses(
        (status = 200, description = "one page of entries", body = AuditPage),
        (status = 400, description = "an unknown query parameter or a value that does not parse (code invalid_query)", body = ErrorBody),
    )
)]
pub(crate) async fn audit(
    State(ctx): State<HttpContext>,
    p: Principal,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    p.require(Permission::Read)?;
    let Query(q) = q?;
    let page = ctx
        .ops
        .audit_log(&AuditQuery {
            actor: q.actor.as_deref(),
            action: q.action.as_deref(),
            object: q.object.as_deref(),
            since: q.since.as_deref(),
            limit: q.limit.unwrap_or(100),
            offset: q.offset.unwrap_or(0),
        })
        .await
        .map_err(ApiError::from_query)?;
    Ok(Json(page))
}
