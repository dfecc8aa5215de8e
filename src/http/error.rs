//! The admin API's one error type: an HTTP status, a stable machine code and a message
//! for people, answered as `{"error": {"code", "message"}}`; and how operation errors
//! and axum's rejections become one.

use crate::ops::{Missing, OpsError, Refusal};
use crate::store::StoreError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// An API error: HTTP status, a stable machine code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of every error answer of the admin API.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail<'a> {
    /// Stable, for programs: unauthorized, forbidden, csrf, too_many_failures,
    /// invalid_json, invalid_query, invalid_field, invalid_path, invalid_record,
    /// record_not_found, bulletin_not_found, delivery_not_found, bounce_not_found, unknown_list,
    /// user_not_found, schedule_not_found, subscriber_not_found, article_too_long,
    /// bulletin_not_pausable, record_published, no_such_endpoint, not_found, refused,
    /// store_unavailable, store_error, render_failed, internal_error.
    code: &'a str,
    /// For people; may change.
    message: &'a str,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A bad query string or path value: 400 `invalid_query`.
    pub(crate) fn bad_query(field: &str, m: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{field}: {m}"),
        )
    }

    /// An operation's error where its input came from the query string: invalid input
    /// is a bad query (400), the rest as [`From<OpsError>`].
    pub(crate) fn from_query(e: OpsError) -> Self {
        match e {
            OpsError::Invalid { field, message } => Self::bad_query(&field, message),
            other => other.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Refused(m) => Self::new(StatusCode::CONFLICT, "refused", m),
            other => {
                tracing::error!(error = %other, "store error in the admin API");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    other.to_string(),
                )
            }
        }
    }
}

/// Operation errors where the input came in a body: invalid input is 422
/// `invalid_field`, what is missing 404 (a list named in a body: 422 `unknown_list`).
impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Invalid { field, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{field}: {message}"),
            ),
            OpsError::NotFound { what, message } => match what {
                Missing::Record => Self::not_found("record_not_found", message),
                Missing::Bulletin => Self::not_found("bulletin_not_found", message),
                Missing::Delivery => Self::not_found("delivery_not_found", message),
                Missing::Schedule => Self::not_found("schedule_not_found", message),
                Missing::Subscriber => Self::not_found("subscriber_not_found", message),
                Missing::Bounce => Self::not_found("bounce_not_found", message),
                Missing::User => Self::not_found("user_not_found", message),
                Missing::List => {
                    Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_list", message)
                }
            },
            OpsError::Refused { why, message } => match why {
                Refusal::ArticleTooLong => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "article_too_long",
                    message,
                ),
                Refusal::NotPausable => {
                    Self::new(StatusCode::CONFLICT, "bulletin_not_pausable", message)
                }
                Refusal::Published => Self::new(StatusCode::CONFLICT, "record_published", message),
            },
            OpsError::Record(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_record",
                e.to_string(),
            ),
            e @ OpsError::Render(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "render_failed",
                e.to_string(),
            ),
            e @ OpsError::Write(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            ),
            OpsError::Store(s) => s.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}
