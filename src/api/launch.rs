//! Launch endpoints: manual launches, trigger-now, bounded backfill, and the Executor's
//! completion report.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    AppState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, PathParams, QueryParams, parse_param},
};
use crate::{
    db::{self, Channel},
    runs::{Run, RunStatus, complete::Completed, store as runs_store},
    schedules::{
        Schedule,
        model::{ScheduleId, validate_instant, validate_name, validate_version},
        store as schedules_store,
    },
};

/// Most ticks one backfill request may cover.
pub const MAX_BACKFILL_TICKS: usize = 1000;
/// Longest idempotency key / error text accepted.
const MAX_KEY_LEN: usize = 256;
const MAX_ERROR_LEN: usize = 4096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/run-launcher/start", post(manual_launch))
        .route("/schedules/{schedule_id}/trigger", post(trigger_schedule))
        .route("/schedules/{schedule_id}/backfill", post(backfill_schedule))
        .route("/runs/{run_id}/complete", post(complete_run))
}

async fn notify_runs(pool: &PgPool) {
    // Best effort: dispatchers also poll.
    let _ = db::notify(pool, Channel::Runs, "").await;
}

async fn fetch_run(pool: &PgPool, run_id: Uuid) -> ApiResult<Run> {
    runs_store::get(pool, run_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run with id {run_id}")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ManualLaunchQuery {
    /// Workflow to launch (required).
    #[param(value_type = String, required = true, min_length = 1, max_length = 256, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$")]
    workflow_id: Option<String>,
    /// Its version, at least 1 (required).
    #[param(value_type = i32, required = true, minimum = 1)]
    version: Option<String>,
    /// On whose behalf (required; a `user` token may only name itself, and may leave it
    /// out).
    #[param(value_type = String, required = true, min_length = 1, max_length = 256, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$")]
    user_id: Option<String>,
    /// The logical time of the run, RFC 3339; default now.
    #[param(value_type = chrono::DateTime<chrono::Utc>, required = false)]
    scheduled_for: Option<String>,
    /// The same key always names the same run of this user: a second call launches
    /// nothing new. Keys are scoped to the user (two users' equal keys are two runs).
    /// Default: none (every call is a new run).
    #[param(value_type = String, required = false, min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    idempotency_key: Option<String>,
}

/// Launch a workflow version now, outside any schedule. Idempotent on `idempotency_key`.
/// A `user` token launches only in its own name (403 for another `user_id`).
#[utoipa::path(
    post, path = "/run-launcher/start", tag = "runs",
    params(ManualLaunchQuery),
    responses(
        (status = 201, description = "A new run, pending launch", body = Run),
        (status = 200, description = "The run this key already names", body = Run),
        (status = 400, body = ErrorBody),
        (status = 409, description = "The key names a run of another workflow or version", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn manual_launch(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ManualLaunchQuery>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let workflow_id = q
        .workflow_id
        .ok_or_else(|| ApiError::invalid("workflow_id", "workflow_id is required"))?;
    validate_name(&workflow_id, "workflow_id")?;
    let version = parse_param(
        q.version.as_deref(),
        "version",
        "an integer from 1 to 2147483647",
        |v| v.parse::<i64>().ok(),
    )?
    .ok_or_else(|| ApiError::invalid("version", "version is required"))?;
    let version = validate_version(version)?;
    let user_id = q
        .user_id
        .or_else(|| caller.user_scope().map(str::to_owned))
        .ok_or_else(|| ApiError::invalid("user_id", "user_id is required"))?;
    validate_name(&user_id, "user_id")?;
    caller.check_acting_as(&user_id, "user_id")?;
    let scheduled_for = parse_param(
        q.scheduled_for.as_deref(),
        "scheduled_for",
        "an RFC 3339 time with a zone, e.g. 2030-01-01T00:00:00Z",
        |v| v.parse::<DateTime<Utc>>().ok(),
    )?;
    if let Some(t) = scheduled_for {
        validate_instant(t, "scheduled_for")?;
    }
    let client_key = q
        .idempotency_key
        .map(|k| check_key(k, "idempotency_key"))
        .transpose()?;
    insert_manual(
        &state,
        ManualRun {
            schedule_id: None,
            scheduled_for,
            workflow_id,
            version,
            user_id,
            client_key,
        },
    )
    .await
    .map(|(status, run)| (status, Json(run)))
}

/// A client's idempotency key, checked: 1 to 256 printable characters.
fn check_key(key: String, field: &'static str) -> ApiResult<String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} must be 1 to {MAX_KEY_LEN} printable characters, e.g. a UUID the \
                 client generates once per intended run"
            ),
        ));
    }
    Ok(key)
}

/// A manual run to insert: a launch outside any schedule, or a schedule's trigger.
struct ManualRun {
    schedule_id: Option<String>,
    scheduled_for: Option<DateTime<Utc>>,
    workflow_id: String,
    version: i32,
    user_id: String,
    /// The client's idempotency key, scoped to `user_id`.
    client_key: Option<String>,
}

/// Inserts `new` (201), or answers the run its client key already names for this user
/// (200), or 409 when that run is of another schedule, workflow or version. The key the
/// Executor receives is the run id: two users may use the same client key.
async fn insert_manual(state: &AppState, new: ManualRun) -> ApiResult<(StatusCode, Run)> {
    let run_id = Uuid::now_v7();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key, client_key, created_by) \
         values ($1, $2, coalesce($3, now()), now(), 'pending', 'manual', $4, $5, $6, \
           $1::text, $7, $8) \
         on conflict do nothing returning run_id",
    )
    .bind(run_id)
    .bind(&new.schedule_id)
    .bind(new.scheduled_for)
    .bind(&new.workflow_id)
    .bind(new.version)
    .bind(&new.user_id)
    .bind(&new.client_key)
    .bind(&state.config.node_id)
    .fetch_optional(&state.pool)
    .await?;
    if let Some(id) = inserted {
        notify_runs(&state.pool).await;
        return Ok((StatusCode::CREATED, fetch_run(&state.pool, id).await?));
    }
    let existing: Option<Uuid> = match &new.client_key {
        Some(key) => {
            sqlx::query_scalar("select run_id from runs where user_id = $1 and client_key = $2")
                .bind(&new.user_id)
                .bind(key)
                .fetch_optional(&state.pool)
                .await?
        }
        None => None,
    };
    let Some(existing) = existing else {
        // The conflict was the schedule's row for this instant (one per tick).
        return Err(ApiError::Conflict(
            "a run of this schedule already exists for this instant; retry".into(),
        ));
    };
    let run = fetch_run(&state.pool, existing).await?;
    if run.schedule_id.as_deref() != new.schedule_id.as_deref()
        || run.workflow_id != new.workflow_id
        || run.version != new.version
    {
        return Err(ApiError::Conflict(
            "this idempotency key already names another run (of another schedule, workflow or \
             version): use a new key for a new run"
                .into(),
        ));
    }
    Ok((StatusCode::OK, run))
}

/// The schedule `raw_id`, if it exists and `caller` may see it (404 otherwise).
async fn visible_schedule(
    pool: &PgPool,
    caller: &Caller,
    raw_id: &str,
    late_after: Duration,
) -> ApiResult<(ScheduleId, Schedule)> {
    let not_found = || ApiError::not_found(format!("no schedule with id {raw_id:?}"));
    let id = ScheduleId::parse(raw_id).map_err(|_| not_found())?;
    let schedule = schedules_store::get(pool, id.as_str(), late_after)
        .await?
        .filter(|s| caller.sees(&s.user_id))
        .ok_or_else(not_found)?;
    Ok((id, schedule))
}

/// Run a schedule's workflow now (its overlap policy still applies at launch). Works on a
/// paused schedule too: it is an explicit request. With an `Idempotency-Key` header, a
/// retried request names the same run (200) instead of starting another; keys are scoped
/// to the schedule's user and shared with `/run-launcher/start`.
#[utoipa::path(
    post, path = "/schedules/{schedule_id}/trigger", tag = "runs",
    params(
        ("schedule_id" = String, Path, description = "Schedule id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key always names the same run of this user: a repeated request triggers nothing new", min_length = 1, max_length = 256),
    ),
    responses(
        (status = 400, description = "Malformed request (query string, path or JSON)", body = ErrorBody),
        (status = 201, description = "A new run, pending launch", body = Run),
        (status = 200, description = "The run this key already names", body = Run),
        (status = 409, description = "The key names another run", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn trigger_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let client_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(check_key(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        "the Idempotency-Key header must be printable ASCII",
                    )
                })?
                .to_owned(),
            "Idempotency-Key",
        )?),
    };
    let (id, s) = visible_schedule(&state.pool, &caller, &id, state.config.misfire_grace).await?;
    insert_manual(
        &state,
        ManualRun {
            schedule_id: Some(id.as_str().to_owned()),
            scheduled_for: None,
            workflow_id: s.workflow_id,
            version: s.version,
            user_id: s.user_id,
            client_key,
        },
    )
    .await
    .map(|(status, run)| (status, Json(run)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// First instant (inclusive), RFC 3339.
    #[schema(value_type = DateTime<Utc>, required)]
    pub from: Option<DateTime<Utc>>,
    /// Last instant (inclusive), RFC 3339; not in the future.
    #[schema(value_type = DateTime<Utc>, required)]
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillResponse {
    /// Ticks of the schedule in the range (within its start/end bounds).
    pub ticks: usize,
    /// New runs created (ticks that had no run).
    pub created: u64,
    /// Lost ticks run again: their run had ended `missed`, `skipped`, `cancelled` or
    /// `failed_launch` and is now `pending` again, with a new Idempotency-Key.
    pub revived: u64,
    /// Ticks whose run was left as it is: `pending`, `launching`, `running`,
    /// `succeeded`, `failed` or `timed_out`.
    pub existing: u64,
}

/// Run a schedule's past ticks in `[from, to]`, at most 1000, still one run per tick:
/// - a tick with no run gets one (trigger `backfill`);
/// - a lost tick, whose run ended `missed`, `skipped`, `cancelled` or `failed_launch`, is
///   revived in place: the same run (same `run_id`) becomes `pending` again with trigger
///   `backfill`, attempt 0, its launch bookkeeping cleared, the schedule's current workflow
///   version, and a new Idempotency-Key, so the Executor does not take it for the lost
///   attempt;
/// - a tick whose run is pending, in flight or finished (`succeeded`, `failed`,
///   `timed_out`) is left alone.
///
/// The runs launch at once, subject to the schedule's overlap policy (use `queue` to run a
/// backfill one after another).
#[utoipa::path(
    post, path = "/schedules/{schedule_id}/backfill", tag = "runs",
    params(("schedule_id" = String, Path, description = "Schedule id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    request_body = BackfillRequest,
    responses(
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 200, body = BackfillResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn backfill_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<BackfillRequest>,
) -> ApiResult<Json<BackfillResponse>> {
    let from = req
        .from
        .ok_or_else(|| ApiError::invalid("from", "from is required"))?;
    let to = req
        .to
        .ok_or_else(|| ApiError::invalid("to", "to is required"))?;
    if to < from {
        return Err(ApiError::invalid("to", "to must not be before from"));
    }
    let (id, s) = visible_schedule(&state.pool, &caller, &id, state.config.misfire_grace).await?;
    let db_now: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&state.pool)
        .await?;
    if to > db_now {
        return Err(ApiError::invalid(
            "to",
            "to must not be in the future; future ticks fire on their own",
        ));
    }
    let window = s
        .window()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored schedule does not parse: {e}")))?;
    let ticks: Vec<DateTime<Utc>> = window
        .ticks_from(from)
        .take_while(|t| *t <= to)
        .take(MAX_BACKFILL_TICKS + 1)
        .collect();
    if ticks.len() > MAX_BACKFILL_TICKS {
        return Err(ApiError::invalid(
            "to",
            format!(
                "the range holds more than {MAX_BACKFILL_TICKS} ticks; backfill in smaller ranges"
            ),
        ));
    }
    // One statement, so neither the leader nor a dispatcher can slip between a read and a
    // write: a tick with no row is inserted; a row that ended lost is revived in place
    // (the `where` of `do update`); any other row is left alone and not returned.
    // `xmax = 0` tells an inserted row from an updated one. A revived run keeps its
    // run_id, created_at and leader_epoch (the leadership that first materialized the
    // tick); created_by becomes this replica, which wrote the attempt that will run.
    // One fresh UUID per tick: run id and key of an inserted run, new key of a revived one.
    let fresh: Vec<Uuid> = ticks.iter().map(|_| Uuid::now_v7()).collect();
    let written: Vec<bool> = sqlx::query_scalar(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key, created_by) \
         select r.fresh, $3, r.scheduled_for, now(), 'pending', 'backfill', $4, $5, $6, \
           r.fresh::text, $7 \
         from unnest($1::uuid[], $2::timestamptz[]) as r(fresh, scheduled_for) \
         on conflict (schedule_id, scheduled_for) do update set \
           status = 'pending', trigger = 'backfill', fire_at = now(), attempt = 0, \
           idempotency_key = excluded.idempotency_key, \
           workflow_id = excluded.workflow_id, version = excluded.version, \
           user_id = excluded.user_id, created_by = excluded.created_by, \
           reason = null, last_error = null, launched_by = null, launched_at = null, \
           lease_until = null, deadline_at = null, finished_at = null, \
           exclusive_slot = false, updated_at = now() \
         where runs.status in ('missed', 'skipped', 'cancelled', 'failed_launch') \
         returning xmax = 0",
    )
    .bind(&fresh)
    .bind(&ticks)
    .bind(id.as_str())
    .bind(&s.workflow_id)
    .bind(s.version)
    .bind(&s.user_id)
    .bind(&state.config.node_id)
    .fetch_all(&state.pool)
    .await?;
    let created = written.iter().filter(|inserted| **inserted).count() as u64;
    let revived = written.len() as u64 - created;
    if !written.is_empty() {
        notify_runs(&state.pool).await;
    }
    Ok(Json(BackfillResponse {
        ticks: ticks.len(),
        created,
        revived,
        existing: ticks.len() as u64 - created - revived,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// `succeeded` or `failed`.
    #[schema(value_type = String, required, pattern = "^(succeeded|failed)$")]
    pub status: Option<String>,
    /// Why it failed (kept on the run, at most 4096 characters).
    #[schema(max_length = 4096)]
    pub error: Option<String>,
}

/// The Executor reports the end of a run. Reporting the same end again is a no-op (200);
/// a different end for a finished run is 409.
#[utoipa::path(
    post, path = "/runs/{run_id}/complete", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    request_body = CompleteRequest,
    responses(
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 200, body = Run),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn complete_run(
    State(state): State<AppState>,
    PathParams(run_id): PathParams<String>,
    JsonBody(req): JsonBody<CompleteRequest>,
) -> ApiResult<Json<Run>> {
    let run_id = Uuid::parse_str(&run_id)
        .map_err(|_| ApiError::not_found(format!("no run with id {run_id:?}")))?;
    let status = match req.status.as_deref() {
        Some("succeeded") => RunStatus::Succeeded,
        Some("failed") => RunStatus::Failed,
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!(
                    "status {} is not one of succeeded, failed",
                    crate::text::quoted(other)
                ),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "status",
                "status is required (succeeded or failed)",
            ));
        }
    };
    if req
        .error
        .as_ref()
        .is_some_and(|e| e.chars().count() > MAX_ERROR_LEN)
    {
        return Err(ApiError::invalid(
            "error",
            format!("error is longer than {MAX_ERROR_LEN} characters"),
        ));
    }
    if req.error.as_ref().is_some_and(|e| e.contains('\0')) {
        return Err(ApiError::invalid(
            "error",
            "error must not contain the NUL character",
        ));
    }
    match state
        .completions
        .complete(run_id, status, req.error)
        .await?
    {
        Completed::Ended(run) => {
            state.telemetry.metrics.runs_completed.add(
                1,
                &[opentelemetry::KeyValue::new("status", status.as_str())],
            );
            Ok(Json(run))
        }
        Completed::Already(run) => Ok(Json(run)),
        Completed::Conflict(run) => Err(ApiError::Conflict(format!(
            "run {run_id} is {}; it cannot become {status}",
            run.status
        ))),
        Completed::NotFound => Err(ApiError::not_found(format!("no run with id {run_id}"))),
    }
}
