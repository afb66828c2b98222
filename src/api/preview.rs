//! `POST /cron/preview`: what a cron expression or an interval means and when it fires,
//! before storing it.

use std::collections::HashMap;

use axum::{Json, Router, extract::State, routing::post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    auth::Caller,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, parse_param},
};
use crate::schedules::{
    Window,
    calendar::{MAX_SCHEDULE_CALENDARS, check_calendar_name},
    calendar_store,
    exclusions::{CalendarRules, Exclusions, NextTick, OnExcluded, TickOutcome},
    model::{check_fires_after, rule, validate_exclusions},
    spec::{DstFold, DstGap, DstPolicy},
};

fn unknown_calendar(name: &str) -> ApiError {
    ApiError::invalid(
        "exclude_calendars",
        format!(
            "exclude_calendars: no calendar {name:?} you may use (it does not exist, or it is \
             another user's and not shared)"
        ),
    )
}

/// Most fire times one preview returns.
pub const MAX_PREVIEW_COUNT: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/cron/preview", post(preview))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Required unless `interval` is given (one of the two, as for a schedule).
    #[schema(example = "0 0 * * *", value_type = String, min_length = 1, max_length = 256)]
    pub cron_expr: Option<String>,
    /// Instead of `cron_expr`: an ISO 8601 duration (`PT90M`), as for a schedule.
    #[schema(example = "PT90M", max_length = 64)]
    pub interval: Option<String>,
    /// The instant an interval counts from; default 1970-01-01T00:00:00Z.
    pub anchor: Option<DateTime<Utc>>,
    /// IANA timezone, default `UTC`.
    #[schema(example = "America/New_York", max_length = 64)]
    pub timezone: Option<String>,
    /// How many fire times, 1..=100 (default 5).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(
        default,
        deserialize_with = "crate::schedules::model::deserialize_integer"
    )]
    pub count: Option<i64>,
    /// Start from this instant (inclusive); default now.
    pub from: Option<DateTime<Utc>>,
    /// The schedule's DST policy for a gap: `shift` or `skip` (see the schedule fields).
    #[schema(value_type = Option<DstGap>)]
    pub dst_gap: Option<String>,
    /// The schedule's DST policy for a fold: `once` or `twice`.
    #[schema(value_type = Option<DstFold>)]
    pub dst_fold: Option<String>,
    /// Calendars to check the ticks against (the caller's own or shared ones), at most 8.
    #[schema(max_items = 8)]
    pub exclude_calendars: Option<Vec<String>>,
    /// `skip` (default), `next_business_day` or `previous_business_day`, as for a schedule.
    #[schema(value_type = Option<OnExcluded>)]
    pub on_excluded: Option<String>,
}

/// One tick: its instant, and what the calendars make of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FireTime {
    /// The tick, in UTC.
    pub utc: DateTime<Utc>,
    /// The same instant in the expression's timezone, with its offset.
    pub local: String,
    /// `fire`, `skipped` (a calendar excludes it, `on_excluded = skip`, or no business day
    /// within 366 days) or `moved`.
    pub outcome: TickOutcome,
    /// When its run fires (before jitter): the tick, or its moved time; `null` if skipped.
    pub fire_at: Option<DateTime<Utc>>,
    /// `fire_at` in the expression's timezone.
    pub fire_at_local: Option<String>,
    /// `calendar` when a calendar excludes the tick, else `null`.
    pub reason: Option<crate::kinds::RunReason>,
    /// The calendar that excludes the tick, else `null`.
    pub calendar: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResponse {
    /// `null` for an interval.
    pub cron_expr: Option<String>,
    /// The interval in the largest whole units; `null` for a cron expression.
    pub interval: Option<String>,
    /// The instant the interval counts from; `null` for a cron expression.
    pub anchor: Option<DateTime<Utc>>,
    pub timezone: String,
    pub description: String,
    pub next: Vec<FireTime>,
}

/// Describe a cron expression and list its next ticks; with `exclude_calendars`, each
/// tick's fate (fires, skipped or moved, and by which calendar). An expression that never
/// fires from `from` on (`0 0 30 2 *`) is 422, as it is for an upsert; so is a calendar the
/// caller may not see (`exclude_calendars`).
#[utoipa::path(
    post, path = "/cron/preview", tag = "cron",
    request_body = PreviewRequest,
    responses(
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 200, body = PreviewResponse),
        (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "Database unavailable (looking up exclude_calendars)", body = ErrorBody),
    )
)]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<PreviewRequest>,
) -> ApiResult<Json<PreviewResponse>> {
    // Look up only names that can be calendars' (`answer` refuses the others, naming the
    // field): the caller's own calendars and shared ones (all for an admin).
    let names = req.exclude_calendars.as_deref().unwrap_or_default();
    let lookup = names.len() <= MAX_SCHEDULE_CALENDARS
        && names.iter().all(|n| check_calendar_name(n).is_ok());
    let calendars = if lookup {
        calendar_store::rules_visible_to(&state.pool, names, caller.user_scope()).await?
    } else {
        HashMap::new()
    };
    answer(req, &calendars).map(Json)
}

/// The preview of `req`, with `calendars` holding the rules of the calendars it names that
/// the caller may use (a name missing from it is 422). Pure: no I/O.
pub fn answer(
    req: PreviewRequest,
    calendars: &HashMap<String, CalendarRules>,
) -> ApiResult<PreviewResponse> {
    let gap = parse_param(req.dst_gap.as_deref(), "dst_gap", "shift or skip", |v| {
        v.parse::<DstGap>().ok()
    })?;
    let fold = parse_param(req.dst_fold.as_deref(), "dst_fold", "once or twice", |v| {
        v.parse::<DstFold>().ok()
    })?;
    let spec = rule(
        req.cron_expr,
        req.interval,
        req.anchor,
        req.timezone.as_deref().unwrap_or("UTC"),
        DstPolicy { gap, fold },
    )
    .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let (names, on_excluded) =
        validate_exclusions(req.exclude_calendars, req.on_excluded.as_deref(), &spec)?;
    let count = req.count.unwrap_or(5);
    if !(1..=MAX_PREVIEW_COUNT).contains(&count) {
        return Err(ApiError::invalid(
            "count",
            format!("count must be from 1 to {MAX_PREVIEW_COUNT}"),
        ));
    }
    let from = req.from.unwrap_or_else(Utc::now);
    // The same rule as an upsert: an expression that never fires is refused, not answered
    // with an empty list.
    let window = Window {
        spec,
        start_at: None,
        end_at: None,
    };
    check_fires_after(&window, from).map_err(|e| ApiError::invalid(e.field, e.message))?;
    if let Some(name) = names.iter().find(|n| !calendars.contains_key(*n)) {
        return Err(unknown_calendar(name));
    }
    let exclusions = Exclusions::resolve(&names, on_excluded, |n| calendars.get(n));
    let spec = &window.spec;
    let tz = spec.timezone();
    let next = spec
        .iter_from(from)
        .take(usize::try_from(count).expect("bounded"))
        .map(|utc| {
            let tick = NextTick::new(utc, exclusions.fate(utc, spec));
            FireTime {
                utc,
                local: utc.with_timezone(&tz).to_rfc3339(),
                outcome: tick.outcome,
                fire_at: tick.fire_at,
                fire_at_local: tick.fire_at.map(|f| f.with_timezone(&tz).to_rfc3339()),
                reason: tick.reason,
                calendar: tick.calendar,
            }
        })
        .collect();
    Ok(PreviewResponse {
        cron_expr: spec.expr().map(str::to_owned),
        interval: spec.interval().map(|i| i.text()),
        anchor: spec.interval().map(|i| i.anchor()),
        timezone: tz.name().to_owned(),
        description: spec.describe(),
        next,
    })
}
