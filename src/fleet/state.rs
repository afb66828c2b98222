//! The cluster's row in `fleet_state`: the worker switch and the leader epoch's home. The
//! one place that writes it into being.

use sqlx::{PgConnection, PgPool};

use crate::db::{self, Channel};

/// Makes sure the cluster has its `fleet_state` row; a new one starts with the worker
/// switch at `worker_enabled` (`SCHEDULER_WORKER_AUTOSTART`), an existing one is left
/// alone.
pub async fn ensure(
    conn: &mut PgConnection,
    cluster_name: &str,
    worker_enabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into fleet_state (cluster_name, worker_enabled) values ($1, $2) \
         on conflict (cluster_name) do nothing",
    )
    .bind(cluster_name)
    .bind(worker_enabled)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the fleet-wide worker switch (`/worker/start`, `/worker/stop`) and wakes the
/// leader, so the switch takes effect at once.
pub async fn set_worker_enabled(
    pool: &PgPool,
    cluster_name: &str,
    enabled: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into fleet_state (cluster_name, worker_enabled) values ($1, $2) \
         on conflict (cluster_name) do update set worker_enabled = $2, updated_at = now()",
    )
    .bind(cluster_name)
    .bind(enabled)
    .execute(&mut *tx)
    .await?;
    db::notify(&mut *tx, Channel::Schedules, "").await?;
    tx.commit().await
}
