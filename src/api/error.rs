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
    /// 401: no credential, or not a valid one. Answered with `WWW-Authenticate: Bearer`.
    #[error("{message}")]
    Unauthorized {
        message: String,
        /// A credential was presented but is wrong (`error="invalid_token"`).
        invalid_token: bool,
    },
    /// 403: a valid credential whose role may not do this.
    #[error("{message}")]
    Forbidden {
        message: String,
        field: Option<&'static str>,
    },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 405, saying what to use instead.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: the body, or one part of it (`field`), is over its limit.
    #[error("{} is larger than {limit} bytes", field.unwrap_or("request body"))]
    PayloadTooLarge {
        limit: usize,
        field: Option<&'static str>,
    },
    /// 429: this caller's rate limit is used up; answered with `Retry-After`.
    #[error("too many requests; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: std::time::Duration },
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
    /// Stable, machine-readable: `malformed_json`, `invalid_field`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `payload_too_large`, `method_not_allowed`,
    /// `rate_limited`, `unavailable`, `internal`.
    pub code: &'static str,
    pub message: String,
    /// The offending field, for `invalid_field` (and `forbidden` or `payload_too_large`
    /// when one field is to blame).
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
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden { field, .. } => {
                (StatusCode::FORBIDDEN, "forbidden", field.map(str::to_owned))
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
            }
            ApiError::PayloadTooLarge { field, .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                field.map(str::to_owned),
            ),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
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
                // Messages may quote client input; a huge value is not echoed back whole.
                message: clip(self.to_string(), MAX_MESSAGE_CHARS),
                field: field.map(|f| clip(f, MAX_FIELD_CHARS)),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, retry_after_secs(*retry_after).into());
            }
            ApiError::Unauthorized { invalid_token, .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(if *invalid_token {
                        r#"Bearer realm="cron-scheduler", error="invalid_token""#
                    } else {
                        r#"Bearer realm="cron-scheduler""#
                    }),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid(e)
    }
}

/// Longest error message and field name sent back (in characters).
const MAX_MESSAGE_CHARS: usize = 1024;
const MAX_FIELD_CHARS: usize = 128;

/// `text`, cut to `max` characters (marked with `…` when cut).
pub fn clip(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `Retry-After` in whole seconds, at least 1.
fn retry_after_secs(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
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
                // Text PostgreSQL cannot store (U+0000); handlers refuse it first, naming
                // the field, and this keeps any path they miss a 4xx.
                Some("22008") => {
                    return ApiError::invalid("body", "a time is outside PostgreSQL's range");
                }
                Some("22021") | Some("22P05") => {
                    return ApiError::invalid(
                        "body",
                        "the request holds a character PostgreSQL cannot store (U+0000)",
                    );
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
            StoreError::NotVisible(_) => ApiError::NotFound(e.to_string()),
            StoreError::Db(e) => e.into(),
            StoreError::Corrupt(..) => ApiError::Internal(e.into()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
