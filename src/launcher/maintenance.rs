//! The dispatcher's bookkeeping queries: run timeouts, and when to look again. Each walks
//! a partial index of in-flight runs, never the history.

use std::time::Duration;

use opentelemetry::KeyValue;
use sqlx::PgPool;

use crate::db::{self, Channel};
use crate::telemetry::Metrics;

/// Ends `running` runs past their deadline as `timed_out`, freeing their slots.
pub async fn expire_runs(pool: &PgPool, metrics: &Metrics) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "update runs set status = 'timed_out', exclusive_slot = false, finished_at = now(), \
           updated_at = now(), last_error = 'no completion report before the run timeout' \
         where status = 'running' and deadline_at <= now()",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done > 0 {
        db::notify(&mut *tx, Channel::Runs, "").await?;
    }
    tx.commit().await?;
    metrics
        .runs_completed
        .add(done, &[KeyValue::new("status", "timed_out")]);
    Ok(done)
}

/// See [`until_next`]; `$1`: half the arm window in seconds.
pub const UNTIL_NEXT: &str = "select extract(epoch from least( \
      (select min(coalesce(retry_at, fire_at)) from runs where status = 'pending' \
         and coalesce(retry_at, fire_at) > now() + make_interval(secs => $1)) \
        - make_interval(secs => $1), \
      (select min(coalesce(retry_at, fire_at)) from runs where status = 'pending' \
         and coalesce(retry_at, fire_at) > now()), \
      (select min(lease_until) from runs where status = 'launching' and lease_until > now()) \
    ) - now())::float8";

/// How long until something may be claimable: a pending run half an arm window before it
/// is due (the claim then takes everything due within the whole window: claims fall
/// between the instants cron schedules share, not on them, where the sends are), a pending
/// run's due instant (one the overlap policy left for a decision then), or a lease running
/// out; capped at `cap`.
pub async fn until_next(
    pool: &PgPool,
    arm_window: Duration,
    cap: Duration,
) -> Result<Duration, sqlx::Error> {
    let secs: Option<f64> = sqlx::query_scalar(UNTIL_NEXT)
        .bind(arm_window.as_secs_f64() / 2.0)
        .fetch_one(pool)
        .await?;
    Ok(secs.map_or(cap, |s| {
        Duration::try_from_secs_f64(s.max(0.0))
            .unwrap_or(cap)
            .min(cap)
    }))
}
