//! Writing launch outcomes: one statement per kind of outcome per batch, and at most one
//! NOTIFY per batch (when a failure freed a slot that a queued run may be waiting for).
//!
//! A retryable answer sends the run back to `pending`, due at `retry_at` (see
//! [`LaunchSettings::retry_delay`]), keeping its exclusive slot: it won its launch and is
//! still in flight as far as its schedule's overlap policy is concerned. Retries are
//! bounded by time, not by count: once `SCHEDULER_LAUNCH_RETRY_FOR` has passed since the
//! run's `fire_at`, a retryable answer ends it `failed_launch` (`attempts_exhausted`); the
//! last retry is scheduled no later than that instant. The database clock decides.

use opentelemetry::KeyValue;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{LaunchSettings, executor::Outcome};
use crate::{
    db::{self, BatchPlan, Channel},
    retry::Backoff,
    runs::{RunReason, RunStatus},
    telemetry::Metrics,
};

/// How long the recorder waits after the first outcome of a batch for the rest of it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Outcomes one write takes at most.
const MAX_BATCH: usize = 4096;

/// The result of one attempt, as the recorder writes it.
#[derive(Debug)]
pub struct Recorded {
    pub run_id: Uuid,
    pub attempt: i32,
    pub outcome: Outcome,
}

/// Accepted launches become `running` (`$1` run ids, `$2` their `run_id/attempt` keys, `$3`
/// the run timeout in seconds): selected by key, never by joining the batch to `runs` (see
/// [`db::BatchPlan`]).
pub const RECORD_ACCEPTED: &str = "update runs r set status = 'running', launched_at = now(), \
      lease_until = null, retry_at = null, last_error = null, \
      deadline_at = now() + make_interval(secs => $3), updated_at = now() \
    where r.run_id = any($1::uuid[]) and coalesce(r.status, '') = 'launching' \
      and (r.run_id::text || '/' || r.attempt::text) = any($2::text[])";

/// Writes outcomes in batches until every sender is gone.
pub async fn run(
    pool: PgPool,
    settings: LaunchSettings,
    metrics: std::sync::Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<Recorded>,
) {
    while let Some(first) = rx.recv().await {
        // Outcomes come in waves (a cohort sent at its instant): let the wave finish
        // sending before its outcomes are written, so the writes do not compete with the
        // sends, and are written together. A lease covers a run for seconds; a write
        // 50 ms late changes nothing.
        tokio::time::sleep(LINGER).await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // A failed write is retried: the outcome must not be lost (if this process dies
        // instead, the lease runs out and the run is sent again, with the same key).
        let mut backoff = Backoff::new(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(5),
        );
        while let Err(e) = record(&pool, &settings, &metrics, &batch).await {
            let delay = backoff.next_delay();
            tracing::warn!(error = %e, ?delay, "recording launch outcomes failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Writes one batch of outcomes in one transaction.
pub async fn record(
    pool: &PgPool,
    settings: &LaunchSettings,
    metrics: &Metrics,
    batch: &[Recorded],
) -> Result<(), sqlx::Error> {
    let mut accepted: (Vec<Uuid>, Vec<i32>) = Default::default();
    let mut retry: (Vec<Uuid>, Vec<i32>, Vec<String>, Vec<f64>) = Default::default();
    let mut failed: (Vec<Uuid>, Vec<i32>, Vec<String>, Vec<RunReason>) = Default::default();
    for r in batch {
        match &r.outcome {
            Outcome::Accepted { .. } => {
                accepted.0.push(r.run_id);
                accepted.1.push(r.attempt);
            }
            Outcome::Retry { error, retry_after } => {
                retry.0.push(r.run_id);
                retry.1.push(r.attempt);
                retry.2.push(error.clone());
                retry
                    .3
                    .push(settings.retry_delay(r.attempt, *retry_after).as_secs_f64());
            }
            Outcome::Reject { error, reason } => {
                failed.0.push(r.run_id);
                failed.1.push(r.attempt);
                failed.2.push(error.clone());
                failed.3.push(*reason);
            }
        }
    }
    let mut tx = pool.begin().await?;
    db::plan_batch(&mut tx, BatchPlan::KeyLookups).await?;
    if !accepted.0.is_empty() {
        sqlx::query(RECORD_ACCEPTED)
            .bind(&accepted.0)
            .bind(db::run_keys(
                accepted.0.iter().zip(accepted.1.iter().copied()),
            ))
            .bind(settings.run_timeout.as_secs_f64())
            .execute(&mut *tx)
            .await?;
    }
    let mut exhausted = 0u64;
    if !retry.0.is_empty() {
        let statuses: Vec<RunStatus> = sqlx::query_scalar(
            "with u as ( \
               select * from unnest($1::uuid[], $2::int4[], $3::text[], $4::float8[]) \
                 as u(run_id, attempt, error, delay)), \
             d as ( \
               select r.run_id, u.error, u.delay, \
                 now() >= r.fire_at + make_interval(secs => $5) as over, \
                 r.fire_at + make_interval(secs => $5) as last_at \
               from runs r join u on r.run_id = u.run_id and r.attempt = u.attempt \
               where r.run_id = any($1) and coalesce(r.status, '') = 'launching') \
             update runs r set \
               status = case when d.over then 'failed_launch' else 'pending' end, \
               reason = case when d.over then 'attempts_exhausted' end, \
               retry_at = case when d.over then null \
                 else least(now() + make_interval(secs => d.delay), d.last_at) end, \
               exclusive_slot = r.exclusive_slot and not d.over, \
               finished_at = case when d.over then now() end, \
               lease_until = null, last_error = d.error, updated_at = now() \
             from d where r.run_id = d.run_id and r.run_id = any($1) \
             returning r.status",
        )
        .bind(&retry.0)
        .bind(&retry.1)
        .bind(&retry.2)
        .bind(&retry.3)
        .bind(settings.retry_for.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        exhausted = statuses
            .iter()
            .filter(|s| **s == RunStatus::FailedLaunch)
            .count() as u64;
    }
    if !failed.0.is_empty() {
        sqlx::query(
            "update runs r set status = 'failed_launch', reason = u.reason, last_error = u.error, \
               exclusive_slot = false, lease_until = null, retry_at = null, finished_at = now(), \
               updated_at = now() \
             from unnest($1::uuid[], $2::int4[], $3::text[], $4::text[]) as u(run_id, attempt, error, reason) \
             where r.run_id = u.run_id and r.run_id = any($1) and r.attempt = u.attempt \
               and coalesce(r.status, '') = 'launching'",
        )
        .bind(&failed.0)
        .bind(&failed.1)
        .bind(&failed.2)
        .bind(&failed.3)
        .execute(&mut *tx)
        .await?;
    }
    if !failed.0.is_empty() || exhausted > 0 {
        // A slot may be free: a queued run may launch now. (An accepted launch holds its
        // slot; a retry is due later, when the dispatchers look anyway.)
        db::notify(&mut *tx, Channel::Runs, "").await?;
    }
    tx.commit().await?;
    for reason in &failed.3 {
        metrics
            .runs_failed_launch
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }
    metrics
        .runs_failed_launch
        .add(exhausted, &[KeyValue::new("reason", "attempts_exhausted")]);
    Ok(())
}
