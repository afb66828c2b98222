//! `/runs` and `/schedules/{id}/runs` endpoints: a run, and a schedule's run history.
//!
//! The history's `next_cursor` is the last listed run's `scheduled_for` as RFC 3339 with
//! microseconds (PostgreSQL's precision), so it names that tick exactly. Clients should
//! treat it as opaque; only a cursor in exactly that form is accepted, anything else is a
//! 422 naming `cursor`.

use axum::{Json, Router, extract::State, routing::get};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    AppState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{PathParams, QueryParams, parse_limit, parse_param},
};
use crate::{
    runs::{
        Run, RunStatus,
        store::{self, RunFilter},
    },
    schedules::model::ScheduleId,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{run_id}", get(get_run))
        .route("/schedules/{schedule_id}/runs", get(list_schedule_runs))
}

fn encode_cursor(scheduled_for: DateTime<Utc>) -> String {
    scheduled_for.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Accepts only what [`encode_cursor`] produces, so a cursor never loses precision.
fn parse_cursor(raw: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(raw).ok()?.to_utc();
    (encode_cursor(t) == raw).then_some(t)
}

/// A run. A `user` token sees only runs made in its name (404 otherwise).
#[utoipa::path(
    get, path = "/runs/{run_id}", tag = "runs",
    params(("run_id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = Run),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
) -> ApiResult<Json<Run>> {
    let not_found = || ApiError::not_found(format!("no run with id {raw:?}"));
    // A path that is not a UUID cannot name a run: 404, like any other unknown id.
    let run_id = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    store::get(&state.pool, run_id)
        .await?
        .filter(|run| caller.sees(&run.user_id))
        .map(Json)
        .ok_or_else(not_found)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only runs with this status (`pending`, `running`, `failed`, ...).
    #[param(value_type = RunStatus, required = false)]
    status: Option<String>,
    /// `next_cursor` of the previous page: an instant in UTC with microseconds.
    #[param(value_type = String, required = false, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$")]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A schedule's runs, newest tick first, one page at a time. A deleted schedule's runs
/// stay listed. A `user` token sees only runs made in its name; a schedule with none of
/// those and not its own is 404.
#[utoipa::path(
    get, path = "/schedules/{schedule_id}/runs", tag = "runs",
    params(("schedule_id" = String, Path, description = "Schedule id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"), RunsQuery),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 200, body = RunList),
        (status = 404, description = "Neither the schedule nor any run of it exists", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list_schedule_runs(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    QueryParams(q): QueryParams<RunsQuery>,
) -> ApiResult<Json<RunList>> {
    let not_found = || ApiError::not_found(format!("no schedule with id {raw:?}"));
    let id = ScheduleId::parse(&raw).map_err(|_| not_found())?;
    let limit = parse_limit(q.limit.as_deref(), 100, 1000)?;
    let statuses = RunStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let status = parse_param(
        q.status.as_deref(),
        "status",
        &format!("one of {statuses}"),
        |v| v.parse().ok(),
    )?;
    let before = parse_param(
        q.cursor.as_deref(),
        "cursor",
        "a next_cursor this API returned",
        parse_cursor,
    )?;
    let filter = RunFilter {
        status,
        before,
        user_id: caller.user_scope().map(str::to_owned),
        limit,
    };
    let (runs, next) = store::list_for_schedule(&state.pool, id.as_str(), &filter).await?;
    if runs.is_empty()
        && !store::schedule_known(&state.pool, id.as_str(), caller.user_scope()).await?
    {
        return Err(not_found());
    }
    Ok(Json(RunList {
        runs,
        next_cursor: next.map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let t: DateTime<Utc> = "2026-03-08T07:00:00.000001Z".parse().unwrap();
        let c = encode_cursor(t);
        assert_eq!(c, "2026-03-08T07:00:00.000001Z");
        assert_eq!(parse_cursor(&c), Some(t));
        let whole: DateTime<Utc> = "2026-03-08T07:00:00Z".parse().unwrap();
        assert_eq!(parse_cursor(&encode_cursor(whole)), Some(whole));
    }

    #[test]
    fn only_cursors_in_the_returned_form_are_accepted() {
        for bad in [
            "",
            "x",
            "2026-03-08",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:00:00.000001+01:00",
            "2026-03-08T07:00:00.0000001Z",
            "2026-03-08t07:00:00.000001z",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
