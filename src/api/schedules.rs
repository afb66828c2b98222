//! `/schedules` endpoints.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParams, QueryParams, parse_limit, parse_param},
};
use crate::schedules::{
    Schedule, ScheduleHealth, ScheduleStatus,
    model::{ScheduleId, ScheduleRequest},
    store::{self, ListFilter},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(list_schedules))
        .route("/schedules/upsert", post(upsert_schedule))
        .route(
            "/schedules/{schedule_id}",
            get(get_schedule).delete(delete_schedule),
        )
        .route("/schedules/{schedule_id}/pause", post(pause_schedule))
}

/// A path id that cannot be a schedule id cannot name a schedule: 404, like any other.
fn path_id(raw: &str) -> ApiResult<ScheduleId> {
    ScheduleId::parse(raw).map_err(|_| schedule_not_found(raw))
}

fn schedule_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no schedule with id {id:?}"))
}

/// Create (201) or replace (200) a schedule. A `user` token may only store schedules of
/// its own `user_id` (403 otherwise), and an existing id of another user's schedule is 404.
#[utoipa::path(
    post, path = "/schedules/upsert", tag = "schedules",
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Created", body = Schedule),
        (status = 200, description = "Replaced", body = Schedule),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn upsert_schedule(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> ApiResult<impl IntoResponse> {
    let spec = request.validate(state.defaults)?;
    caller.check_acting_as(&spec.user_id, "user_id")?;
    let (schedule, created) = store::upsert(
        &state.pool,
        &spec,
        caller.user_scope(),
        state.config.misfire_grace,
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(schedule)))
}

/// A schedule, with its status and next fire times.
#[utoipa::path(
    get, path = "/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path, description = "Schedule id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = Schedule),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Schedule>> {
    let id = path_id(&id)?;
    store::get(&state.pool, id.as_str(), state.config.misfire_grace)
        .await?
        .filter(|s| caller.sees(&s.user_id))
        .map(Json)
        .ok_or_else(|| schedule_not_found(id.as_str()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's schedules.
    user_id: Option<String>,
    /// Only this workflow's schedules.
    workflow_id: Option<String>,
    /// Only paused (`true`) or unpaused (`false`) schedules.
    #[param(value_type = bool, required = false)]
    paused: Option<String>,
    /// Only schedules in this state: `active`, `paused` (and not completed) or `completed`
    /// (no tick left).
    #[param(value_type = Option<ScheduleStatus>, required = false)]
    status: Option<String>,
    /// Only schedules of this health. A page then examines at most 2,000 schedules, so it
    /// may hold fewer than `limit` (none, even) and still have a `next_cursor`.
    #[param(value_type = Option<ScheduleHealth>, required = false)]
    health: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = String, required = false, pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Schedules in id order, filtered, one page at a time. A `user` token sees only its own.
#[utoipa::path(
    get, path = "/schedules", tag = "schedules",
    params(ListQuery),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = ScheduleList),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<ScheduleList>> {
    let paused = parse_param(q.paused.as_deref(), "paused", "true or false", |v| {
        v.parse::<bool>().ok()
    })?;
    let health = parse_param(q.health.as_deref(), "health", "ok, late or failing", |v| {
        v.parse::<ScheduleHealth>().ok()
    })?;
    let status = parse_param(
        q.status.as_deref(),
        "status",
        "active, paused or completed",
        |v| v.parse::<ScheduleStatus>().ok(),
    )?;
    // A state is a pair of conditions: paused or not, and whether a tick is left.
    let (paused, completed) = match status {
        None => (paused, None),
        Some(ScheduleStatus::Completed) => (paused, Some(true)),
        Some(ScheduleStatus::Paused) if paused == Some(false) => {
            return Err(ApiError::invalid(
                "status",
                "status=paused contradicts paused=false",
            ));
        }
        Some(ScheduleStatus::Active) if paused == Some(true) => {
            return Err(ApiError::invalid(
                "status",
                "status=active contradicts paused=true",
            ));
        }
        Some(ScheduleStatus::Paused) => (Some(true), Some(false)),
        Some(ScheduleStatus::Active) => (Some(false), Some(false)),
    };
    let limit = parse_limit(q.limit.as_deref(), 100, 1000)?;
    let after = match q.cursor {
        Some(c) => Some(
            ScheduleId::parse(&c)
                .map_err(|_| {
                    ApiError::invalid("cursor", "cursor is not a cursor this API returned")
                })?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    for (field, value) in [("user_id", &q.user_id), ("workflow_id", &q.workflow_id)] {
        if value.as_ref().is_some_and(|v| v.contains('\0')) {
            return Err(ApiError::invalid(
                field,
                format!("{field} must not contain the NUL character"),
            ));
        }
    }
    let user_id = match (caller.user_scope(), q.user_id) {
        (None, asked) => asked,
        (Some(me), Some(asked)) if asked != me => {
            // Another user's schedules: as far as this caller knows there are none.
            return Ok(Json(ScheduleList {
                schedules: Vec::new(),
                next_cursor: None,
            }));
        }
        (Some(me), _) => Some(me.to_owned()),
    };
    let filter = ListFilter {
        user_id,
        workflow_id: q.workflow_id,
        paused,
        completed,
        health,
        after,
        limit,
    };
    let (schedules, next_cursor) =
        store::list(&state.pool, &filter, state.config.misfire_grace).await?;
    Ok(Json(ScheduleList {
        schedules,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    #[schema(value_type = bool, required)]
    pub paused: Option<bool>,
}

/// Pause (cancels pending runs) or unpause (resumes from the next future tick).
#[utoipa::path(
    post, path = "/schedules/{schedule_id}/pause", tag = "schedules",
    params(("schedule_id" = String, Path, description = "Schedule id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    request_body = PauseRequest,
    responses(
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 200, body = Schedule),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn pause_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<PauseRequest>,
) -> ApiResult<Json<Schedule>> {
    let id = path_id(&id)?;
    let paused = body
        .paused
        .ok_or_else(|| ApiError::invalid("paused", "paused is required (true or false)"))?;
    store::set_paused(
        &state.pool,
        id.as_str(),
        paused,
        caller.user_scope(),
        state.config.misfire_grace,
    )
    .await?
    .map(Json)
    .ok_or_else(|| schedule_not_found(id.as_str()))
}

/// Delete a schedule: pending runs are cancelled and no further tick fires.
#[utoipa::path(
    delete, path = "/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path, description = "Schedule id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    if store::delete(&state.pool, id.as_str(), caller.user_scope()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(schedule_not_found(id.as_str()))
    }
}
