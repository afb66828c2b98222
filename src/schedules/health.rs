//! Per-schedule health: whether a schedule fires as it should, in one word.
//!
//! - `late`: an active schedule that should have fired and has not. Its next tick is more
//!   than `late_after` past due and no leader turned it into a run (no leader, the worker
//!   stopped, a leader that cannot write), or one of its runs has been due that long
//!   without an accepted launch (the Executor refuses with retries or is down, no replica
//!   launches). `late_after` is the misfire grace (`SCHEDULER_MISFIRE_GRACE_MS`): what the
//!   scheduler itself tolerates before it calls a tick missed.
//! - `failing`: its [`FAILING_AFTER`] latest ended runs all failed (`failed`, `timed_out`
//!   or `failed_launch`): that many failures since its latest `succeeded` run.
//! - `ok` otherwise (paused and completed schedules are never `late`).
//!
//! `late` is reported before `failing`: it is what is happening now.
//!
//! Health is computed when read (the SQL function `schedule_health`, migration 0006), from
//! the schedule's row and a few probes of `runs_schedule_status_idx`: nothing is written
//! on the launch path to keep it, and one schedule's answer costs the same whatever its
//! history (about 50 µs of database time). `last_fire_at` walks at most [`RECENT_TICKS`]
//! of its latest ticks. A health filter over many schedules costs what it scans,
//! so `GET /schedules?health=` and the leader's gauge scan in bounded chunks ([`survey`]).

use std::time::Duration;

use sqlx::PgPool;

/// A failing schedule's latest this many ended runs all failed.
pub const FAILING_AFTER: i64 = 3;
/// How many of a schedule's latest ticks `last_fire_at` looks at.
pub const RECENT_TICKS: i64 = 50;

text_enum!(
    /// A schedule's health (see `schedules::health`).
    ScheduleHealth { Ok = "ok", Late = "late", Failing = "failing" }
);

/// `late_after` as an SQL interval literal (whole milliseconds; from the configuration,
/// never from a client).
fn interval(late_after: Duration) -> String {
    let ms = u64::try_from(late_after.as_millis()).unwrap_or(u64::MAX / 2);
    format!("make_interval(secs => {ms} / 1000.0)")
}

/// The select-list columns `last_fire_at`, `last_run_status` and `health` of the
/// schedule row named `table` (a table name or alias in the query's FROM).
pub fn columns(table: &str, late_after: Duration) -> String {
    format!(
        "(select x.launched_at from (select r.launched_at from runs r \
            where r.schedule_id = {table}.schedule_id \
            order by r.scheduled_for desc limit {RECENT_TICKS}) x \
          where x.launched_at is not null limit 1) as last_fire_at, \
         (select r.status from runs r where r.schedule_id = {table}.schedule_id \
            and r.fire_at <= now() order by r.scheduled_for desc limit 1) as last_run_status, \
         {} as health",
        expression(table, late_after)
    )
}

/// The SQL expression of the health of the schedule row `table`.
pub fn expression(table: &str, late_after: Duration) -> String {
    format!(
        "schedule_health({table}.schedule_id, {table}.paused, {table}.next_due_at, \
         {table}.end_at, {})",
        interval(late_after)
    )
}

/// One chunk of a scan over every schedule in id order: the ids after `after` (at most
/// `chunk`) with their health. Fewer than `chunk` rows: the scan is complete.
pub async fn survey(
    pool: &PgPool,
    after: Option<&str>,
    chunk: i64,
    late_after: Duration,
) -> Result<Vec<(String, ScheduleHealth)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select s.schedule_id, {} from schedules s \
         where $1::text is null or s.schedule_id > $1 \
         order by s.schedule_id limit $2",
        expression("s", late_after)
    ))
    .bind(after)
    .bind(chunk)
    .fetch_all(pool)
    .await
}
