//! `/worker/*`: the fleet-wide worker switch and the fleet's status.
//!
//! The switch lives in the database (`fleet_state.worker_enabled`), so it survives
//! restarts and it does not matter which replica behind the load balancer gets the call.
//! Stopped, the leader materializes no ticks (and, with the launcher, no replica launches
//! runs); ticks that fall due while stopped are handled by each schedule's catch-up
//! policy when the worker starts again.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AppState,
    error::{ApiResult, ErrorBody},
};
use crate::fleet::{self, nodes::LIVE_WINDOW_SECS};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/worker/start", post(start_worker))
        .route("/worker/stop", post(stop_worker))
        .route("/worker/status", get(worker_status))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderInfo {
    pub node_id: String,
    pub epoch: i64,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct NodeInfo {
    pub node_id: String,
    /// `leader`, `follower` or `stopped`.
    pub role: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerStatus {
    pub cluster_name: String,
    /// The replica that answered.
    pub node_id: String,
    /// Whether the replica that answered leads.
    pub is_leader: bool,
    /// The fleet-wide switch.
    pub worker_enabled: bool,
    /// The current leader, `null` when none holds the lock.
    pub leader: Option<LeaderInfo>,
    /// Nodes seen in the last few seconds.
    pub nodes: Vec<NodeInfo>,
    /// When the leader last finished a tick pass (database time).
    pub last_tick_at: Option<DateTime<Utc>>,
    /// Schedules whose next tick is due now and not yet materialized.
    pub due_schedules: i64,
    /// Runs waiting to launch (due or not).
    pub pending_runs: i64,
    /// Pending runs whose fire time has passed.
    pub overdue_runs: i64,
    /// Age of the oldest overdue pending run, in seconds (0 when none).
    pub lag_seconds: f64,
    /// The IANA time zone database the answering replica computes with (e.g. `2025b`).
    pub tzdb_version: &'static str,
}

type StateRow = (
    bool,
    i64,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

async fn status(state: &AppState) -> ApiResult<WorkerStatus> {
    let cluster = &state.config.cluster_name;
    let row: Option<StateRow> = sqlx::query_as(
        "select worker_enabled, leader_epoch, leader_node, leader_since, last_tick_at \
         from fleet_state where cluster_name = $1",
    )
    .bind(cluster)
    .fetch_optional(&state.pool)
    .await?;
    let (worker_enabled, epoch, leader_node, leader_since, last_tick_at) =
        row.unwrap_or((state.config.worker_autostart, 0, None, None, None));
    let nodes: Vec<NodeInfo> = sqlx::query_as(
        "select node_id, role, version, started_at, last_seen_at from nodes \
         where cluster_name = $1 and last_seen_at > now() - make_interval(secs => $2) \
           and role <> 'stopped' \
         order by node_id",
    )
    .bind(cluster)
    .bind(LIVE_WINDOW_SECS as f64)
    .fetch_all(&state.pool)
    .await?;
    let (due_schedules, pending_runs, overdue_runs, lag_seconds): (i64, i64, i64, f64) =
        sqlx::query_as(
            "select \
           (select count(*) from schedules where not paused and next_due_at <= now()), \
           (select count(*) from runs where status = 'pending'), \
           (select count(*) from runs where status = 'pending' and fire_at <= now()), \
           coalesce((select extract(epoch from now() - min(fire_at))::float8 \
                     from runs where status = 'pending' and fire_at <= now()), 0)",
        )
        .fetch_one(&state.pool)
        .await?;
    Ok(WorkerStatus {
        cluster_name: cluster.clone(),
        node_id: state.node.node_id.clone(),
        is_leader: state.node.is_leader(),
        worker_enabled,
        leader: leader_node.map(|node_id| LeaderInfo {
            node_id,
            epoch,
            since: leader_since,
        }),
        nodes,
        last_tick_at,
        due_schedules,
        pending_runs,
        overdue_runs,
        lag_seconds,
        tzdb_version: crate::schedules::spec::TZDB_VERSION,
    })
}

async fn switch(state: &AppState, enabled: bool) -> ApiResult<WorkerStatus> {
    fleet::state::set_worker_enabled(&state.pool, &state.config.cluster_name, enabled).await?;
    status(state).await
}

/// Switch the fleet's worker on.
#[utoipa::path(post, path = "/worker/start", tag = "worker",
    responses((status = 200, body = WorkerStatus), (status = 503, body = ErrorBody)))]
pub async fn start_worker(State(state): State<AppState>) -> ApiResult<Json<WorkerStatus>> {
    switch(&state, true).await.map(Json)
}

/// Switch the fleet's worker off: no ticks are materialized until it is started again.
#[utoipa::path(post, path = "/worker/stop", tag = "worker",
    responses((status = 200, body = WorkerStatus), (status = 503, body = ErrorBody)))]
pub async fn stop_worker(State(state): State<AppState>) -> ApiResult<Json<WorkerStatus>> {
    switch(&state, false).await.map(Json)
}

/// The switch, the leader and its epoch, live nodes, the last tick pass, due and pending
/// counts and launch lag.
#[utoipa::path(get, path = "/worker/status", tag = "worker",
    responses((status = 200, body = WorkerStatus), (status = 503, body = ErrorBody)))]
pub async fn worker_status(State(state): State<AppState>) -> ApiResult<Json<WorkerStatus>> {
    status(&state).await.map(Json)
}
