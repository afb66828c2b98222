//! The database: connection pool, embedded migrations, and the embedded default cluster.
//!
//! PostgreSQL is the only state. Every invariant that can be a constraint is one (see
//! `migrations/`), so the Rust code cannot break them even when it is wrong.

pub mod embedded;
pub mod notify;

pub use notify::{Channel, notify};

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// The schema, compiled into the binary. Migrations are never edited once released.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How a batch transaction of the hot path is planned, set for that transaction alone.
///
/// The hot path's statements touch rows by key (`... from unnest($1::uuid[]) ... where
/// r.run_id = u.run_id`) or walk a queue index in order (`order by due limit n`). Both stay
/// cheap only with nested-loop index lookups and ordered index walks; but the tables churn
/// faster than their statistics (a burst of 100,000 runs goes through `launching` in
/// seconds), and with stale estimates the planner may choose to hash a sequential scan of
/// the whole table for a batch of 2,000 keys, or to fetch and sort a whole cohort for one
/// batch. These settings leave it only the plans that cost what the batch touches.
///
/// Key lookups are planned for the values at hand (`plan_cache_mode = force_custom_plan`):
/// a key array is then a constant whose length the planner knows, and `= any(...)` over
/// it is a hash probe, not a walk of the array for every row. (Queue walks keep the plan
/// cache: their plans do not depend on the values, and planning every claim costs time.)
///
/// The statements that write a batch of runs by key never join the key array to `runs`
/// with a filter on `status` alone: statistics taken when every run was `pending` say that
/// no run is `launching`, and the planner then walks every launching run and, for each,
/// the whole key array (a batch of 4,096 outcomes against 60,000 runs in flight took
/// 12 s, long enough for leases to run out and runs to be sent twice). They select by
/// `run_id = any($keys)`, so the rows read are the batch's whatever the estimates say; a
/// per-row value that must match (the attempt) is checked as `run_id/attempt = any(...)`,
/// see [`run_keys`]. Their status test is written `coalesce(r.status, '') = ...` (the same
/// test: `status` is never null) so that it cannot become a walk of the `(schedule_id,
/// status, scheduled_for)` index on its second column, and sequential scans are off: the
/// primary key is the only way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPlan {
    /// Key lookups: no hash or merge joins.
    KeyLookups,
    /// Key lookups and ordered queue walks: no hash or merge joins, no sorts, no bitmap
    /// scans.
    QueueWalk,
}

/// Applies `plan` to the current transaction (`set_config(..., is_local => true)`).
pub async fn plan_batch(conn: &mut sqlx::PgConnection, plan: BatchPlan) -> Result<(), sqlx::Error> {
    let (queue, plans) = match plan {
        BatchPlan::QueueWalk => ("off", "auto"),
        BatchPlan::KeyLookups => ("on", "force_custom_plan"),
    };
    sqlx::query(
        "select set_config('enable_hashjoin', 'off', true), \
           set_config('enable_mergejoin', 'off', true), \
           set_config('enable_sort', $1, true), set_config('enable_bitmapscan', $1, true), \
           set_config('plan_cache_mode', $2, true), set_config('enable_seqscan', 'off', true)",
    )
    .bind(queue)
    .bind(plans)
    .execute(conn)
    .await?;
    Ok(())
}

/// `run_id/attempt` keys, matched in SQL by `(r.run_id::text || '/' || r.attempt) = any(...)`:
/// checks that each row is at the attempt its writer expects without joining the batch to
/// `runs` (see [`BatchPlan`]).
pub fn run_keys<'a>(runs: impl IntoIterator<Item = (&'a uuid::Uuid, i32)>) -> Vec<String> {
    runs.into_iter()
        .map(|(id, attempt)| format!("{id}/{attempt}"))
        .collect()
}

/// Pool settings that matter for behaviour, not just speed.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// A request that cannot get a connection in this time answers 503.
    pub acquire_timeout: Duration,
    pub application_name: String,
}

/// Opens a pool. Does not wait for the database: a replica starts and reports not-ready
/// while PostgreSQL is down, instead of crash-looping.
pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let opts: PgConnectOptions = url.parse()?;
    let opts = opts.application_name(&settings.application_name);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(opts))
}

/// Applies pending migrations. Safe to call from several replicas at once: sqlx takes an
/// advisory lock around the run.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Creates database `name` on the server behind `admin_url` unless it exists.
/// `name` must be a plain identifier (it is checked, then quoted).
pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    anyhow::ensure!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {name:?} must be letters, digits and underscores"
    );
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

/// Whether an sqlx error means "the database is not reachable right now" rather than
/// "this query is wrong".
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
        // 08xxx connection exceptions, 53300 too many connections.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    }
}
