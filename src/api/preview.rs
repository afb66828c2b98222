//! `POST /cron/preview`: what an expression means and when it fires, before storing it.

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
    CronSpec, Window,
    model::check_fires_after,
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
    #[schema(example = "0 0 * * *", value_type = String, required, min_length = 1, max_length = 256)]
    pub cron_expr: Option<String>,
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
    pub cron_expr: String,
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
    let expr = req
        .cron_expr
        .ok_or_else(|| ApiError::invalid("cron_expr", "cron_expr is required"))?;
    let gap = parse_param(req.dst_gap.as_deref(), "dst_gap", "shift or skip", |v| {
        v.parse::<DstGap>().ok()
    })?;
    let fold = parse_param(req.dst_fold.as_deref(), "dst_fold", "once or twice", |v| {
        v.parse::<DstFold>().ok()
    })?;
    let spec = CronSpec::parse(&expr, req.timezone.as_deref().unwrap_or("UTC"))
        .map_err(|e| ApiError::invalid(e.field, e.message))?
        .with_dst(DstPolicy { gap, fold });
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
        cron_expr: spec.expr().to_owned(),
        timezone: tz.name().to_owned(),
        description: spec.describe(),
        next,
    }))
}
