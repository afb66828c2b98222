//! The claim transaction: which runs this replica sends next.
//!
//! 1. `fleet_state.worker_enabled` is read (a stopped fleet launches nothing), with the
//!    database clock.
//! 2. **Reclaims**: `launching` runs whose lease ran out (the replica holding them died or
//!    froze), `for update skip locked`. Past `SCHEDULER_LAUNCH_RETRY_FOR` since their
//!    `fire_at` they end `failed_launch` (`attempts_exhausted`); the others are claimed
//!    again, with the same `Idempotency-Key`, keeping their exclusive slot.
//! 3. **Due and armed runs**: `pending` runs due (at `retry_at` when waiting to retry, else
//!    at `fire_at`) within the arm window, oldest due first, `for update skip locked`; runs
//!    of a `skip` or `queue` schedule that already has a run in flight are not even selected
//!    (a queued run waits, in tick order; a `skip` run waits for its due instant, when it is
//!    selected and skipped if the slot is still taken).
//! 4. **Overlap** ([`super::overlap`]): which candidates launch, which are skipped, which
//!    stay pending for a decision at their due instant.
//! 5. Claimed runs become `launching`, `attempt + 1`, with a lease from their due time.

use crate::runs::{RunReason, RunStatus, RunTrigger};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::{self, BatchPlan};

use super::{
    LaunchSettings,
    overlap::{Candidate, decide},
};

/// A run claimed for one launch attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub run_id: Uuid,
    pub schedule_id: Option<String>,
    pub workflow_id: String,
    pub version: i32,
    pub user_id: String,
    pub scheduled_for: DateTime<Utc>,
    pub fire_at: DateTime<Utc>,
    pub attempt: i32,
    pub trigger: RunTrigger,
    pub idempotency_key: String,
    /// When to send it (its `fire_at`, or `retry_at` for a retry; now for a reclaim).
    pub due_at: DateTime<Utc>,
    /// Ours until then.
    pub lease_until: DateTime<Utc>,
}

const CLAIMED_COLUMNS: &str = "r.run_id, r.schedule_id, r.workflow_id, r.version, r.user_id, \
    r.scheduled_for, r.fire_at, r.attempt, r.trigger, r.idempotency_key, \
    greatest(coalesce(r.retry_at, r.fire_at), now()) as due_at, r.lease_until";

/// Launching runs whose lease ran out (`$1` at most), and whether each is past its retry
/// time (`$2` seconds after its `fire_at`).
pub const EXPIRED: &str = "select run_id, now() >= fire_at + make_interval(secs => $2) from runs \
    where status = 'launching' and lease_until <= now() \
    order by lease_until limit $1 for update skip locked";

/// Pending runs due within the arm window (`$2` seconds), oldest due first (`$1` at most),
/// that can be decided now: a run of a `skip` or `queue` schedule whose slot is taken is
/// left out (a `queue` run waits; a `skip` run is decided at its due instant), except a
/// `skip` run that is due, which is skipped.
pub const CANDIDATES: &str = "select r.run_id, r.schedule_id, \
      coalesce(s.overlap_policy, 'allow') as policy, r.exclusive_slot as holds_slot, \
      coalesce(r.retry_at, r.fire_at) <= now() as due_now \
    from runs r left join schedules s on s.schedule_id = r.schedule_id \
    where r.status = 'pending' \
      and coalesce(r.retry_at, r.fire_at) <= now() + make_interval(secs => $2) \
      and not (s.overlap_policy in ('skip', 'queue') and not r.exclusive_slot \
        and not (s.overlap_policy = 'skip' and coalesce(r.retry_at, r.fire_at) <= now()) \
        and exists (select 1 from runs f where f.schedule_id = r.schedule_id and f.exclusive_slot)) \
    order by coalesce(r.retry_at, r.fire_at), r.scheduled_for \
    limit $1 \
    for update of r skip locked";

/// What one claim produced.
#[derive(Debug)]
pub struct ClaimResult {
    pub worker_enabled: bool,
    /// The database clock at the start of the claim: leases are read against it (a lease
    /// seen from its start is never longer than it is).
    pub db_now: DateTime<Utc>,
    /// The database clock at the end of the claim: due times are read against it (a due
    /// time seen from the end is never earlier than it is).
    pub db_clock: DateTime<Utc>,
    pub runs: Vec<Claimed>,
    pub skipped: u64,
    pub exhausted: u64,
}

/// One claim transaction (see the module docs). `limit` bounds the runs returned;
/// `reclaim`: also look for launching runs whose lease ran out (leases run out only when a
/// replica dies or freezes, so the dispatcher looks once a second, not at every claim).
pub async fn claim(
    pool: &PgPool,
    settings: &LaunchSettings,
    limit: i64,
    reclaim: bool,
) -> Result<ClaimResult, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The claim walks the due index in order and stops at `limit`: right after a cohort of
    // 100,000 was written the statistics still say a few runs are due, and the planner
    // would otherwise fetch and sort the whole cohort for every batch.
    db::plan_batch(&mut tx, BatchPlan::QueueWalk).await?;
    let (enabled, db_now): (Option<bool>, DateTime<Utc>) = sqlx::query_as(
        "select (select worker_enabled from fleet_state where cluster_name = $1), now()",
    )
    .bind(&settings.cluster_name)
    .fetch_one(&mut *tx)
    .await?;
    let mut result = ClaimResult {
        worker_enabled: enabled.unwrap_or(false),
        db_now,
        db_clock: db_now,
        runs: Vec::new(),
        skipped: 0,
        exhausted: 0,
    };
    if !result.worker_enabled || limit <= 0 {
        tx.commit().await?;
        return Ok(result);
    }
    let lease_ms = settings.lease_ms();
    let retry_for_s = settings.retry_for.as_secs_f64();

    // Reclaims: they already hold their exclusive slot, if any.
    let expired: Vec<(Uuid, bool)> = if reclaim {
        sqlx::query_as(EXPIRED)
            .bind(limit)
            .bind(retry_for_s)
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
    let (exhausted, again): (Vec<_>, Vec<_>) = expired.into_iter().partition(|(_, over)| *over);
    if !exhausted.is_empty() {
        let ids: Vec<Uuid> = exhausted.iter().map(|(id, _)| *id).collect();
        result.exhausted = sqlx::query(
            "update runs set status = $2, reason = $3, \
               exclusive_slot = false, lease_until = null, finished_at = now(), updated_at = now(), \
               last_error = coalesce(last_error, 'launch did not complete') \
             where run_id = any($1)",
        )
        .bind(&ids)
        .bind(RunStatus::FailedLaunch)
        .bind(RunReason::AttemptsExhausted)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    if !again.is_empty() {
        let ids: Vec<Uuid> = again.iter().map(|(id, _)| *id).collect();
        let mut runs: Vec<Claimed> = sqlx::query_as(&format!(
            "update runs r set attempt = r.attempt + 1, launched_by = $2, retry_at = null, \
               lease_until = now() + make_interval(secs => $3::float8 / 1000), updated_at = now() \
             where r.run_id = any($1) returning {CLAIMED_COLUMNS}"
        ))
        .bind(&ids)
        .bind(&settings.node_id)
        .bind(lease_ms)
        .fetch_all(&mut *tx)
        .await?;
        result.runs.append(&mut runs);
    }

    let room = limit - i64::try_from(result.runs.len()).unwrap_or(0);
    if room > 0 {
        let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES)
            .bind(room)
            .bind(settings.arm_window.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;

        let decision = decide(&mut tx, candidates).await?;
        if !decision.skip.is_empty() {
            result.skipped = sqlx::query(
                "update runs set status = $2, reason = $3, finished_at = now(), \
                   updated_at = now() where run_id = any($1)",
            )
            .bind(&decision.skip)
            .bind(RunStatus::Skipped)
            .bind(RunReason::Overlap)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if !decision.launch.is_empty() {
            let (ids, exclusive): (Vec<Uuid>, Vec<bool>) = decision.launch.into_iter().unzip();
            let mut runs: Vec<Claimed> = sqlx::query_as(&format!(
                "update runs r set status = 'launching', attempt = r.attempt + 1, launched_by = $3, \
                   lease_until = greatest(coalesce(r.retry_at, r.fire_at), now()) \
                     + make_interval(secs => $4::float8 / 1000), \
                   exclusive_slot = u.exclusive, updated_at = now() \
                 from unnest($1::uuid[], $2::bool[]) as u(run_id, exclusive) \
                 where r.run_id = u.run_id and r.run_id = any($1) returning {CLAIMED_COLUMNS}"
            ))
            .bind(&ids)
            .bind(&exclusive)
            .bind(&settings.node_id)
            .bind(lease_ms)
            .fetch_all(&mut *tx)
            .await?;
            result.runs.append(&mut runs);
        }
    }
    if !result.runs.is_empty() {
        result.db_clock = sqlx::query_scalar("select clock_timestamp()")
            .fetch_one(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(result)
}
