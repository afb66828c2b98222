//! The database: connection pool, embedded migrations, and the embedded default cluster.
//!
//! PostgreSQL is the only state. Every invariant that can be a constraint is one (see
//! `migrations/`), so the Rust code cannot break them even when it is wrong.

pub mod embedded;

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// The schema, compiled into the binary. Migrations are never edited once released.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
