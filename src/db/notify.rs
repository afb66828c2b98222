//! The notification channels (`LISTEN`/`NOTIFY`) the replicas wake each other with: the
//! one home of their names and of the statement that sends them.
//!
//! A notification is a hint, never the only way work is found: every listener also polls,
//! so a lost notification costs latency, not a tick. Sent inside a transaction, it is
//! delivered at commit (and not at all on rollback).

use sqlx::{Executor, Postgres};

/// Who listens for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Schedule changes (upsert, pause, delete, the worker switch): the leader listens,
    /// so a change is planned at once. The payload is the schedule id, or empty.
    Schedules,
    /// Runs that may be launchable now (written by the ticker, a manual launch, a freed
    /// slot): every replica's dispatcher listens.
    Runs,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Schedules => "scheduler_schedules",
            Channel::Runs => "scheduler_runs",
        }
    }
}

/// `pg_notify(channel, payload)` on `conn` (a pool, a connection or a transaction).
pub async fn notify<'c, E>(conn: E, channel: Channel, payload: &str) -> Result<(), sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
{
    sqlx::query("select pg_notify($1, $2)")
        .bind(channel.name())
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}
