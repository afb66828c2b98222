//! Schedule persistence. Each write is one transaction that also cancels the pending runs
//! the change invalidates and notifies the leader (`NOTIFY scheduler_schedules`), so the
//! leader never has to poll to learn about a change.
//!
//! "Now" is always the database's `now()` (invariant 3): the API computes a new schedule's
//! first due tick from the same clock the leader uses to decide due-ness.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::{
    db::{self, Channel},
    kinds::RunStatus,
    runs::RunReason,
};

use super::{
    calendar_store,
    exclusions::{CalendarRules, Exclusions, OnExcluded, upcoming},
    health::{self, ScheduleHealth},
    model::{
        CatchupPolicy, FieldError, NEXT_FIRE_TIMES, OverlapPolicy, Schedule, ScheduleSpec,
        ScheduleStatus, check_fires_after,
    },
    spec::{CronSpec, DstFold, DstGap, DstPolicy, Window},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The schedule exists but belongs to another user than the one the caller is
    /// limited to: reported like an unknown id, so ids of other users do not leak.
    #[error("no schedule with id {0:?}")]
    NotVisible(String),
    /// A stored row no longer parses (edited by hand, or a dependency changed its dialect).
    #[error("stored schedule {0} is corrupt: {1}")]
    Corrupt(String, String),
}

/// The columns every read selects: the row, the database clock, and what the schedule's
/// runs say of it (see [`super::health`]). `late_after` is how far past due a tick may be
/// before the schedule is `late` (the misfire grace).
fn columns(late_after: Duration) -> String {
    format!(
        "schedule_id, workflow_id, version, user_id, cron_expr, interval_seconds, anchor, timezone, \
         start_at, end_at, jitter_ms, overlap_policy, catchup_policy, paused, next_due_at, \
         dst_gap, dst_fold, exclude_calendars, on_excluded, missed_uncounted, missed_uncounted_exact, created_at, updated_at, now() as db_now, \
         exists (select 1 from workflow_versions w where w.workflow_id = schedules.workflow_id \
           and w.version = schedules.version) as workflow_stored, {}",
        health::columns("schedules", late_after)
    )
}

#[derive(Debug, sqlx::FromRow)]
struct ScheduleRow {
    schedule_id: String,
    workflow_id: String,
    version: i32,
    user_id: String,
    cron_expr: Option<String>,
    interval_seconds: Option<i64>,
    anchor: Option<DateTime<Utc>>,
    timezone: String,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    jitter_ms: i32,
    overlap_policy: OverlapPolicy,
    catchup_policy: CatchupPolicy,
    paused: bool,
    next_due_at: Option<DateTime<Utc>>,
    dst_gap: Option<DstGap>,
    dst_fold: Option<DstFold>,
    exclude_calendars: Vec<String>,
    on_excluded: OnExcluded,
    missed_uncounted: i64,
    missed_uncounted_exact: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    db_now: DateTime<Utc>,
    /// Whether the schedule's workflow version is stored (its DAG exists).
    workflow_stored: bool,
    last_fire_at: Option<DateTime<Utc>>,
    last_run_status: Option<RunStatus>,
    health: ScheduleHealth,
}

impl ScheduleRow {
    /// The schedule as the API shows it; `calendars` holds (at least) the rules of the
    /// calendars it names.
    fn into_schedule(self, calendars: &Calendars) -> Result<Schedule, StoreError> {
        let window = self.window()?;
        let (overlap_policy, catchup_policy) = (self.overlap_policy, self.catchup_policy);
        let interval = window.spec.interval().map(|i| i.text());
        let finished = self.next_due_at.is_none() || self.end_at.is_some_and(|e| e < self.db_now);
        let status = if finished {
            ScheduleStatus::Completed
        } else if self.paused {
            ScheduleStatus::Paused
        } else {
            ScheduleStatus::Active
        };
        let (next_fire_times, next_ticks) = if status == ScheduleStatus::Active {
            let exclusions = Exclusions::resolve(&self.exclude_calendars, self.on_excluded, |n| {
                calendars.get(n)
            });
            upcoming(&window, &exclusions, self.db_now, NEXT_FIRE_TIMES)
        } else {
            (Vec::new(), Vec::new())
        };
        let warnings = if self.workflow_stored {
            Vec::new()
        } else {
            vec![format!(
                "workflow {:?} version {} is not stored yet: until PUT /workflows/{}/versions/{} \
                 stores its DAG, this schedule's runs end failed_launch (workflow_not_found)",
                self.workflow_id, self.version, self.workflow_id, self.version
            )]
        };
        Ok(Schedule {
            warnings,
            schedule_id: self.schedule_id,
            workflow_id: self.workflow_id,
            version: self.version,
            user_id: self.user_id,
            cron_expr: self.cron_expr,
            interval,
            anchor: self.anchor,
            timezone: self.timezone,
            start_at: self.start_at,
            end_at: self.end_at,
            jitter_ms: self.jitter_ms,
            overlap_policy,
            catchup_policy,
            paused: self.paused,
            status,
            exclude_calendars: self.exclude_calendars,
            on_excluded: self.on_excluded,
            next_fire_times,
            next_ticks,
            missed_uncounted: self.missed_uncounted,
            missed_uncounted_exact: self.missed_uncounted_exact,
            created_at: self.created_at,
            updated_at: self.updated_at,
            dst_gap: self.dst_gap,
            dst_fold: self.dst_fold,
            last_fire_at: self.last_fire_at,
            last_run_status: self.last_run_status,
            health: self.health,
        })
    }

    fn dst(&self) -> DstPolicy {
        DstPolicy {
            gap: self.dst_gap,
            fold: self.dst_fold,
        }
    }

    fn window(&self) -> Result<Window, StoreError> {
        let spec = CronSpec::from_columns(
            self.cron_expr.as_deref(),
            self.interval_seconds,
            self.anchor,
            &self.timezone,
            self.dst(),
        )
        .map_err(|e| StoreError::Corrupt(self.schedule_id.clone(), e.message))?;
        Ok(Window {
            spec,
            start_at: self.start_at,
            end_at: self.end_at,
        })
    }
}

/// Calendar rules by name.
type Calendars = HashMap<String, CalendarRules>;

/// The rules of every calendar `rows` name (one query, none when no row names one).
async fn calendars_of<'c, E>(conn: E, rows: &[&ScheduleRow]) -> Result<Calendars, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    calendar_store::rules_named_in(conn, rows.iter().map(|r| r.exclude_calendars.as_slice())).await
}

async fn db_now(tx: &mut Transaction<'_, Postgres>) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("select now()")
        .fetch_one(&mut **tx)
        .await
}

async fn notify(tx: &mut Transaction<'_, Postgres>, schedule_id: &str) -> Result<(), sqlx::Error> {
    db::notify(&mut **tx, Channel::Schedules, schedule_id).await
}

/// Cancels the schedule's runs that have not started, those waiting to retry a launch
/// included (freeing the exclusive slot one of them may hold). Returns how many. The query
/// is [`crate::runs::store::CANCEL_PENDING`]: it reads only the schedule's pending runs,
/// however long its history.
async fn cancel_pending(
    tx: &mut Transaction<'_, Postgres>,
    schedule_id: &str,
    reason: RunReason,
) -> Result<u64, sqlx::Error> {
    crate::runs::store::cancel_pending(tx, schedule_id, reason).await
}

async fn select_for_update(
    tx: &mut Transaction<'_, Postgres>,
    schedule_id: &str,
    late_after: Duration,
) -> Result<Option<ScheduleRow>, sqlx::Error> {
    sqlx::query_as::<_, ScheduleRow>(&format!(
        "select {} from schedules where schedule_id = $1 for update",
        columns(late_after)
    ))
    .bind(schedule_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Creates or replaces a schedule. Returns it and whether it was created.
///
/// A replacement that changes what a tick is (cron, timezone, bounds, jitter, workflow,
/// version, user) cancels the old spec's pending runs and recomputes the next due tick
/// from now; one that changes only policies keeps them. With `owner`, an existing schedule
/// of another user is not replaced ([`StoreError::NotVisible`]); the check holds the row
/// lock, so it cannot race a concurrent change of owner.
pub async fn upsert(
    pool: &PgPool,
    spec: &ScheduleSpec,
    owner: Option<&str>,
    late_after: Duration,
) -> Result<(Schedule, bool), StoreError> {
    let mut tx = pool.begin().await?;
    let now = db_now(&mut tx).await?;
    let id = spec.schedule_id.as_str();
    let existing = select_for_update(&mut tx, id, late_after).await?;
    if let (Some(row), Some(owner)) = (&existing, owner) {
        if row.user_id != owner {
            return Err(StoreError::NotVisible(id.to_owned()));
        }
    }
    calendar_store::lock_for_schedule(&mut tx, &spec.exclude_calendars, &spec.user_id).await?;

    let (next_due_at, created, changed) = match &existing {
        None => {
            check_fires_after(&spec.window, now)?;
            (spec.window.first_tick_from(now), true, true)
        }
        Some(row) => {
            let old = ScheduleSpec {
                window: row.window()?,
                workflow_id: row.workflow_id.clone(),
                version: row.version,
                user_id: row.user_id.clone(),
                jitter_ms: row.jitter_ms,
                exclude_calendars: row.exclude_calendars.clone(),
                on_excluded: row.on_excluded,
                ..spec.clone()
            };
            let resumes = row.paused && !spec.paused;
            if spec.changes_ticks(&old) || resumes {
                check_fires_after(&spec.window, now)?;
                (spec.window.first_tick_from(now), false, true)
            } else {
                (row.next_due_at, false, spec.paused != row.paused)
            }
        }
    };

    if created {
        // A concurrent create of the same id makes this insert conflict; the caller's
        // retry then sees the row and replaces it.
        let inserted = sqlx::query(
            "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, timezone, \
               start_at, end_at, jitter_ms, overlap_policy, catchup_policy, paused, next_due_at, \
               dst_gap, dst_fold, interval_seconds, anchor, exclude_calendars, on_excluded) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
               $18, $19) \
             on conflict (schedule_id) do nothing",
        )
        .bind(id)
        .bind(&spec.workflow_id)
        .bind(spec.version)
        .bind(&spec.user_id)
        .bind(spec.window.spec.expr())
        .bind(spec.window.spec.timezone().name())
        .bind(spec.window.start_at)
        .bind(spec.window.end_at)
        .bind(spec.jitter_ms)
        .bind(spec.overlap_policy)
        .bind(spec.catchup_policy)
        .bind(spec.paused)
        .bind(next_due_at)
        .bind(spec.window.spec.dst().gap)
        .bind(spec.window.spec.dst().fold)
        .bind(spec.window.spec.interval().map(|i| i.period_seconds()))
        .bind(spec.window.spec.interval().map(|i| i.anchor()))
        .bind(&spec.exclude_calendars)
        .bind(spec.on_excluded)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            drop(tx);
            return Box::pin(upsert(pool, spec, owner, late_after)).await;
        }
    } else {
        if changed {
            let pausing = spec.paused && existing.as_ref().is_some_and(|r| !r.paused);
            let reason = if pausing {
                RunReason::Paused
            } else {
                RunReason::SpecChanged
            };
            cancel_pending(&mut tx, id, reason).await?;
        }
        sqlx::query(
            "update schedules set workflow_id = $2, version = $3, user_id = $4, cron_expr = $5, \
               timezone = $6, start_at = $7, end_at = $8, jitter_ms = $9, overlap_policy = $10, \
               catchup_policy = $11, paused = $12, next_due_at = $13, \
               materialized_to = case when $14 then null else materialized_to end, \
               claim_at = case when $14 then '-infinity' else claim_at end, \
               spec_generation = spec_generation + case when $14 then 1 else 0 end, \
               dst_gap = $15, dst_fold = $16, interval_seconds = $17, anchor = $18, \
               exclude_calendars = $19, on_excluded = $20, \
               updated_at = now() \
             where schedule_id = $1",
        )
        .bind(id)
        .bind(&spec.workflow_id)
        .bind(spec.version)
        .bind(&spec.user_id)
        .bind(spec.window.spec.expr())
        .bind(spec.window.spec.timezone().name())
        .bind(spec.window.start_at)
        .bind(spec.window.end_at)
        .bind(spec.jitter_ms)
        .bind(spec.overlap_policy)
        .bind(spec.catchup_policy)
        .bind(spec.paused)
        .bind(next_due_at)
        .bind(changed)
        .bind(spec.window.spec.dst().gap)
        .bind(spec.window.spec.dst().fold)
        .bind(spec.window.spec.interval().map(|i| i.period_seconds()))
        .bind(spec.window.spec.interval().map(|i| i.anchor()))
        .bind(&spec.exclude_calendars)
        .bind(spec.on_excluded)
        .execute(&mut *tx)
        .await?;
    }
    notify(&mut tx, id).await?;
    let row = select_for_update(&mut tx, id, late_after)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(id.to_owned(), "vanished inside its transaction".into())
        })?;
    let calendars = calendars_of(&mut *tx, &[&row]).await?;
    tx.commit().await?;
    Ok((row.into_schedule(&calendars)?, created))
}

pub async fn get(
    pool: &PgPool,
    schedule_id: &str,
    late_after: Duration,
) -> Result<Option<Schedule>, StoreError> {
    let row = sqlx::query_as::<_, ScheduleRow>(&format!(
        "select {} from schedules where schedule_id = $1",
        columns(late_after)
    ))
    .bind(schedule_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let calendars = calendars_of(pool, &[&row]).await?;
    row.into_schedule(&calendars).map(Some)
}

/// Filters of `GET /schedules`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub user_id: Option<String>,
    pub workflow_id: Option<String>,
    pub paused: Option<bool>,
    /// `true`: only `completed` schedules (no tick left); `false`: only those with one.
    pub completed: Option<bool>,
    pub health: Option<ScheduleHealth>,
    /// Exclusive: schedules with a larger id than this.
    pub after: Option<String>,
    pub limit: u32,
}

/// How many schedules one health-filtered page examines at most: health is computed when
/// read, so a page costs what it scans (about 50 µs of database time per schedule,
/// measured with 100,000 schedules and 6 million runs: about 0.1 s a page). A page may hold fewer matches than asked for (none,
/// even) and still carry a `next_cursor`: the scan goes on from there.
pub const HEALTH_SCAN: i64 = 2_000;

/// One page of schedules in id order, and the cursor of the next page (if there is one).
pub async fn list(
    pool: &PgPool,
    filter: &ListFilter,
    late_after: Duration,
) -> Result<(Vec<Schedule>, Option<String>), StoreError> {
    const MATCHING: &str = "($1::text is null or user_id = $1) \
           and ($2::text is null or workflow_id = $2) \
           and ($3::bool is null or paused = $3) \
           and ($4::text is null or schedule_id > $4) \
           and ($6::bool is null \
                or (next_due_at is null or coalesce(end_at < now(), false)) = $6)";
    let limit = filter.limit as usize;
    let Some(health) = filter.health else {
        let rows = sqlx::query_as::<_, ScheduleRow>(&format!(
            "select {} from schedules where {MATCHING} order by schedule_id limit $5",
            columns(late_after)
        ))
        .bind(&filter.user_id)
        .bind(&filter.workflow_id)
        .bind(filter.paused)
        .bind(&filter.after)
        .bind(i64::from(filter.limit) + 1)
        .bind(filter.completed)
        .fetch_all(pool)
        .await?;
        let has_more = rows.len() > limit;
        let schedules = into_schedules(pool, rows, limit).await?;
        let next = has_more
            .then(|| schedules.last().map(|s| s.schedule_id.clone()))
            .flatten();
        return Ok((schedules, next));
    };
    let examined: Vec<String> = sqlx::query_scalar(&format!(
        "select schedule_id from schedules where {MATCHING} order by schedule_id limit $5"
    ))
    .bind(&filter.user_id)
    .bind(&filter.workflow_id)
    .bind(filter.paused)
    .bind(&filter.after)
    .bind(HEALTH_SCAN)
    .bind(filter.completed)
    .fetch_all(pool)
    .await?;
    let rows = sqlx::query_as::<_, ScheduleRow>(&format!(
        "select {} from schedules where schedule_id = any($1) and {} = $2 \
         order by schedule_id limit $3",
        columns(late_after),
        health::expression("schedules", late_after)
    ))
    .bind(&examined)
    .bind(health)
    .bind(i64::from(filter.limit) + 1)
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > limit;
    let schedules = into_schedules(pool, rows, limit).await?;
    let next = if has_more {
        schedules.last().map(|s| s.schedule_id.clone())
    } else if examined.len() as i64 == HEALTH_SCAN {
        examined.last().cloned()
    } else {
        None
    };
    Ok((schedules, next))
}

async fn into_schedules(
    pool: &PgPool,
    rows: Vec<ScheduleRow>,
    limit: usize,
) -> Result<Vec<Schedule>, StoreError> {
    let rows: Vec<ScheduleRow> = rows.into_iter().take(limit).collect();
    let calendars = calendars_of(pool, &rows.iter().collect::<Vec<_>>()).await?;
    rows.into_iter()
        .map(|r| r.into_schedule(&calendars))
        .collect()
}

/// Pauses (cancelling pending runs) or unpauses (resuming from the next future tick:
/// ticks during the pause are not caught up). `None` if there is no such schedule, or
/// it is not `owner`'s (when given).
pub async fn set_paused(
    pool: &PgPool,
    schedule_id: &str,
    paused: bool,
    owner: Option<&str>,
    late_after: Duration,
) -> Result<Option<Schedule>, StoreError> {
    let mut tx = pool.begin().await?;
    let now = db_now(&mut tx).await?;
    let Some(row) = select_for_update(&mut tx, schedule_id, late_after).await? else {
        return Ok(None);
    };
    if owner.is_some_and(|o| o != row.user_id) {
        return Ok(None);
    }
    if row.paused != paused {
        if paused {
            cancel_pending(&mut tx, schedule_id, RunReason::Paused).await?;
        }
        let next_due_at = if paused {
            row.next_due_at
        } else {
            row.window()?.first_tick_from(now)
        };
        sqlx::query(
            "update schedules set paused = $2, next_due_at = $3, materialized_to = null, \
               claim_at = '-infinity', spec_generation = spec_generation + 1, updated_at = now() \
             where schedule_id = $1",
        )
        .bind(schedule_id)
        .bind(paused)
        .bind(next_due_at)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, schedule_id).await?;
    }
    let row = select_for_update(&mut tx, schedule_id, late_after)
        .await?
        .ok_or_else(|| StoreError::Corrupt(schedule_id.to_owned(), "vanished".into()))?;
    let calendars = calendars_of(&mut *tx, &[&row]).await?;
    tx.commit().await?;
    row.into_schedule(&calendars).map(Some)
}

/// Deletes a schedule and cancels its pending runs; its run history stays readable by run
/// id. Returns whether it existed (and was `owner`'s, when given).
pub async fn delete(
    pool: &PgPool,
    schedule_id: &str,
    owner: Option<&str>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query(
        "delete from schedules where schedule_id = $1 and ($2::text is null or user_id = $2)",
    )
    .bind(schedule_id)
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if deleted {
        cancel_pending(&mut tx, schedule_id, RunReason::Deleted).await?;
        notify(&mut tx, schedule_id).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}
