//! The RunLauncher: every replica claims due runs and forwards them to the Executor.
//!
//! # One pass
//!
//! A claim transaction (on the pool, any replica):
//! 1. `fleet_state.worker_enabled` is read: a stopped fleet launches nothing.
//! 2. **Retries and reclaims**: `launching` runs whose lease ran out, `for update skip
//!    locked`. A lease runs out when a launch attempt failed with a retryable answer (the
//!    lease was set to the backoff delay) or when the node sending it died (the lease was
//!    the request timeout plus a margin). Either way the run is sent again, with the same
//!    `Idempotency-Key`; past `SCHEDULER_LAUNCH_MAX_ATTEMPTS` it ends `failed_launch`.
//! 3. **Due runs**: `pending` runs with `fire_at <= now()`, oldest first, `for update skip
//!    locked`; runs of a `queue` schedule that already has a run in flight are not even
//!    selected (they wait, in tick order).
//! 4. **Overlap**: for `skip` and `queue` schedules, the replica takes a transaction-level
//!    advisory lock per schedule (`pg_try_advisory_xact_lock`; a schedule another replica
//!    is claiming right now is left for the next pass), checks for a run holding the
//!    schedule's exclusive slot, and then: launches the earliest candidate (taking the
//!    slot), and for the others `skip` ends them `skipped` (reason `overlap`) while `queue`
//!    leaves them pending. Under all of this sits a partial unique index: at most one run
//!    per schedule holds `exclusive_slot`, so two exclusive runs of one schedule can never
//!    be in flight, whatever this code does.
//! 5. Claimed runs become `launching` with a lease, `attempt + 1`.
//!
//! After commit, each run is POSTed ([`executor`]) with bounded concurrency; outcomes are
//! written in batches by a recorder task. An outcome only applies to the attempt that
//! produced it (`where status = 'launching' and attempt = <attempt>`), so a slow answer to
//! an attempt that was since reclaimed cannot overwrite the newer one.
//!
//! # Timeouts
//!
//! A `running` run with no completion report by its deadline (`SCHEDULER_RUN_TIMEOUT_MS`
//! after launch) ends `timed_out` and frees its slot, so a lost callback never blocks a
//! `skip` or `queue` schedule forever.

pub mod dags;
pub mod executor;

use std::{collections::HashMap, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, postgres::PgListener};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use opentelemetry::KeyValue;
use tracing::Instrument;

use crate::{config::Config, telemetry::Metrics};
use dags::DagCache;
use executor::{ExecutorClient, LaunchRequest, Outcome};

/// Channel every producer of launchable runs notifies (ticker, completions, manual launches).
pub const RUNS_CHANNEL: &str = "scheduler_runs";

/// Advisory lock class for per-schedule claim locks (the second key is `hashtext(id)`).
const CLAIM_LOCK_CLASS: i32 = 0x0c5c_0001;

#[derive(Debug, Clone)]
pub struct LaunchSettings {
    pub cluster_name: String,
    pub node_id: String,
    /// Runs claimed per transaction at most.
    pub batch: i64,
    /// Launches in flight per replica at most.
    pub concurrency: usize,
    /// How long a claimed run is ours before another replica may reclaim it.
    pub lease: Duration,
    pub max_attempts: i32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub run_timeout: Duration,
    /// Longest sleep between passes when nothing is due (notifications wake it earlier).
    pub idle_poll: Duration,
}

impl LaunchSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            cluster_name: config.cluster_name.clone(),
            node_id: config.node_id.clone(),
            batch: 512,
            concurrency: config.launch_concurrency,
            lease: config.executor_timeout + Duration::from_secs(5),
            max_attempts: config.launch_max_attempts,
            backoff_min: config.launch_backoff,
            backoff_max: Duration::from_secs(60),
            run_timeout: config.run_timeout,
            idle_poll: Duration::from_millis(500),
        }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` failed: exponential with
    /// jitter, at least the Executor's `Retry-After`.
    fn retry_delay(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let nth = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        let backoff = ExponentialBuilder::new()
            .with_min_delay(self.backoff_min)
            .with_max_delay(self.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(nth)
            .unwrap_or(self.backoff_max);
        backoff.max(retry_after.unwrap_or_default())
    }
}

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
    pub trigger: String,
    pub idempotency_key: String,
}

const CLAIMED_COLUMNS: &str = "r.run_id, r.schedule_id, r.workflow_id, r.version, r.user_id, \
    r.scheduled_for, r.fire_at, r.attempt, r.trigger, r.idempotency_key";

#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    run_id: Uuid,
    schedule_id: Option<String>,
    policy: String,
}

/// What one claim pass produced.
#[derive(Debug, Default)]
pub struct ClaimResult {
    pub worker_enabled: bool,
    pub runs: Vec<Claimed>,
    pub skipped: u64,
    pub exhausted: u64,
}

/// One claim transaction (see the module docs). `limit` bounds the runs returned.
pub async fn claim(
    pool: &PgPool,
    settings: &LaunchSettings,
    limit: i64,
) -> Result<ClaimResult, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let enabled: Option<bool> =
        sqlx::query_scalar("select worker_enabled from fleet_state where cluster_name = $1")
            .bind(&settings.cluster_name)
            .fetch_optional(&mut *tx)
            .await?;
    let mut result = ClaimResult {
        worker_enabled: enabled.unwrap_or(false),
        ..ClaimResult::default()
    };
    if !result.worker_enabled || limit <= 0 {
        tx.commit().await?;
        return Ok(result);
    }
    let lease_ms = i64::try_from(settings.lease.as_millis()).unwrap_or(i64::MAX);

    // Retries and reclaims: they already hold their exclusive slot, if any.
    let expired: Vec<(Uuid, i32)> = sqlx::query_as(
        "select run_id, attempt from runs where status = 'launching' and lease_until <= now() \
         order by lease_until limit $1 for update skip locked",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let (exhausted, retry): (Vec<_>, Vec<_>) = expired
        .into_iter()
        .partition(|(_, a)| *a >= settings.max_attempts);
    if !exhausted.is_empty() {
        let ids: Vec<Uuid> = exhausted.iter().map(|(id, _)| *id).collect();
        result.exhausted = sqlx::query(
            "update runs set status = 'failed_launch', reason = 'attempts_exhausted', \
               exclusive_slot = false, lease_until = null, finished_at = now(), updated_at = now(), \
               last_error = coalesce(last_error, 'launch did not complete') \
             where run_id = any($1)",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    if !retry.is_empty() {
        let ids: Vec<Uuid> = retry.iter().map(|(id, _)| *id).collect();
        let mut runs: Vec<Claimed> = sqlx::query_as(&format!(
            "update runs r set attempt = r.attempt + 1, launched_by = $2, \
               lease_until = now() + make_interval(secs => $3::float8 / 1000), updated_at = now() \
             where r.run_id = any($1) returning {CLAIMED_COLUMNS}"
        ))
        .bind(&ids)
        .bind(&settings.node_id)
        .bind(lease_ms as f64)
        .fetch_all(&mut *tx)
        .await?;
        result.runs.append(&mut runs);
    }

    let room = limit - i64::try_from(result.runs.len()).unwrap_or(0);
    if room > 0 {
        let candidates: Vec<Candidate> = sqlx::query_as(
            "select r.run_id, r.schedule_id, coalesce(s.overlap_policy, 'allow') as policy \
             from runs r left join schedules s on s.schedule_id = r.schedule_id \
             where r.status = 'pending' and r.fire_at <= now() \
               and not (s.overlap_policy = 'queue' and exists ( \
                 select 1 from runs f where f.schedule_id = r.schedule_id and f.exclusive_slot)) \
             order by r.fire_at, r.scheduled_for \
             limit $1 \
             for update of r skip locked",
        )
        .bind(room)
        .fetch_all(&mut *tx)
        .await?;

        let (launch, skip) = apply_overlap(&mut tx, candidates).await?;
        if !skip.is_empty() {
            result.skipped = sqlx::query(
                "update runs set status = 'skipped', reason = 'overlap', finished_at = now(), \
                   updated_at = now() where run_id = any($1)",
            )
            .bind(&skip)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if !launch.is_empty() {
            let (ids, exclusive): (Vec<Uuid>, Vec<bool>) = launch.into_iter().unzip();
            let mut runs: Vec<Claimed> = sqlx::query_as(&format!(
                "update runs r set status = 'launching', attempt = r.attempt + 1, launched_by = $3, \
                   lease_until = now() + make_interval(secs => $4::float8 / 1000), \
                   exclusive_slot = u.exclusive, updated_at = now() \
                 from unnest($1::uuid[], $2::bool[]) as u(run_id, exclusive) \
                 where r.run_id = u.run_id returning {CLAIMED_COLUMNS}"
            ))
            .bind(&ids)
            .bind(&exclusive)
            .bind(&settings.node_id)
            .bind(lease_ms as f64)
            .fetch_all(&mut *tx)
            .await?;
            result.runs.append(&mut runs);
        }
    }
    tx.commit().await?;
    Ok(result)
}

/// Splits candidates into runs to launch (with whether they take the exclusive slot) and
/// runs to skip. Runs of exclusive schedules another replica is claiming right now, or
/// queued behind a run in flight, are in neither list: they stay pending.
async fn apply_overlap(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    candidates: Vec<Candidate>,
) -> Result<(Vec<(Uuid, bool)>, Vec<Uuid>), sqlx::Error> {
    let mut launch = Vec::new();
    let mut skip = Vec::new();
    // Exclusive candidates by schedule, in claim (fire) order.
    let mut exclusive: HashMap<String, (bool, Vec<Uuid>)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for c in candidates {
        match (c.schedule_id, c.policy.as_str()) {
            (Some(id), "skip" | "queue") => {
                let entry = exclusive.entry(id.clone()).or_insert_with(|| {
                    order.push(id);
                    (c.policy == "skip", Vec::new())
                });
                entry.1.push(c.run_id);
            }
            _ => launch.push((c.run_id, false)),
        }
    }
    if order.is_empty() {
        return Ok((launch, skip));
    }
    let locked: Vec<String> = sqlx::query_scalar(
        "select id from unnest($1::text[]) as id where pg_try_advisory_xact_lock($2, hashtext(id))",
    )
    .bind(&order)
    .bind(CLAIM_LOCK_CLASS)
    .fetch_all(&mut **tx)
    .await?;
    let busy: Vec<String> = sqlx::query_scalar(
        "select schedule_id from runs where schedule_id = any($1) and exclusive_slot",
    )
    .bind(&locked)
    .fetch_all(&mut **tx)
    .await?;
    for id in locked {
        let Some((is_skip, runs)) = exclusive.remove(&id) else {
            continue;
        };
        let mut runs = runs.into_iter();
        if !busy.contains(&id) {
            if let Some(first) = runs.next() {
                launch.push((first, true));
            }
        }
        if is_skip {
            skip.extend(runs);
        }
    }
    Ok((launch, skip))
}

/// The result of one attempt, as the recorder writes it.
#[derive(Debug)]
struct Recorded {
    run_id: Uuid,
    attempt: i32,
    outcome: Outcome,
}

/// Writes outcomes in batches: one statement per kind of outcome per batch.
async fn record(
    pool: &PgPool,
    settings: &LaunchSettings,
    metrics: &Metrics,
    batch: &[Recorded],
) -> Result<(), sqlx::Error> {
    let mut accepted: (Vec<Uuid>, Vec<i32>) = Default::default();
    let mut retry: (Vec<Uuid>, Vec<i32>, Vec<String>, Vec<f64>) = Default::default();
    let mut failed: (Vec<Uuid>, Vec<i32>, Vec<String>, Vec<String>) = Default::default();
    for r in batch {
        match r.outcome.clone() {
            Outcome::Accepted { .. } => {
                accepted.0.push(r.run_id);
                accepted.1.push(r.attempt);
            }
            Outcome::Retry { error, retry_after } if r.attempt < settings.max_attempts => {
                let delay = settings.retry_delay(r.attempt, retry_after);
                retry.0.push(r.run_id);
                retry.1.push(r.attempt);
                retry.2.push(error);
                retry.3.push(delay.as_secs_f64());
            }
            Outcome::Retry { error, .. } => {
                failed.0.push(r.run_id);
                failed.1.push(r.attempt);
                failed.2.push(error);
                failed.3.push("attempts_exhausted".into());
            }
            Outcome::Reject { error, reason } => {
                failed.0.push(r.run_id);
                failed.1.push(r.attempt);
                failed.2.push(error);
                failed.3.push(reason.into());
            }
        }
    }
    let run_timeout = settings.run_timeout.as_secs_f64();
    let mut tx = pool.begin().await?;
    if !accepted.0.is_empty() {
        sqlx::query(
            "update runs r set status = 'running', launched_at = now(), lease_until = null, \
               last_error = null, deadline_at = now() + make_interval(secs => $3), updated_at = now() \
             from unnest($1::uuid[], $2::int4[]) as u(run_id, attempt) \
             where r.run_id = u.run_id and r.attempt = u.attempt and r.status = 'launching'",
        )
        .bind(&accepted.0)
        .bind(&accepted.1)
        .bind(run_timeout)
        .execute(&mut *tx)
        .await?;
    }
    if !retry.0.is_empty() {
        sqlx::query(
            "update runs r set lease_until = now() + make_interval(secs => u.delay), \
               last_error = u.error, updated_at = now() \
             from unnest($1::uuid[], $2::int4[], $3::text[], $4::float8[]) as u(run_id, attempt, error, delay) \
             where r.run_id = u.run_id and r.attempt = u.attempt and r.status = 'launching'",
        )
        .bind(&retry.0)
        .bind(&retry.1)
        .bind(&retry.2)
        .bind(&retry.3)
        .execute(&mut *tx)
        .await?;
    }
    if !failed.0.is_empty() {
        sqlx::query(
            "update runs r set status = 'failed_launch', reason = u.reason, last_error = u.error, \
               exclusive_slot = false, lease_until = null, finished_at = now(), updated_at = now() \
             from unnest($1::uuid[], $2::int4[], $3::text[], $4::text[]) as u(run_id, attempt, error, reason) \
             where r.run_id = u.run_id and r.attempt = u.attempt and r.status = 'launching'",
        )
        .bind(&failed.0)
        .bind(&failed.1)
        .bind(&failed.2)
        .bind(&failed.3)
        .execute(&mut *tx)
        .await?;
    }
    if !failed.0.is_empty() || !accepted.0.is_empty() {
        // A slot may be free (failed) and a new run may be launchable: wake the fleet.
        sqlx::query("select pg_notify($1, '')")
            .bind(RUNS_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for reason in &failed.3 {
        metrics
            .runs_failed_launch
            .add(1, &[KeyValue::new("reason", reason.clone())]);
    }
    Ok(())
}

/// Ends `running` runs past their deadline as `timed_out`, freeing their slots.
pub async fn expire_runs(pool: &PgPool, metrics: &Metrics) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "update runs set status = 'timed_out', exclusive_slot = false, finished_at = now(), \
           updated_at = now(), last_error = 'no completion report before the run timeout' \
         where status = 'running' and deadline_at <= now()",
    )
    .execute(pool)
    .await?;
    if done.rows_affected() > 0 {
        metrics.runs_completed.add(
            done.rows_affected(),
            &[KeyValue::new("status", "timed_out")],
        );
        let _ = sqlx::query("select pg_notify($1, '')")
            .bind(RUNS_CHANNEL)
            .execute(pool)
            .await;
    }
    Ok(done.rows_affected())
}

/// Whether any run is due to be claimed (pending and due, or launching with its lease over).
async fn anything_due(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from runs where status = 'pending' and fire_at <= now()) \
             or exists (select 1 from runs where status = 'launching' and lease_until <= now())",
    )
    .fetch_one(pool)
    .await
}

/// How long until something may be due: the earliest future `fire_at` of a pending run or
/// lease end of a launching run, capped at `cap`.
async fn until_next(pool: &PgPool, cap: Duration) -> Result<Duration, sqlx::Error> {
    let secs: Option<f64> = sqlx::query_scalar(
        "select extract(epoch from least( \
           (select min(fire_at) from runs where status = 'pending' and fire_at > now()), \
           (select min(lease_until) from runs where status = 'launching' and lease_until > now()) \
         ) - now())::float8",
    )
    .fetch_one(pool)
    .await?;
    Ok(secs.map_or(cap, |s| {
        Duration::try_from_secs_f64(s.max(0.0))
            .unwrap_or(cap)
            .min(cap)
    }))
}

/// The dispatcher loop of one replica. Stops claiming at `shutdown`, then waits for the
/// launches in flight and writes their outcomes.
pub async fn run(
    pool: PgPool,
    client: Arc<ExecutorClient>,
    settings: LaunchSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let dags = Arc::new(DagCache::default());
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    // Runs claimed and not yet launched-and-answered, at most `concurrency + batch`.
    let outstanding = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(Notify::new());
    let max_outstanding = settings.concurrency + usize::try_from(settings.batch).unwrap_or(0);
    let (tx, mut rx) = mpsc::unbounded_channel::<Recorded>();

    let recorder = {
        let pool = pool.clone();
        let settings = settings.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                // A failed write is retried: the outcome must not be lost (if this
                // process dies instead, the lease expires and the run is relaunched).
                let mut delay = Duration::from_millis(100);
                while let Err(e) = record(&pool, &settings, &metrics, &batch).await {
                    tracing::warn!(error = %e, "recording launch outcomes failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        })
    };

    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut l) => l.listen(RUNS_CHANNEL).await.ok().map(|()| l),
        Err(_) => None,
    };
    let mut last_expiry = std::time::Instant::now() - Duration::from_secs(10);
    let mut backoff = Duration::from_millis(100);
    let mut busy = false;
    while !shutdown.is_cancelled() {
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = expire_runs(&pool, &metrics).await {
                tracing::warn!(error = %e, "expiring timed-out runs failed");
            }
            last_expiry = std::time::Instant::now();
        }
        // Claim a whole batch even while launches are in flight: claimed runs wait for a
        // permit here, so a burst is claimed in a few large transactions, not in many
        // small ones sized by whatever permits happen to be free.
        let in_hand = outstanding.load(Ordering::Acquire);
        let room = i64::try_from(max_outstanding.saturating_sub(in_hand))
            .unwrap_or(0)
            .min(settings.batch);
        if in_hand > 0 && room < settings.batch / 2 {
            // Enough in hand: let it drain to half a batch of room before claiming again.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = finished.notified() => {}
            }
            continue;
        }
        // Idle passes are not traced: a span only when something is due (checked only
        // after an idle pass; a busy dispatcher knows there is work).
        let claim_span = if busy {
            tracing::info_span!("claim_batch", node_id = %settings.node_id, runs = tracing::field::Empty)
        } else {
            match anything_due(&pool).await {
                Ok(true) => {
                    tracing::info_span!("claim_batch", node_id = %settings.node_id, runs = tracing::field::Empty)
                }
                Ok(false) | Err(_) => tracing::Span::none(),
            }
        };
        let claimed = match claim(&pool, &settings, room)
            .instrument(claim_span.clone())
            .await
        {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                metrics.runs_skipped_overlap.add(c.skipped, &[]);
                metrics.runs_failed_launch.add(
                    c.exhausted,
                    &[KeyValue::new("reason", "attempts_exhausted")],
                );
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "claiming runs failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        claim_span.record("runs", claimed.runs.len());
        busy = !claimed.runs.is_empty();
        let full = i64::try_from(claimed.runs.len()).unwrap_or(0) >= room && room > 0;
        if !claimed.runs.is_empty() {
            let runs = claimed.runs;
            let missing = dags
                .load_missing(
                    &pool,
                    runs.iter().map(|r| (r.workflow_id.as_str(), r.version)),
                )
                .await;
            if let Err(e) = missing {
                // Not "workflow not found": the runs stay claimed and are retried when
                // their lease runs out.
                tracing::warn!(error = %e, "loading DAGs failed; the runs will be retried after their lease");
                continue;
            }
            outstanding.fetch_add(runs.len(), Ordering::AcqRel);
            for run in runs {
                let permits = permits.clone();
                let client = client.clone();
                let dags = dags.clone();
                let tx = tx.clone();
                let metrics = metrics.clone();
                let outstanding = outstanding.clone();
                let finished = finished.clone();
                tokio::spawn(async move {
                    let permit = permits
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed");
                    let outcome = launch_one(&client, &dags, &metrics, &run).await;
                    drop(permit);
                    let _ = tx.send(Recorded {
                        run_id: run.run_id,
                        attempt: run.attempt,
                        outcome,
                    });
                    outstanding.fetch_sub(1, Ordering::AcqRel);
                    finished.notify_one();
                });
            }
        }
        if full {
            continue;
        }
        if room == 0 {
            // As many runs in hand as allowed: wait for one to finish.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = finished.notified() => {}
            }
            continue;
        }
        let cap = if claimed.worker_enabled {
            settings.idle_poll
        } else {
            Duration::from_secs(1)
        };
        let sleep = until_next(&pool, cap).await.unwrap_or(cap);
        if sleep.is_zero() {
            continue;
        }
        match listener.as_mut() {
            Some(l) => tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(sleep) => {}
                n = l.recv() => if n.is_err() { listener = None; },
            },
            None => tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(sleep) => {}
            },
        }
    }
    // Drain: wait for the runs in hand (each launch bounded by the Executor timeout).
    while outstanding.load(Ordering::Acquire) > 0 {
        let _ = tokio::time::timeout(Duration::from_millis(100), finished.notified()).await;
    }
    drop(tx);
    let _ = recorder.await;
}

/// The span context of a launch: its parent is a remote context whose trace id is the run
/// id, so every attempt of a run lands in one trace.
fn launch_span(run: &Claimed) -> tracing::Span {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "launch",
        run_id = %run.run_id,
        schedule_id = run.schedule_id.as_deref().unwrap_or(""),
        attempt = run.attempt,
        executor_status = tracing::field::Empty,
        otel.kind = "client",
    );
    let parent = SpanContext::new(
        TraceId::from_bytes(*run.run_id.as_bytes()),
        SpanId::from_bytes(Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes")),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    span
}

/// The `traceparent` the Executor receives: the launch span's, or one made from the run id
/// when spans are not exported.
fn span_traceparent(span: &tracing::Span, run_id: Uuid) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    } else {
        executor::traceparent(run_id)
    }
}

async fn launch_one(
    client: &ExecutorClient,
    dags: &DagCache,
    metrics: &Metrics,
    run: &Claimed,
) -> Outcome {
    let span = launch_span(run);
    async {
        let Some(dag) = dags.get(&run.workflow_id, run.version) else {
            tracing::warn!("launch failed: no DAG stored for this workflow version");
            return Outcome::Reject {
                error: format!(
                    "workflow {:?} version {} not found",
                    run.workflow_id, run.version
                ),
                reason: "workflow_not_found",
            };
        };
        let request = LaunchRequest {
            run_id: run.run_id,
            schedule_id: run.schedule_id.as_deref(),
            workflow_id: &run.workflow_id,
            version: run.version,
            user_id: &run.user_id,
            scheduled_for: run.scheduled_for,
            fire_at: run.fire_at,
            attempt: run.attempt,
            trigger: &run.trigger,
            dag: &dag,
        };
        let traceparent = span_traceparent(&tracing::Span::current(), run.run_id);
        let started = std::time::Instant::now();
        let (outcome, class) = client
            .launch(&request, &run.idempotency_key, &traceparent)
            .await;
        metrics
            .launch_duration
            .record(started.elapsed().as_secs_f64(), &[]);
        metrics
            .executor_responses
            .add(1, &[KeyValue::new("class", class)]);
        tracing::Span::current().record("executor_status", class);
        match &outcome {
            Outcome::Accepted { .. } => {
                metrics.runs_launched.add(1, &[]);
                let lag = (Utc::now() - run.scheduled_for)
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                metrics.fire_lag.record(lag as f64 / 1e6, &[]);
                tracing::debug!(status = class, "launched");
            }
            Outcome::Retry { error, .. } => tracing::warn!(%error, "launch failed; will retry"),
            Outcome::Reject { error, .. } => tracing::warn!(%error, "launch rejected"),
        }
        outcome
    }
    .instrument(span)
    .await
}
