//! `POST /cron/preview`: what a cron expression or an interval means and when it fires,
//! before storing it.

use axum::{Json, Router, routing::post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{JsonBody, parse_param},
};
use crate::schedules::{
    Window,
    model::{check_fires_after, rule},
    spec::{DstFold, DstGap, DstPolicy},
};

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
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FireTime {
    /// The instant, in UTC.
    pub utc: DateTime<Utc>,
    /// The same instant in the expression's timezone, with its offset.
    pub local: String,
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

/// Describe a cron expression and list its next fire times. An expression that never
/// fires from `from` on (`0 0 30 2 *`) is 422, as it is for an upsert.
#[utoipa::path(
    post, path = "/cron/preview", tag = "cron",
    request_body = PreviewRequest,
    responses(
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 200, body = PreviewResponse),
        (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn preview(JsonBody(req): JsonBody<PreviewRequest>) -> ApiResult<Json<PreviewResponse>> {
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
    let spec = window.spec;
    let tz = spec.timezone();
    let next = spec
        .iter_from(from)
        .take(usize::try_from(count).expect("bounded"))
        .map(|utc| FireTime {
            utc,
            local: utc.with_timezone(&tz).to_rfc3339(),
        })
        .collect();
    Ok(Json(PreviewResponse {
        cron_expr: spec.expr().map(str::to_owned),
        interval: spec.interval().map(|i| i.text()),
        anchor: spec.interval().map(|i| i.anchor()),
        timezone: tz.name().to_owned(),
        description: spec.describe(),
        next,
    }))
}
