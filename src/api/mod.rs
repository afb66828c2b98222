//! The REST API: one router per domain file, merged here with the layers every request
//! goes through (body limit, timeout, panic guard, request span); and the web console
//! (`/ui`, [`ui`]), a client of that API served from files embedded in the binary.

pub mod auth;
pub mod calendars;
pub mod error;
pub mod extract;
pub mod health;
pub mod launch;
pub mod observe;
pub mod preview;
pub mod rate_limit;
pub mod runs;
pub mod schedules;
pub mod server;
pub mod ui;
pub mod worker;
pub mod workflows;

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::DefaultBodyLimit,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use sqlx::PgPool;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    config::Config, fleet::leader::NodeState, runs::complete::Completions,
    schedules::model::Defaults, telemetry::Telemetry,
};
use auth::SecurityDoc;
use error::ApiError;
use extract::BodyLimit;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub defaults: Defaults,
    /// This replica's role in the fleet.
    pub node: Arc<NodeState>,
    /// Metrics (recorded by handlers, rendered on `/metrics`).
    pub telemetry: Arc<Telemetry>,
    /// The writer of the Executor's completion reports (batched).
    pub completions: Completions,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        config: Arc<Config>,
        node: Arc<NodeState>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let defaults = Defaults {
            overlap_policy: config.default_overlap_policy,
            catchup_policy: config.default_catchup_policy,
        };
        let completions = Completions::start(pool.clone(), config.arm_window);
        Self {
            pool,
            config,
            defaults,
            node,
            telemetry,
            completions,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cron-scheduler",
        description = "Stores cron schedules, fires every tick exactly once, and hands each run to an Executor."
    ),
    paths(
        schedules::upsert_schedule,
        schedules::get_schedule,
        schedules::list_schedules,
        schedules::pause_schedule,
        schedules::delete_schedule,
        calendars::put_calendar,
        calendars::get_calendar,
        calendars::list_calendars,
        calendars::delete_calendar,
        workflows::put_workflow_version,
        workflows::get_workflow_version,
        preview::preview,
        runs::get_run,
        runs::list_schedule_runs,
        launch::manual_launch,
        launch::trigger_schedule,
        launch::backfill_schedule,
        launch::complete_run,
        worker::start_worker,
        worker::stop_worker,
        worker::worker_status,
        health::live,
        health::ready,
        observe::metrics,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&SecurityDoc)
)]
pub struct ApiDoc;

/// The complete router, state applied.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    Router::new()
        .merge(schedules::router())
        .merge(calendars::router())
        .merge(workflows::router())
        .merge(preview::router())
        .merge(runs::router())
        .merge(launch::router())
        .merge(worker::router())
        .merge(health::router())
        .merge(observe::router())
        .merge(ui::router())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(extract::refuse_unknown_query))
        .layer(axum::middleware::from_fn_with_state(
            auth::Guard::new(state.config.clone()),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout.max(Duration::from_millis(1)),
        ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    let hint = match (method.as_str(), path.trim_end_matches('/')) {
        ("POST" | "PUT", "/schedules") => {
            "; to create or update a schedule, POST /schedules/upsert with the schedule as JSON"
        }
        ("PUT" | "POST" | "PATCH", p) if p.starts_with("/schedules/") => {
            "; to change a schedule, POST /schedules/upsert with its schedule_id in the body \
             (or POST /schedules/{id}/pause, /unpause, /trigger, /backfill)"
        }
        _ => "; GET /openapi.json (or /docs) lists the methods each path takes",
    };
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {path}{hint}"))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = error::ErrorBody {
        error: error::ErrorDetail {
            code: "internal",
            message: "internal error".into(),
            field: None,
        },
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
