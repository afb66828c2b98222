//! The backlog gauges (`scheduler_backlog_runs`, `scheduler_backlog_oldest_seconds`): runs
//! due and not launched yet, and how long the oldest has waited. Launch lag is recorded
//! only when a launch succeeds, so a dead Executor or a stuck launcher shows no lag at all;
//! the backlog shows it. The leader reports it every few seconds (one replica, so a sum
//! or max over replicas is the fleet's figure); a replica that does not lead reports 0.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::leader::NodeState;
use crate::telemetry::Metrics;

/// How often the leader measures the backlog.
pub const EVERY: Duration = Duration::from_secs(5);
/// Counted up to this many (the count walks the due index).
pub const COUNT_CAP: i64 = 100_000;

/// Due-but-unlaunched runs (at most [`COUNT_CAP`]) and the age in seconds of the oldest.
/// Walks `runs_due_idx` (pending runs by `coalesce(retry_at, fire_at)`).
pub async fn measure(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "select count(*), coalesce(extract(epoch from now() - min(due))::float8, 0) \
         from (select coalesce(retry_at, fire_at) as due from runs \
               where status = 'pending' and coalesce(retry_at, fire_at) <= now() \
               order by coalesce(retry_at, fire_at) limit $1) d",
    )
    .bind(COUNT_CAP)
    .fetch_one(pool)
    .await
}

/// Reports the backlog while this replica leads, until `shutdown`.
pub async fn run(
    pool: PgPool,
    node: Arc<NodeState>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let (count, oldest) = if node.is_leader() {
            match measure(&pool).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "measuring the backlog failed");
                    (0, 0.0)
                }
            }
        } else {
            (0, 0.0)
        };
        metrics
            .backlog_runs
            .record(u64::try_from(count).unwrap_or(0), &[]);
        metrics.backlog_oldest.record(oldest.max(0.0), &[]);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
