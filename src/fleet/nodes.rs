//! The node registry: every replica writes a heartbeat row (id, start time, version, role)
//! once a second through the pool, so `/worker/status` on any replica can list the live
//! fleet. A node not seen for [`LIVE_WINDOW_SECS`] is not live. On shutdown a node marks
//! itself `stopped`. Rows of nodes gone for a day are deleted by whichever node heartbeats.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::leader::NodeState;

/// Heartbeat period of the registry.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node seen within this many seconds is live.
pub const LIVE_WINDOW_SECS: i64 = 5;

async fn beat(
    pool: &PgPool,
    state: &NodeState,
    role: &str,
    autostart: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    super::state::ensure(&mut tx, &state.cluster_name, autostart).await?;
    sqlx::query(
        "insert into nodes (cluster_name, node_id, started_at, last_seen_at, version, role) \
         values ($1, $2, $3, now(), $4, $5) \
         on conflict (cluster_name, node_id) do update set started_at = excluded.started_at, \
           last_seen_at = now(), version = excluded.version, role = excluded.role",
    )
    .bind(&state.cluster_name)
    .bind(&state.node_id)
    .bind(state.started_at)
    .bind(crate::VERSION)
    .bind(role)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "delete from nodes where cluster_name = $1 and last_seen_at < now() - interval '1 day'",
    )
    .bind(&state.cluster_name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Heartbeats until `shutdown`, then marks the node stopped.
pub async fn run(
    pool: PgPool,
    state: Arc<NodeState>,
    autostart: bool,
    shutdown: CancellationToken,
) {
    loop {
        let role = if state.is_leader() {
            "leader"
        } else {
            "follower"
        };
        if let Err(e) = beat(&pool, &state, role, autostart).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    let _ = beat(&pool, &state, "stopped", autostart).await;
}
