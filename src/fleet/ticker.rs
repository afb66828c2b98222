//! The ticker: the leader's one job. Each pass claims due schedules, writes their ticks as
//! runs, and advances each schedule's `next_due_at`, in batches, one transaction per batch,
//! all on the lock session (see [`super::leader`] for why that fences a deposed leader).
//!
//! A batch transaction:
//! 1. `update fleet_state ... where leader_epoch = <mine> returning worker_enabled, now()`:
//!    the fence (no row: deposed, write nothing), the switch, and the clock. `now()` is the
//!    database's transaction time, the one clock every decision uses (invariant 3).
//! 2. `select ... from schedules where not paused and next_due_at <= now() + lookahead
//!    order by next_due_at limit <batch> for update skip locked`: schedules an API call is
//!    changing right now are skipped and picked up on the next pass (the change NOTIFYs).
//! 3. Plan each schedule's ticks up to the horizon ([`super::ticks::plan`]).
//! 4. One `insert ... select from unnest(...)` of every run, `on conflict (schedule_id,
//!    scheduled_for)`: an existing row is left alone (invariant 1), except a tick cancelled
//!    by a pause, spec change or delete, which is revived when the new spec has it again.
//! 5. One `update ... from unnest(...)` of every schedule's `next_due_at`.
//!
//! A crash anywhere before commit writes nothing, and the next leader replans the same
//! ticks from the same `next_due_at`; after commit, `next_due_at` has moved past them.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection};

use opentelemetry::KeyValue;
use tracing::Instrument;

use super::ticks::{CatchupLimits, PlannedRun, plan};
use crate::{
    runs::{RunStatus, RunTrigger},
    schedules::{CatchupPolicy, CronSpec, Window},
    telemetry::Metrics,
};

/// What one batch planned, for the metrics (counted when the batch commits).
#[derive(Default)]
struct PlanCounts {
    scheduled: u64,
    catchup: u64,
    missed_none: u64,
    missed_limit: u64,
    missed_uncounted: u64,
}

impl PlanCounts {
    fn add(&mut self, r: &PlannedRun) {
        match (r.status, r.trigger, r.reason) {
            (RunStatus::Pending, RunTrigger::Schedule, _) => self.scheduled += 1,
            (RunStatus::Pending, _, _) => self.catchup += 1,
            (_, _, Some("catchup_none")) => self.missed_none += 1,
            _ => self.missed_limit += 1,
        }
    }

    fn record(&self, metrics: &Metrics) {
        metrics
            .runs_emitted
            .add(self.scheduled, &[KeyValue::new("trigger", "schedule")]);
        metrics
            .runs_emitted
            .add(self.catchup, &[KeyValue::new("trigger", "catchup")]);
        metrics
            .runs_missed
            .add(self.missed_none, &[KeyValue::new("reason", "catchup_none")]);
        metrics.runs_missed.add(
            self.missed_limit,
            &[KeyValue::new("reason", "catchup_limit")],
        );
        metrics.runs_missed.add(
            self.missed_uncounted,
            &[KeyValue::new("reason", "uncounted")],
        );
    }
}

#[derive(Debug, Clone)]
pub struct TickSettings {
    pub lookahead: Duration,
    pub limits: CatchupLimits,
    /// Schedules claimed per transaction.
    pub batch_size: i64,
    /// Statement timeout inside a batch (the lease: a stuck batch must not outlive it).
    pub statement_timeout: Duration,
}

/// What a pass did, and how long the leader may sleep before the next one.
#[derive(Debug, Clone)]
pub struct TickOutcome {
    pub db_now: DateTime<Utc>,
    pub worker_enabled: bool,
    pub schedules: usize,
    pub runs_written: u64,
    /// Until the earliest `next_due_at` comes within the lookahead.
    pub sleep: Duration,
}

/// The leader lost its epoch: another node leads.
#[derive(Debug, thiserror::Error)]
#[error("deposed: epoch {epoch} is no longer the cluster's leader epoch")]
pub struct Deposed {
    pub epoch: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct DueSchedule {
    schedule_id: String,
    cron_expr: String,
    timezone: String,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    jitter_ms: i32,
    catchup_policy: String,
    next_due_at: DateTime<Utc>,
}

/// One full pass: batches until no due schedule is left.
pub async fn tick_once(
    conn: &mut PgConnection,
    settings: &TickSettings,
    cluster_name: &str,
    node_id: &str,
    epoch: i64,
    metrics: &Metrics,
) -> anyhow::Result<TickOutcome> {
    let lookahead = TimeDelta::from_std(settings.lookahead)?;
    let mut total = TickOutcome {
        db_now: Utc::now(),
        worker_enabled: false,
        schedules: 0,
        runs_written: 0,
        sleep: Duration::ZERO,
    };
    loop {
        let mut tx = conn.begin().await?;
        sqlx::query(&format!(
            "set local statement_timeout = {}",
            settings.statement_timeout.as_millis()
        ))
        .execute(&mut *tx)
        .await?;
        let fence: Option<(bool, DateTime<Utc>)> = sqlx::query_as(
            "update fleet_state set last_tick_at = now() \
             where cluster_name = $1 and leader_epoch = $2 \
             returning worker_enabled, now()",
        )
        .bind(cluster_name)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((enabled, now)) = fence else {
            return Err(Deposed { epoch }.into());
        };
        total.db_now = now;
        total.worker_enabled = enabled;
        if !enabled {
            tx.commit().await?;
            break;
        }

        let due: Vec<DueSchedule> = sqlx::query_as(
            "select schedule_id, cron_expr, timezone, start_at, end_at, jitter_ms, \
               catchup_policy, next_due_at \
             from schedules \
             where not paused and next_due_at is not null and next_due_at <= now() + $1 \
             order by next_due_at \
             limit $2 \
             for update skip locked",
        )
        .bind(lookahead)
        .bind(settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = due.len();
        // A span only for batches with work: the leader's idle heartbeats are not traced.
        let span = if claimed > 0 {
            tracing::info_span!(
                "tick_batch",
                epoch,
                schedules = claimed,
                runs = tracing::field::Empty
            )
        } else {
            tracing::Span::none()
        };

        let horizon = now + lookahead;
        let mut runs = RunColumns::default();
        let mut advanced = ScheduleColumns::default();
        let mut broken = Vec::new();
        let mut counts = PlanCounts::default();
        for s in &due {
            let (spec, catchup) = match (
                CronSpec::parse(&s.cron_expr, &s.timezone),
                s.catchup_policy.parse::<CatchupPolicy>(),
            ) {
                (Ok(spec), Ok(catchup)) => (spec, catchup),
                (Err(e), _) => {
                    tracing::error!(schedule_id = %s.schedule_id, error = %e, "stored schedule does not parse; pausing it");
                    broken.push(s.schedule_id.clone());
                    continue;
                }
                (_, Err(e)) => {
                    tracing::error!(schedule_id = %s.schedule_id, error = %e, "stored schedule does not parse; pausing it");
                    broken.push(s.schedule_id.clone());
                    continue;
                }
            };
            let window = Window {
                spec,
                start_at: s.start_at,
                end_at: s.end_at,
            };
            let p = plan(
                &s.schedule_id,
                &window,
                s.jitter_ms,
                catchup,
                s.next_due_at,
                now,
                horizon,
                &settings.limits,
            );
            counts.missed_uncounted += u64::try_from(p.uncounted_missed).unwrap_or(0);
            for r in p.runs {
                counts.add(&r);
                runs.push(&s.schedule_id, &r);
            }
            advanced.push(&s.schedule_id, p.next_due_at, p.uncounted_missed);
        }

        let written = if runs.run_id.is_empty() {
            0
        } else {
            sqlx::query(
                "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
                   reason, workflow_id, version, user_id, idempotency_key, leader_epoch, created_by, \
                   finished_at) \
                 select r.run_id, r.schedule_id, r.scheduled_for, r.fire_at, r.status, r.trigger, \
                   r.reason, s.workflow_id, s.version, s.user_id, r.run_id::text, $8, $9, \
                   case when r.status = 'missed' then now() end \
                 from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
                             $5::text[], $6::text[], $7::text[]) \
                   as r(run_id, schedule_id, scheduled_for, fire_at, status, trigger, reason) \
                 join schedules s on s.schedule_id = r.schedule_id \
                 on conflict (schedule_id, scheduled_for) do update set \
                   status = excluded.status, fire_at = excluded.fire_at, trigger = excluded.trigger, \
                   reason = excluded.reason, workflow_id = excluded.workflow_id, \
                   version = excluded.version, user_id = excluded.user_id, \
                   leader_epoch = excluded.leader_epoch, created_by = excluded.created_by, \
                   finished_at = excluded.finished_at, updated_at = now() \
                 where runs.status = 'cancelled' \
                   and runs.reason in ('paused', 'spec_changed', 'deleted')",
            )
            .bind(&runs.run_id)
            .bind(&runs.schedule_id)
            .bind(&runs.scheduled_for)
            .bind(&runs.fire_at)
            .bind(&runs.status)
            .bind(&runs.trigger)
            .bind(&runs.reason)
            .bind(epoch)
            .bind(node_id)
            .execute(&mut *tx)
            .instrument(span.clone())
            .await?
            .rows_affected()
        };

        if !advanced.schedule_id.is_empty() {
            sqlx::query(
                "update schedules s set next_due_at = u.next_due_at, materialized_to = $4, \
                   missed_uncounted = s.missed_uncounted + u.uncounted \
                 from unnest($1::text[], $2::timestamptz[], $3::int8[]) \
                   as u(schedule_id, next_due_at, uncounted) \
                 where s.schedule_id = u.schedule_id",
            )
            .bind(&advanced.schedule_id)
            .bind(&advanced.next_due_at)
            .bind(&advanced.uncounted)
            .bind(horizon)
            .execute(&mut *tx)
            .await?;
        }
        if written > 0 {
            // Dispatchers on every replica wake for the new runs.
            sqlx::query("select pg_notify($1, '')")
                .bind(crate::launcher::RUNS_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        if !broken.is_empty() {
            sqlx::query("update schedules set paused = true, updated_at = now() where schedule_id = any($1)")
                .bind(&broken)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().instrument(span.clone()).await?;
        span.record("runs", written);
        counts.record(metrics);
        total.schedules += claimed;
        total.runs_written += written;
        if i64::try_from(claimed).unwrap_or(i64::MAX) < settings.batch_size {
            break;
        }
    }

    metrics.schedules_due.record(total.schedules as u64, &[]);
    if total.worker_enabled {
        let until_due: Option<f64> = sqlx::query_scalar(
            "select extract(epoch from (min(next_due_at) - now()))::float8 \
             from schedules where not paused and next_due_at is not null",
        )
        .fetch_one(&mut *conn)
        .await?;
        let wait = until_due.map_or(f64::MAX, |s| s - settings.lookahead.as_secs_f64());
        total.sleep = Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or(Duration::MAX);
    } else {
        total.sleep = Duration::MAX;
    }
    Ok(total)
}

/// Columns of runs to insert, one vector each (bound as arrays for `unnest`).
#[derive(Default)]
struct RunColumns {
    run_id: Vec<uuid::Uuid>,
    schedule_id: Vec<String>,
    scheduled_for: Vec<DateTime<Utc>>,
    fire_at: Vec<DateTime<Utc>>,
    status: Vec<&'static str>,
    trigger: Vec<&'static str>,
    reason: Vec<Option<&'static str>>,
}

impl RunColumns {
    fn push(&mut self, schedule_id: &str, r: &super::ticks::PlannedRun) {
        self.run_id.push(uuid::Uuid::now_v7());
        self.schedule_id.push(schedule_id.to_owned());
        self.scheduled_for.push(r.scheduled_for);
        self.fire_at.push(r.fire_at);
        self.status.push(r.status.as_str());
        self.trigger.push(r.trigger.as_str());
        self.reason.push(r.reason);
    }
}

#[derive(Default)]
struct ScheduleColumns {
    schedule_id: Vec<String>,
    next_due_at: Vec<Option<DateTime<Utc>>>,
    uncounted: Vec<i64>,
}

impl ScheduleColumns {
    fn push(&mut self, schedule_id: &str, next_due_at: Option<DateTime<Utc>>, uncounted: i64) {
        self.schedule_id.push(schedule_id.to_owned());
        self.next_due_at.push(next_due_at);
        self.uncounted.push(uncounted);
    }
}
