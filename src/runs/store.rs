//! Run queries. Listing walks an index backwards with keyset pagination: `(schedule_id,
//! scheduled_for)` is unique, so "older than the last tick seen" names the next page
//! exactly, however many runs are inserted meanwhile.
//!
//! The hot queries are `const`s, so the code runs exactly the text that the tests in
//! `tests/it/history.rs` EXPLAIN against a long history: each reads what is in flight or
//! on the page, never the schedule's whole history (DESIGN §2.5).

use super::RunReason;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::model::{Run, RunStatus};

/// The columns of [`Run`]; `idempotency_key` and `lease_until` stay inside. A macro, so
/// the queries below can be `const` text.
macro_rules! run_columns {
    () => {
        "run_id, schedule_id, scheduled_for, fire_at, status, trigger, reason, \
         workflow_id, version, user_id, attempt, last_error, leader_epoch, created_by, \
         launched_by, created_at, updated_at, launched_at, finished_at"
    };
}

/// The same columns, for other modules' queries.
pub(crate) const COLUMNS: &str = run_columns!();

const GET: &str = concat!("select ", run_columns!(), " from runs where run_id = $1");

pub async fn get(pool: &PgPool, run_id: Uuid) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as::<_, Run>(GET)
        .bind(run_id)
        .fetch_optional(pool)
        .await
}

/// One page of a schedule's runs, any status: backwards along the unique
/// `(schedule_id, scheduled_for)` index. `$1` schedule, `$2` cursor (exclusive; null for
/// the first page), `$3` rows, `$4` user scope (null: any user).
///
/// `coalesce(.., 'infinity')` rather than `$2 is null or ..`: it stays an index bound even
/// in a generic plan of the prepared statement.
pub const LIST: &str = concat!(
    "select ",
    run_columns!(),
    " from runs \
     where schedule_id = $1 \
       and scheduled_for < coalesce($2::timestamptz, 'infinity') \
       and ($4::text is null or user_id = $4) \
     order by scheduled_for desc \
     limit $3"
);

/// [`LIST`] with `$5` the status: backwards along `runs_schedule_status_idx`
/// `(schedule_id, status, scheduled_for)`, so a rare status costs the page, not the
/// history. A text of its own because `($5 is null or status = $5)` is no index bound in
/// a generic plan: the planner would walk every run of the schedule and filter.
pub const LIST_BY_STATUS: &str = concat!(
    "select ",
    run_columns!(),
    " from runs \
     where schedule_id = $1 \
       and status = $5 \
       and scheduled_for < coalesce($2::timestamptz, 'infinity') \
       and ($4::text is null or user_id = $4) \
     order by scheduled_for desc \
     limit $3"
);

/// Cancels a schedule's runs that have not started: `$1` schedule, `$2` reason. Reads
/// only its pending runs (`runs_schedule_status_idx`). A run waiting to retry a launch is
/// `pending` too and may hold the schedule's exclusive slot: cancelling it frees the slot.
pub const CANCEL_PENDING: &str = "update runs set status = 'cancelled', reason = $2, \
       exclusive_slot = false, lease_until = null, finished_at = now(), updated_at = now() \
     where schedule_id = $1 and status = 'pending'";

/// Runs [`CANCEL_PENDING`] on `conn` (the caller's transaction). Returns how many.
pub async fn cancel_pending(
    conn: &mut PgConnection,
    schedule_id: &str,
    reason: RunReason,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(CANCEL_PENDING)
        .bind(schedule_id)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Filters of [`list_for_schedule`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    /// Exclusive: runs of earlier ticks than this.
    pub before: Option<DateTime<Utc>>,
    /// Only runs made in this user's name.
    pub user_id: Option<String>,
    pub limit: u32,
}

/// One page of a schedule's runs, newest tick first, and the cursor of the next page: the
/// `scheduled_for` of this page's last run, `None` on the last page.
pub async fn list_for_schedule(
    pool: &PgPool,
    schedule_id: &str,
    filter: &RunFilter,
) -> Result<(Vec<Run>, Option<DateTime<Utc>>), sqlx::Error> {
    let limit = filter.limit;
    let query = sqlx::query_as::<_, Run>(match filter.status {
        Some(_) => LIST_BY_STATUS,
        None => LIST,
    })
    .bind(schedule_id)
    .bind(filter.before)
    .bind(i64::from(limit) + 1)
    .bind(&filter.user_id);
    let query = match filter.status {
        Some(status) => query.bind(status),
        None => query,
    };
    let mut runs = query.fetch_all(pool).await?;
    let next = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.scheduled_for)
    } else {
        None
    };
    Ok((runs, next))
}

/// Whether `schedule_id` names a schedule, or a deleted one whose runs remain; with
/// `user_id`, only a schedule of that user or one with runs in that user's name counts.
pub async fn schedule_known(
    pool: &PgPool,
    schedule_id: &str,
    user_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from schedules where schedule_id = $1 \
                          and ($2::text is null or user_id = $2)) \
             or exists (select 1 from runs where schedule_id = $1 \
                          and ($2::text is null or user_id = $2))",
    )
    .bind(schedule_id)
    .bind(user_id)
    .fetch_one(pool)
    .await
}
