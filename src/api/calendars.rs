//! `/calendars` endpoints: named sets of excluded dates that schedules refer to
//! (`exclude_calendars`). Owned by a user like schedules: a `user` token reads its own
//! calendars and shared ones, and writes only its own; only an admin shares one. Another
//! user's unshared calendar is 404, as an unknown one.

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParams, QueryParams, parse_limit},
};
use crate::schedules::{
    calendar::{Calendar, CalendarRequest, check_calendar_name},
    calendar_store::{self, CalendarError},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calendars", get(list_calendars))
        .route(
            "/calendars/{name}",
            get(get_calendar).put(put_calendar).delete(delete_calendar),
        )
}

fn calendar_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("no calendar named {name:?}"))
}

/// A path name that cannot be a calendar name names no calendar: 404, like any other.
fn path_name(raw: &str) -> ApiResult<&str> {
    check_calendar_name(raw).map_err(|_| calendar_not_found(raw))?;
    Ok(raw)
}

impl From<CalendarError> for ApiError {
    fn from(e: CalendarError) -> Self {
        match e {
            CalendarError::Invalid(f) => ApiError::Invalid(f),
            CalendarError::Db(e) => e.into(),
            CalendarError::NotFound(name) => calendar_not_found(&name),
            CalendarError::NotOwner(_) => ApiError::Forbidden {
                message: e.to_string(),
                field: None,
            },
            CalendarError::InUse(message) => ApiError::Conflict(message),
            CalendarError::Corrupt(..) => ApiError::Internal(e.into()),
        }
    }
}

/// Create (201) or replace (200) a calendar. A `user` token may only store calendars of
/// its own `user_id` (403 otherwise) and may not share them (403 on `shared`); another
/// user's calendar is 404 (403 if it is shared). A change that would hide the calendar
/// from schedules of other users naming it is 409.
#[utoipa::path(
    put, path = "/calendars/{name}", tag = "calendars",
    params(("name" = String, Path, description = "Calendar name", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    request_body = CalendarRequest,
    responses(
        (status = 201, description = "Created", body = Calendar),
        (status = 200, description = "Replaced", body = Calendar),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Another user's calendar", body = ErrorBody),
        (status = 409, description = "Schedules of other users name it", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn put_calendar(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
    JsonBody(request): JsonBody<CalendarRequest>,
) -> ApiResult<impl IntoResponse> {
    let name = path_name(&name)?;
    let spec = request.validate(name)?;
    caller.check_acting_as(&spec.user_id, "user_id")?;
    if spec.shared && caller.user_scope().is_some() {
        return Err(ApiError::Forbidden {
            message: "only an admin may share a calendar (shared: true)".into(),
            field: Some("shared"),
        });
    }
    let (calendar, created) = calendar_store::put(&state.pool, &spec, caller.user_scope()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(calendar)))
}

/// A calendar: the caller's own, a shared one, or any for an admin.
#[utoipa::path(
    get, path = "/calendars/{name}", tag = "calendars",
    params(("name" = String, Path, description = "Calendar name", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = Calendar),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_calendar(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<Json<Calendar>> {
    let name = path_name(&name)?;
    calendar_store::get(&state.pool, name)
        .await?
        .filter(|c| c.shared || caller.sees(&c.user_id))
        .map(Json)
        .ok_or_else(|| calendar_not_found(name))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CalendarListQuery {
    /// Only this user's calendars.
    user_id: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = String, required = false, pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarList {
    pub calendars: Vec<Calendar>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Calendars in name order, one page at a time: a `user` token sees its own and shared
/// ones.
#[utoipa::path(
    get, path = "/calendars", tag = "calendars",
    params(CalendarListQuery),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = CalendarList),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list_calendars(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<CalendarListQuery>,
) -> ApiResult<Json<CalendarList>> {
    let limit = parse_limit(q.limit.as_deref(), 100, 1000)?;
    if let Some(c) = &q.cursor {
        check_calendar_name(c)
            .map_err(|_| ApiError::invalid("cursor", "cursor is not a cursor this API returned"))?;
    }
    if q.user_id.as_ref().is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::invalid(
            "user_id",
            "user_id must not contain the NUL character",
        ));
    }
    let (calendars, next_cursor) = calendar_store::list(
        &state.pool,
        caller.user_scope(),
        q.user_id.as_deref(),
        q.cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(CalendarList {
        calendars,
        next_cursor,
    }))
}

/// Delete a calendar (204). 409, naming them, while schedules name it in
/// `exclude_calendars`.
#[utoipa::path(
    delete, path = "/calendars/{name}", tag = "calendars",
    params(("name" = String, Path, description = "Calendar name", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Schedules name it", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete_calendar(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<StatusCode> {
    let name = path_name(&name)?;
    calendar_store::delete(&state.pool, name, caller.user_scope()).await?;
    Ok(StatusCode::NO_CONTENT)
}
