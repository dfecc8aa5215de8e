//! `/api/users` (administrators only): list and add users, disable or enable one, set a
//! password, issue a personal API token (shown once).

use crate::domain::{Permission, Role};
use crate::http::auth::Principal;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::HttpContext;
use crate::ops::users::{AddUserInput, IssuedToken};
use crate::store::UserRow;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

/// Every user, by name (never a password hash or token)
#[utoipa::path(get, path = "/api/users", tag = "api",
    responses((status = 200, description = "the users", body = Vec<UserRow>))
)]
pub(crate) async fn users(
    State(ctx): State<HttpContext>,
    p: Principal,
) -> ApiResult<Json<Vec<UserRow>>> {
    p.require(Permission::ManageUsers)?;
    Ok(Json(ctx.ops.users().await?))
}

/// The body of `POST /api/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserBody {
    #[schema(example = "mai")]
    name: String,
    #[schema(value_type = Role)]
    role: String,
    /// At least 10 characters.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// Add a user
#[utoipa::path(post, path = "/api/users", tag = "api",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "created", body = UserRow),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 422, description = "the name is taken or not valid, the role unknown, the password too short (code invalid_field)", body = ErrorBody),
    )
)]
pub(crate) async fn add_user(
    State(ctx): State<HttpContext>,
    p: Principal,
    body: Result<Json<NewUserBody>, JsonRejection>,
) -> ApiResult<Response> {
    p.require(Permission::ManageUsers)?;
    let Json(b) = body?;
    let u = ctx
        .ops
        .add_user(
            &p.actor,
            AddUserInput {
                name: &b.name,
                role: &b.role,
                password: &b.password,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

/// Disable a user: their sessions end, their password and token stop working
#[utoipa::path(post, path = "/api/users/{name}/disable", tag = "api",
    params(("name" = String, Path, description = "user name")),
    responses(
        (status = 200, description = "the user now", body = UserRow),
        (status = 404, description = "no such user (code user_not_found)", body = ErrorBody),
    )
)]
pub(crate) async fn disable(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<UserRow>> {
    p.require(Permission::ManageUsers)?;
    Ok(Json(
        ctx.ops.set_user_disabled(&p.actor, &name, true).await?,
    ))
}

/// Enable a disabled user again
#[utoipa::path(post, path = "/api/users/{name}/enable", tag = "api",
    params(("name" = String, Path, description = "user name")),
    responses(
        (status = 200, description = "the user now", body = UserRow),
        (status = 404, description = "no such user (code user_not_found)", body = ErrorBody),
    )
)]
pub(crate) async fn enable(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<UserRow>> {
    p.require(Permission::ManageUsers)?;
    Ok(Json(
        ctx.ops.set_user_disabled(&p.actor, &name, false).await?,
    ))
}

/// The body of `POST /api/users/{name}/password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    /// At least 10 characters.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// Set a user's password: their sessions end
#[utoipa::path(post, path = "/api/users/{name}/password", tag = "api",
    params(("name" = String, Path, description = "user name")),
    request_body = PasswordBody,
    responses(
        (status = 200, description = "the user now", body = UserRow),
        (status = 400, description = "the body is not JSON of this shape (code invalid_json)", body = ErrorBody),
        (status = 404, description = "no such user (code user_not_found)", body = ErrorBody),
        (status = 422, description = "the password is too short (code invalid_field)", body = ErrorBody),
    )
)]
pub(crate) async fn password(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(name): Path<String>,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> ApiResult<Json<UserRow>> {
    p.require(Permission::ManageUsers)?;
    let Json(b) = body?;
    Ok(Json(
        ctx.ops.set_password(&p.actor, &name, &b.password).await?,
    ))
}

/// Issue a personal API token for a user, replacing the earlier one
///
/// The token is in this answer only: the store keeps its SHA-256.
#[utoipa::path(post, path = "/api/users/{name}/token", tag = "api",
    params(("name" = String, Path, description = "user name")),
    responses(
        (status = 200, description = "the token, shown once", body = IssuedToken),
        (status = 404, description = "no such user (code user_not_found)", body = ErrorBody),
    )
)]
pub(crate) async fn token(
    State(ctx): State<HttpContext>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    p.require(Permission::ManageUsers)?;
    let t = ctx.ops.issue_token(&p.actor, &name).await?;
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(t)).into_response())
}
