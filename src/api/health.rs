//! Health endpoints. `/health` and `/health/live` say the process serves HTTP; they never
//! touch the database, so a database outage does not make an orchestrator restart every
//! replica. `/health/ready` also checks the database (with a short timeout) and answers
//! 503 when it cannot be reached, so a load balancer routes around the replica.

use std::time::Duration;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::kinds::{CatchupPolicy, OverlapPolicy};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(live))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// For readiness: `up` or `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    pub node_id: String,
    pub version: &'static str,
    /// The IANA time zone database this binary computes with (e.g. `2025b`).
    #[schema(example = "2025b")]
    pub tzdb_version: &'static str,
    /// What a schedule gets for an omitted policy (`SCHEDULER_DEFAULT_*_POLICY`), so a
    /// client can tell what an upsert will store (`cron-scheduler ctl schedules apply`).
    pub schedule_defaults: ScheduleDefaults,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDefaults {
    pub overlap_policy: OverlapPolicy,
    pub catchup_policy: CatchupPolicy,
}

impl ScheduleDefaults {
    fn of(state: &AppState) -> Self {
        Self {
            overlap_policy: state.config.default_overlap_policy,
            catchup_policy: state.config.default_catchup_policy,
        }
    }
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
pub async fn live(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        database: None,
        node_id: state.config.node_id.clone(),
        version: crate::VERSION,
        tzdb_version: crate::schedules::spec::TZDB_VERSION,
        schedule_defaults: ScheduleDefaults::of(&state),
    })
}

/// Readiness: the process serves HTTP and reaches the database.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let probe = sqlx::query("select 1").execute(&state.pool);
    let up = matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(_))
    );
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if up { "ok" } else { "unavailable" },
            database: Some(if up { "up" } else { "down" }),
            node_id: state.config.node_id.clone(),
            version: crate::VERSION,
            tzdb_version: crate::schedules::spec::TZDB_VERSION,
            schedule_defaults: ScheduleDefaults::of(&state),
        }),
    )
}
