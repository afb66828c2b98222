//! `/workflows/{workflow_id}/versions/{version}`: the DAG JSON the launcher sends to the
//! Executor. A version is immutable: storing the same document again is a no-op (200),
//! storing a different one under an existing version is 409.
//!
//! **Who may write.** The catalogue is shared: every schedule naming a version runs that
//! DAG under its own user's name. With authentication on, storing a version therefore
//! needs an admin token (403 for a user token) unless `SCHEDULER_WORKFLOW_WRITERS=any`.
//! Reading stays open to every user.

use axum::{Json, Router, extract::State, http::StatusCode, routing::put};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Caller, Role};
use super::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParams},
};
use crate::{
    config::WorkflowWriters,
    schedules::model::{validate_name, validate_version},
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/workflows/{workflow_id}/versions/{version}",
        put(put_workflow_version).get(get_workflow_version),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowVersion {
    pub workflow_id: String,
    pub version: i32,
    /// The DAG document, as stored.
    #[schema(value_type = Object)]
    pub dag: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

fn path_key(workflow_id: &str, version: &str) -> ApiResult<(String, i32)> {
    validate_name(workflow_id, "workflow_id")?;
    let version = version
        .parse::<i64>()
        .map_err(|_| {
            ApiError::invalid("version", "version must be an integer from 1 to 2147483647")
        })
        .and_then(|v| Ok(validate_version(v)?))?;
    Ok((workflow_id.to_owned(), version))
}

/// Store a workflow version's DAG (the request body, a JSON object, at most
/// `SCHEDULER_MAX_DAG_BYTES` as compact JSON: 413 naming `dag` beyond).
#[utoipa::path(
    put, path = "/workflows/{workflow_id}/versions/{version}", tag = "workflows",
    params(
        ("workflow_id" = String, Path, description = "Workflow id", min_length = 1, max_length = 256, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$"),
        ("version" = i32, Path, description = "Version, at least 1", minimum = 1),
    ),
    request_body(content = Object, description = "The DAG document"),
    responses(
        (status = 201, description = "Stored", body = WorkflowVersion),
        (status = 200, description = "Already stored with the same document", body = WorkflowVersion),
        (status = 400, body = ErrorBody),
        (status = 403, description = "A user token, unless SCHEDULER_WORKFLOW_WRITERS=any", body = ErrorBody),
        (status = 409, description = "The version exists with another document", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn put_workflow_version(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((workflow_id, version)): PathParams<(String, String)>,
    JsonBody(dag): JsonBody<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<WorkflowVersion>)> {
    if matches!(caller.role, Role::User(_))
        && state.config.workflow_writers == WorkflowWriters::Admin
    {
        return Err(ApiError::Forbidden {
            message: "storing workflow versions needs an admin token: the catalogue is \
                      shared by every user's schedules (an operator may allow users with \
                      SCHEDULER_WORKFLOW_WRITERS=any)"
                .into(),
            field: None,
        });
    }
    let (workflow_id, version) = path_key(&workflow_id, &version)?;
    // Measured as stored and sent to the Executor (compact), not as the client spaced it.
    let limit = state.config.max_dag_bytes;
    if dag.to_string().len() > limit {
        return Err(ApiError::PayloadTooLarge {
            limit,
            field: Some("dag"),
        });
    }
    if holds_nul(&dag) {
        return Err(ApiError::invalid(
            "dag",
            "dag must not contain the NUL character (\\u0000): PostgreSQL cannot store it",
        ));
    }
    let inserted: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "insert into workflow_versions (workflow_id, version, dag) values ($1, $2, $3) \
         on conflict (workflow_id, version) do nothing returning created_at",
    )
    .bind(&workflow_id)
    .bind(version)
    .bind(&dag)
    .fetch_optional(&state.pool)
    .await?;
    if let Some((created_at,)) = inserted {
        return Ok((
            StatusCode::CREATED,
            Json(WorkflowVersion {
                workflow_id,
                version,
                dag,
                created_at,
            }),
        ));
    }
    let existing = fetch(&state, &workflow_id, version).await?.ok_or_else(|| {
        ApiError::Conflict("workflow version was deleted concurrently; retry".into())
    })?;
    if existing.dag == dag {
        Ok((StatusCode::OK, Json(existing)))
    } else {
        Err(ApiError::Conflict(format!(
            "workflow {workflow_id:?} version {version} already exists with a different DAG; \
             versions are immutable, store a new version"
        )))
    }
}

/// A stored workflow version.
#[utoipa::path(
    get, path = "/workflows/{workflow_id}/versions/{version}", tag = "workflows",
    params(
        ("workflow_id" = String, Path, description = "Workflow id", min_length = 1, max_length = 256, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$"),
        ("version" = i32, Path, description = "Version, at least 1", minimum = 1),
    ),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = WorkflowVersion),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_workflow_version(
    State(state): State<AppState>,
    PathParams((workflow_id, version)): PathParams<(String, String)>,
) -> ApiResult<Json<WorkflowVersion>> {
    let (workflow_id, version) = path_key(&workflow_id, &version)?;
    fetch(&state, &workflow_id, version)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("no workflow {workflow_id:?} version {version}"))
        })
}

/// Whether a string or key anywhere in `value` holds U+0000, which `jsonb` refuses.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

async fn fetch(
    state: &AppState,
    workflow_id: &str,
    version: i32,
) -> Result<Option<WorkflowVersion>, sqlx::Error> {
    let row: Option<(serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
        "select dag, created_at from workflow_versions where workflow_id = $1 and version = $2",
    )
    .bind(workflow_id)
    .bind(version)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|(dag, created_at)| WorkflowVersion {
        workflow_id: workflow_id.to_owned(),
        version,
        dag,
        created_at,
    }))
}
