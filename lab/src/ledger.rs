//! What the `runs` table says at the end of a scenario: rows by status, duplicate rows for
//! one tick (invariant 1: always 0, `UNIQUE (schedule_id, scheduled_for)` holds it), and
//! launch attempts. Each query can be narrowed to a schedule-id prefix and a range of
//! `scheduled_for`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Which runs a query looks at; `Default` is all of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// Only schedules whose id starts with this.
    pub prefix: Option<&'a str>,
    /// `scheduled_for >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `scheduled_for < until`.
    pub until: Option<DateTime<Utc>>,
}

const WHERE: &str = "($1::text is null or starts_with(schedule_id, $1)) \
    and ($2::timestamptz is null or scheduled_for >= $2) \
    and ($3::timestamptz is null or scheduled_for < $3)";

/// Rows by status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts(pub BTreeMap<String, i64>);

impl StatusCounts {
    pub fn get(&self, status: &str) -> i64 {
        self.0.get(status).copied().unwrap_or(0)
    }

    pub fn total(&self) -> i64 {
        self.0.values().sum()
    }

    /// `status=n` pairs in one cell.
    pub fn cell(&self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub async fn status_counts(pool: &PgPool, scope: Scope<'_>) -> anyhow::Result<StatusCounts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "select status, count(*) from runs where {WHERE} group by status order by status"
    ))
    .bind(scope.prefix)
    .bind(scope.from)
    .bind(scope.until)
    .fetch_all(pool)
    .await?;
    Ok(StatusCounts(rows.into_iter().collect()))
}

/// Ticks with more than one run row.
pub async fn duplicate_rows(pool: &PgPool, scope: Scope<'_>) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "select count(*) from (select 1 from runs where schedule_id is not null and {WHERE} \
         group by schedule_id, scheduled_for having count(*) > 1) d"
    ))
    .bind(scope.prefix)
    .bind(scope.from)
    .bind(scope.until)
    .fetch_one(pool)
    .await?)
}

/// Runs by number of launch attempts made (`attempt`).
pub async fn attempts_histogram(
    pool: &PgPool,
    scope: Scope<'_>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "select attempt, count(*) from runs where {WHERE} group by attempt order by attempt"
    ))
    .bind(scope.prefix)
    .bind(scope.from)
    .bind(scope.until)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The database's clock (every due-ness decision uses it).
pub async fn db_now(pool: &PgPool) -> anyhow::Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("select now()").fetch_one(pool).await?)
}
