//! `/api/schedules`: the schedules with their last and next firings, and firing one now.

use crate::domain::Permission;
use crate::http::auth::Principal;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::HttpContext;
use crate::ops::schedules::{Firing, ScheduleState};
use axum::extract::{Path, State};
use axum::Json;

/// The configured schedules with their last and next firings
#[utoipa::path(get, path = "/api/schedules", tag = "api",
    responses((status = 200, description = "the schedules", body = Vec<ScheduleState>))
)]
pub(crate) async fn schedules(
    State(ctx): State<HttpContext>,
    p: Principal,
) -> ApiResult<Json<Vec<ScheduleState>>> {
    p.require(Permission::Read)?;
    Ok(Json(ctx.ops.schedules().await?))
}

/// Fire a schedule now: its approved records are composed and queued
///
/// Firing twice in one second answers `already_fired: true`.
#[utoipa::path(post, path = "/api/schedules/{name}/fire", tag = "api",
    params(("name" = String, Path, description = "schedule name")),
    responses(
        (status = 200, description = "what the firing queued", body = Firing),
        (status = 404, description = "no such schedule (code schedule_not_found)", body = ErrorBody),
    )
)]
pub(crate) async fn fire(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Firing>> {
    p.require(Permission::Operate)?;
    Ok(Json(ctx.ops.fire(&p.actor, &name).await?))
}
