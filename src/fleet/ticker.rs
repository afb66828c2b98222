//! The ticker: the leader's one job. It claims due schedules, writes their ticks as runs,
//! and advances each schedule, in batches, one transaction per batch, all on the lock
//! session (see [`super::leader`] for why that fences a deposed leader).
//!
//! # A batch
//!
//! 1. `update fleet_state ... where leader_epoch = <mine> returning worker_enabled, now()`:
//!    the fence (no row: deposed, write nothing), the switch, and the clock. `now()` is the
//!    database's transaction time, the one clock every decision uses (invariant 3). This
//!    is also the leader's renewal: it happens at the start of every batch, so a pass of
//!    any length keeps the leadership as long as each batch is short.
//! 2. Claim, `for update skip locked` (a schedule an API call is changing right now is
//!    left for the next batch; the change NOTIFYs):
//!    - **due** schedules first, `next_due_at <= now() + lookahead`, oldest first: a
//!      leader that is behind works through the oldest ticks before anything else;
//!    - then, if the batch has room, schedules whose **early** materialization time has
//!      come (`claim_at <= now()`): sparse schedules whose next tick is written up to the
//!      cohort lookahead before it is due (see [`super::ticks`]), so a cohort of a million
//!      schedules due at one instant is written in the minutes before it, not at it.
//! 3. Plan each schedule's ticks ([`super::ticks::plan`]) on a blocking thread, never on
//!    the async runtime's workers. Planning is bounded per schedule (a year behind costs
//!    what a minute behind does) and per batch (at most `max_rows` runs and half the
//!    batch's target time; schedules past that are left unchanged and come first in the
//!    next batch). A `queue` schedule with
//!    `SCHEDULER_MAX_QUEUED` runs already pending gets its further ticks written `skipped`
//!    (reason `queue_full`): a schedule stuck behind a run that never ends cannot pile up
//!    an unbounded queue. The calendars the claimed schedules name are loaded first, in
//!    one query for the batch (none when no schedule names one): planning applies them
//!    (see [`super::ticks`]).
//! 4. One `insert ... select from unnest(...)` of every run, `on conflict (schedule_id,
//!    scheduled_for)`: an existing row is left alone (invariant 1), except a tick cancelled
//!    by a pause, spec change or delete, which is revived when the new spec has it again.
//! 5. One `update ... from unnest(...)` of every planned schedule's `next_due_at`,
//!    `claim_at` and missed-tick count; commit.
//!
//! A batch is bounded by what it costs, not by what a user controls: the schedules claimed
//! per batch adapt so that a batch takes about `batch_target` (between 50 and 5,000
//! schedules), and the runs written per batch are capped. A crash anywhere before commit
//! writes nothing, and the next leader replans the same ticks from the same
//! `next_due_at`; after commit, `next_due_at` has moved past them.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use opentelemetry::KeyValue;
use sqlx::{Connection, PgConnection};
use tracing::Instrument;

use super::ticks::{CatchupLimits, Lead, PlannedRun, plan};
use crate::{
    db::{self, BatchPlan, Channel},
    runs::{RunReason, RunStatus, RunTrigger},
    schedules::{
        CatchupPolicy, CronSpec, OverlapPolicy, Window, calendar_store,
        exclusions::{CalendarRules, Exclusions, OnExcluded},
        spec::{DstFold, DstGap, DstPolicy},
    },
    telemetry::Metrics,
};

/// Schedules a batch claims at first, and the bounds it adapts within.
const CLAIM_START: i64 = 200;
const CLAIM_MIN: i64 = 50;
const CLAIM_MAX: i64 = 5_000;

#[derive(Debug, Clone)]
pub struct TickSettings {
    /// How far ahead frequent schedules' ticks are written, and how far ahead a tick is
    /// "due" for the claim's first tier.
    pub lookahead: Duration,
    /// How far ahead sparse schedules' ticks may be written at most.
    pub cohort_lookahead: Duration,
    pub limits: CatchupLimits,
    /// Runs one batch writes at most.
    pub max_rows: usize,
    /// How long a batch should take; the claim size adapts to it, and planning stops at a
    /// fraction of it (the lock session waits idle in its transaction meanwhile, and
    /// PostgreSQL ends a session idle for longer than the lease).
    pub batch_target: Duration,
    /// Statement timeout inside a batch (the lease: a stuck batch must not outlive it).
    pub statement_timeout: Duration,
    /// Pending runs a `queue` schedule may have; later ticks are written `skipped`
    /// (reason `queue_full`).
    pub max_queued: u32,
    /// A batch that writes a run due within this wakes the dispatchers (NOTIFY); runs due
    /// later are found by the dispatchers' own timers.
    pub notify_within: Duration,
}

impl TickSettings {
    fn lead(&self) -> Lead {
        Lead {
            min: self.lookahead,
            max: self.cohort_lookahead,
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    pub db_now: DateTime<Utc>,
    pub worker_enabled: bool,
    /// Schedules claimed.
    pub claimed: usize,
    /// Schedules planned (claimed ones past the row cap are left for the next batch).
    pub planned: usize,
    pub runs_written: u64,
    /// Whether more work is likely waiting (the batch was full): go on without sleeping.
    pub more: bool,
}

/// What a pass did, and how long the leader may sleep before the next one.
#[derive(Debug, Clone)]
pub struct TickOutcome {
    pub db_now: DateTime<Utc>,
    pub worker_enabled: bool,
    pub schedules: usize,
    pub runs_written: u64,
    /// Until the next schedule is due to be looked at.
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
    cron_expr: Option<String>,
    interval_seconds: Option<i64>,
    anchor: Option<DateTime<Utc>>,
    timezone: String,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    jitter_ms: i32,
    catchup_policy: CatchupPolicy,
    overlap_policy: OverlapPolicy,
    next_due_at: DateTime<Utc>,
    dst_gap: Option<DstGap>,
    dst_fold: Option<DstFold>,
    exclude_calendars: Vec<String>,
    on_excluded: OnExcluded,
}

const DUE_COLUMNS: &str = "schedule_id, cron_expr, interval_seconds, anchor, timezone, start_at, \
    end_at, jitter_ms, catchup_policy, overlap_policy, next_due_at, dst_gap, dst_fold, \
    exclude_calendars, on_excluded";

/// The ticker of one leadership term: its settings and the claim size it has learnt.
pub struct Ticker {
    settings: TickSettings,
    claim: i64,
}

impl Ticker {
    pub fn new(settings: TickSettings) -> Self {
        Self {
            settings,
            claim: CLAIM_START,
        }
    }

    /// One batch transaction (see the module docs).
    pub async fn batch(
        &mut self,
        conn: &mut PgConnection,
        cluster_name: &str,
        node_id: &str,
        epoch: i64,
        metrics: &Metrics,
    ) -> anyhow::Result<BatchOutcome> {
        let started = Instant::now();
        let lookahead = TimeDelta::from_std(self.settings.lookahead)?;
        let mut tx = conn.begin().await?;
        sqlx::query("select set_config('statement_timeout', $1, true)")
            .bind(self.settings.statement_timeout.as_millis().to_string())
            .execute(&mut *tx)
            .await?;
        // Claims walk the due and claim-time indexes in order and stop at the batch size,
        // and the writes look schedules up by key, whatever stale statistics suggest (a
        // cohort written since the last analyze).
        db::plan_batch(&mut tx, BatchPlan::QueueWalk).await?;
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
        let mut outcome = BatchOutcome {
            db_now: now,
            worker_enabled: enabled,
            claimed: 0,
            planned: 0,
            runs_written: 0,
            more: false,
        };
        if !enabled {
            tx.commit().await?;
            return Ok(outcome);
        }

        let mut due: Vec<DueSchedule> = sqlx::query_as(&format!(
            "select {DUE_COLUMNS} from schedules \
             where not paused and next_due_at is not null and next_due_at <= now() + $1 \
             order by next_due_at \
             limit $2 \
             for update skip locked"
        ))
        .bind(lookahead)
        .bind(self.claim)
        .fetch_all(&mut *tx)
        .await?;
        let room = self.claim - i64::try_from(due.len()).unwrap_or(i64::MAX);
        if room > 0 {
            let mut early: Vec<DueSchedule> = sqlx::query_as(&format!(
                "select {DUE_COLUMNS} from schedules \
                 where not paused and next_due_at is not null and claim_at <= now() \
                   and next_due_at > now() + $1 \
                 order by claim_at \
                 limit $2 \
                 for update skip locked"
            ))
            .bind(lookahead)
            .bind(room)
            .fetch_all(&mut *tx)
            .await?;
            due.append(&mut early);
        }
        outcome.claimed = due.len();
        let claimed = if due.is_empty() { "none" } else { "some" };
        metrics
            .tick_batches
            .add(1, &[KeyValue::new("claimed", claimed)]);
        if due.is_empty() {
            tx.commit().await?;
            return Ok(outcome);
        }
        // A span only for batches with work: the leader's idle heartbeats are not traced.
        let span = tracing::info_span!(
            "tick_batch",
            epoch,
            schedules = outcome.claimed,
            runs = tracing::field::Empty
        );

        // The queue bound: how many runs each `queue` schedule already has waiting.
        let queues: Vec<&str> = due
            .iter()
            .filter(|s| s.overlap_policy == OverlapPolicy::Queue)
            .map(|s| s.schedule_id.as_str())
            .collect();
        let queued: HashMap<String, i64> = if queues.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as::<_, (String, i64)>(
                "select schedule_id, count(*) from runs \
                 where schedule_id = any($1) and status = 'pending' group by schedule_id",
            )
            .bind(&queues)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        // The calendars the batch's schedules name: one query, none when no schedule names
        // one.
        let calendars = calendar_store::rules_named_in(
            &mut *tx,
            due.iter().map(|s| s.exclude_calendars.as_slice()),
        )
        .await?;
        let notify_within = TimeDelta::from_std(self.settings.notify_within)?;
        let settings = self.settings.clone();
        let planned = tokio::task::spawn_blocking(move || {
            plan_batch(&due, &queued, &calendars, now, &settings)
        })
        .await
        .map_err(|e| anyhow::anyhow!("planning failed: {e}"))?;
        outcome.planned = planned.schedules.schedule_id.len();

        if !planned.runs.run_id.is_empty() {
            outcome.runs_written = insert_runs(&mut tx, &planned.runs, epoch, node_id)
                .instrument(span.clone())
                .await?;
        }
        if !planned.schedules.schedule_id.is_empty() {
            let s = &planned.schedules;
            sqlx::query(
                "update schedules s set next_due_at = u.next_due_at, \
                   claim_at = coalesce(u.claim_at, '-infinity'), materialized_to = $6, \
                   missed_uncounted = s.missed_uncounted + u.uncounted, \
                   missed_uncounted_exact = s.missed_uncounted_exact and u.exact \
                 from unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int8[], \
                             $5::bool[]) as u(schedule_id, next_due_at, claim_at, uncounted, exact) \
                 where s.schedule_id = u.schedule_id",
            )
            .bind(&s.schedule_id)
            .bind(&s.next_due_at)
            .bind(&s.claim_at)
            .bind(&s.uncounted)
            .bind(&s.exact)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if planned.urgent(now + notify_within) {
            // Dispatchers on every replica wake for runs due soon (catch-up runs, a schedule
            // created a moment before its tick). Ticks written ahead need no wake-up: the
            // dispatchers look for runs entering their arm window on their own.
            db::notify(&mut *tx, Channel::Runs, "").await?;
        }
        if !planned.broken.is_empty() {
            sqlx::query(
                "update schedules set paused = true, updated_at = now() \
                 where schedule_id = any($1)",
            )
            .bind(&planned.broken)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().instrument(span.clone()).await?;
        span.record("runs", outcome.runs_written);
        planned.counts.record(metrics);

        let full = i64::try_from(outcome.claimed).unwrap_or(i64::MAX) >= self.claim;
        outcome.more = full || outcome.planned + planned.broken.len() < outcome.claimed;
        self.adapt(started.elapsed(), full);
        Ok(outcome)
    }

    /// Claim more per batch while batches are quick, fewer when one took too long.
    fn adapt(&mut self, took: Duration, full: bool) {
        let target = self.settings.batch_target;
        if took > target {
            self.claim = (self.claim * 2 / 3).max(CLAIM_MIN);
        } else if full && took < target / 2 {
            self.claim = (self.claim * 3 / 2).min(CLAIM_MAX);
        }
    }

    /// How long until some schedule is due to be looked at (a `claim_at` reached), on the
    /// lock session; `Duration::MAX` when no schedule is active.
    pub async fn until_next(&self, conn: &mut PgConnection) -> Result<Duration, sqlx::Error> {
        let secs: Option<f64> = sqlx::query_scalar(
            // `greatest`: a new schedule's claim_at is '-infinity', which PostgreSQL
            // cannot subtract from.
            "select extract(epoch from (greatest(min(claim_at), now()) - now()))::float8 \
             from schedules where not paused and next_due_at is not null",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(secs.map_or(Duration::MAX, |s| {
            Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
        }))
    }
}

/// One full pass: batches until no due schedule is left (tests and benchmarks; the leader
/// loop runs batches itself, renewing its trust in the lease after each).
pub async fn tick_once(
    conn: &mut PgConnection,
    settings: &TickSettings,
    cluster_name: &str,
    node_id: &str,
    epoch: i64,
    metrics: &Metrics,
) -> anyhow::Result<TickOutcome> {
    let mut ticker = Ticker::new(settings.clone());
    let mut total = TickOutcome {
        db_now: Utc::now(),
        worker_enabled: false,
        schedules: 0,
        runs_written: 0,
        sleep: Duration::MAX,
    };
    loop {
        let b = ticker
            .batch(conn, cluster_name, node_id, epoch, metrics)
            .await?;
        total.db_now = b.db_now;
        total.worker_enabled = b.worker_enabled;
        total.schedules += b.planned;
        total.runs_written += b.runs_written;
        if !b.more {
            break;
        }
    }
    metrics.schedules_due.record(total.schedules as u64, &[]);
    if total.worker_enabled {
        total.sleep = ticker.until_next(conn).await?;
    }
    Ok(total)
}

/// What a batch's planning produced, as columns to bind.
#[derive(Default)]
struct PlannedBatch {
    runs: RunColumns,
    schedules: ScheduleColumns,
    broken: Vec<String>,
    counts: PlanCounts,
}

impl PlannedBatch {
    /// Whether a pending run is due by `by`.
    fn urgent(&self, by: DateTime<Utc>) -> bool {
        self.runs
            .fire_at
            .iter()
            .zip(&self.runs.status)
            .any(|(fire, status)| *status == RunStatus::Pending && *fire <= by)
    }
}

/// Plans the claimed schedules in order until the batch's row cap or half its target time
/// (CPU work: run it on a blocking thread). `queued`: pending runs of the `queue` schedules among them.
fn plan_batch(
    due: &[DueSchedule],
    queued: &HashMap<String, i64>,
    calendars: &HashMap<String, CalendarRules>,
    now: DateTime<Utc>,
    settings: &TickSettings,
) -> PlannedBatch {
    let lead = settings.lead();
    let mut out = PlannedBatch::default();
    let deadline = Instant::now() + settings.batch_target / 2;
    for s in due {
        let planned = out.schedules.schedule_id.len() + out.broken.len();
        if planned > 0 && (out.runs.run_id.len() >= settings.max_rows || Instant::now() >= deadline)
        {
            break;
        }
        let catchup = s.catchup_policy;
        let spec = match CronSpec::from_columns(
            s.cron_expr.as_deref(),
            s.interval_seconds,
            s.anchor,
            &s.timezone,
            DstPolicy {
                gap: s.dst_gap,
                fold: s.dst_fold,
            },
        )
        .map_err(|e| e.message)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(schedule_id = %s.schedule_id, error = %e, "stored schedule does not parse; pausing it");
                out.broken.push(s.schedule_id.clone());
                continue;
            }
        };
        let window = Window {
            spec,
            start_at: s.start_at,
            end_at: s.end_at,
        };
        let exclusions =
            Exclusions::resolve(&s.exclude_calendars, s.on_excluded, |n| calendars.get(n));
        let mut p = plan(
            &s.schedule_id,
            &window,
            s.jitter_ms,
            catchup,
            s.next_due_at,
            now,
            &lead,
            &settings.limits,
            &exclusions,
        );
        if s.overlap_policy == OverlapPolicy::Queue {
            let mut waiting = queued.get(&s.schedule_id).copied().unwrap_or(0);
            for r in p.runs.iter_mut().filter(|r| r.status == RunStatus::Pending) {
                if waiting >= i64::from(settings.max_queued) {
                    r.status = RunStatus::Skipped;
                    r.reason = Some(RunReason::QueueFull);
                } else {
                    waiting += 1;
                }
            }
        }
        out.counts.missed_uncounted += u64::try_from(p.uncounted_missed).unwrap_or(0);
        for r in &p.runs {
            out.counts.add(r);
            out.runs.push(&s.schedule_id, r);
        }
        out.schedules.schedule_id.push(s.schedule_id.clone());
        out.schedules.next_due_at.push(p.next_due_at);
        out.schedules.claim_at.push(p.claim_at);
        out.schedules.uncounted.push(p.uncounted_missed);
        out.schedules.exact.push(p.uncounted_exact);
    }
    out
}

async fn insert_runs(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    runs: &RunColumns,
    epoch: i64,
    node_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           reason, workflow_id, version, user_id, idempotency_key, leader_epoch, created_by, \
           finished_at) \
         select r.run_id, r.schedule_id, r.scheduled_for, r.fire_at, r.status, r.trigger, \
           r.reason, s.workflow_id, s.version, s.user_id, r.run_id::text, $8, $9, \
           case when r.status in ('missed', 'skipped') then now() end \
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
         where runs.status = 'cancelled' and runs.reason = any($10)",
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
    .bind(RunReason::CANCELLATIONS)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// What one batch planned, for the metrics (counted when the batch commits).
#[derive(Default)]
struct PlanCounts {
    scheduled: u64,
    catchup: u64,
    missed_none: u64,
    missed_uncounted: u64,
    queue_full: u64,
    calendar: u64,
}

impl PlanCounts {
    fn add(&mut self, r: &PlannedRun) {
        match (r.status, r.trigger) {
            (RunStatus::Pending, RunTrigger::Schedule) => self.scheduled += 1,
            (RunStatus::Pending, _) => self.catchup += 1,
            (RunStatus::Skipped, _) if r.reason == Some(RunReason::QueueFull) => {
                self.queue_full += 1;
            }
            // Ticks a calendar excludes are neither emitted nor missed.
            (RunStatus::Skipped, _) => self.calendar += 1,
            _ => self.missed_none += 1,
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
            self.missed_uncounted,
            &[KeyValue::new("reason", "uncounted")],
        );
        metrics.runs_skipped_queue_full.add(self.queue_full, &[]);
        metrics.runs_skipped_calendar.add(self.calendar, &[]);
    }
}

/// Columns of runs to insert, one vector each (bound as arrays for `unnest`).
#[derive(Default)]
struct RunColumns {
    run_id: Vec<uuid::Uuid>,
    schedule_id: Vec<String>,
    scheduled_for: Vec<DateTime<Utc>>,
    fire_at: Vec<DateTime<Utc>>,
    status: Vec<RunStatus>,
    trigger: Vec<RunTrigger>,
    reason: Vec<Option<RunReason>>,
}

impl RunColumns {
    fn push(&mut self, schedule_id: &str, r: &PlannedRun) {
        self.run_id.push(uuid::Uuid::now_v7());
        self.schedule_id.push(schedule_id.to_owned());
        self.scheduled_for.push(r.scheduled_for);
        self.fire_at.push(r.fire_at);
        self.status.push(r.status);
        self.trigger.push(r.trigger);
        self.reason.push(r.reason);
    }
}

#[derive(Default)]
struct ScheduleColumns {
    schedule_id: Vec<String>,
    next_due_at: Vec<Option<DateTime<Utc>>>,
    claim_at: Vec<Option<DateTime<Utc>>>,
    uncounted: Vec<i64>,
    exact: Vec<bool>,
}
