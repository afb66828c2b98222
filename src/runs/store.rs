//! Run queries (the read side). Listing walks the unique `(schedule_id, scheduled_for)`
//! index backwards with keyset pagination: `(schedule_id,
//! scheduled_for)` is unique, so "older than the last tick seen" names the next page
//! exactly, however many runs are inserted meanwhile.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::model::{Run, RunStatus};

/// The columns of [`Run`]; `idempotency_key` and `lease_until` stay inside.
pub(crate) const COLUMNS: &str = "run_id, schedule_id, scheduled_for, fire_at, status, trigger, reason, \
    workflow_id, version, user_id, attempt, last_error, leader_epoch, created_by, \
    launched_by, created_at, updated_at, launched_at, finished_at";

pub async fn get(pool: &PgPool, run_id: Uuid) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as::<_, Run>(&format!("select {COLUMNS} from runs where run_id = $1"))
        .bind(run_id)
        .fetch_optional(pool)
        .await
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
    // `coalesce(.., 'infinity')` rather than `$3 is null or ..`: it stays an index bound
    // even in a generic plan of the prepared statement.
    let mut runs = sqlx::query_as::<_, Run>(&format!(
        "select {COLUMNS} from runs \
         where schedule_id = $1 \
           and scheduled_for < coalesce($3::timestamptz, 'infinity') \
           and ($2::text is null or status = $2) \
           and ($5::text is null or user_id = $5) \
         order by scheduled_for desc \
         limit $4"
    ))
    .bind(schedule_id)
    .bind(filter.status)
    .bind(filter.before)
    .bind(i64::from(limit) + 1)
    .bind(&filter.user_id)
    .fetch_all(pool)
    .await?;
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
