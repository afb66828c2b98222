//! The one API error type. Its JSON body is stable:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.
//!
//! Client mistakes are 4xx with a message that says what to fix. A database that cannot
//! be reached is 503. Anything else is 500 with a generic message; the detail goes to the
//! log, never to the client.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::schedules::{model::FieldError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a request is malformed beyond one field.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 422: one field is invalid.
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 503: the database cannot be reached (or no pooled connection is free in time).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed_json`, `invalid_field`, `not_found`,
    /// `conflict`, `payload_too_large`, `method_not_allowed`, `unavailable`, `internal`.
    pub code: &'static str,
    pub message: String,
    /// The offending field, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError::Invalid(FieldError::new(field, message))
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound(what.into())
    }

    fn status_code_field(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, None),
            ApiError::Invalid(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                Some(e.field.to_string()),
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.status_code_field();
        match &self {
            ApiError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            ApiError::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid(e)
    }
}

/// Whether an sqlx error means "the database is not reachable right now" rather than
/// "this query is wrong".
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
        // 08xxx connection exceptions, 53300 too many connections.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return ApiError::Unavailable(e);
        }
        if let sqlx::Error::Database(db) = &e {
            // The schema's constraints back up the Rust validation; if a request slips
            // past the latter, the former still answers it as a client error.
            match db.code().as_deref() {
                Some("23505") => {
                    return ApiError::Conflict("a conflicting record already exists".into());
                }
                Some("23514") | Some("22001") | Some("22003") => {
                    let field = constraint_field(db.constraint());
                    return ApiError::invalid(field, format!("{field} is out of range"));
                }
                _ => {}
            }
        }
        ApiError::Internal(e.into())
    }
}

/// Maps a CHECK constraint name (`schedules_jitter_ms_check`) to its field.
fn constraint_field(constraint: Option<&str>) -> &'static str {
    const FIELDS: &[&str] = &[
        "schedule_id",
        "workflow_id",
        "version",
        "user_id",
        "cron_expr",
        "timezone",
        "jitter_ms",
        "overlap_policy",
        "catchup_policy",
        "end_at",
    ];
    constraint
        .and_then(|c| FIELDS.iter().find(|f| c.contains(*f)).copied())
        .unwrap_or("body")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(f) => ApiError::Invalid(f),
            StoreError::Db(e) => e.into(),
            StoreError::Corrupt(..) => ApiError::Internal(e.into()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
