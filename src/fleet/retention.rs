//! Retention: finished runs are removed once they ended longer ago than
//! `SCHEDULER_RUN_RETENTION` (default 30 days; `0` keeps them forever), continuously, in
//! small batches of one short transaction each. A run in flight is never removed, however
//! old.
//!
//! # Batched deletes, not partitions
//!
//! Partitioning `runs` by `scheduled_for` and dropping old partitions would make removal
//! almost free of vacuum work, but it does not fit this table:
//!
//! - **Uniqueness.** A partitioned table enforces a unique index only if it includes the
//!   partition key. Three of ours do not: the primary key `run_id` (looked up by
//!   `GET /runs/{id}`, the completion report and every launcher update; with partitions a
//!   lookup probes every partition, since an id does not tell its tick), the clients'
//!   idempotency keys `runs_client_key_idx (user_id, client_key)` (unique across the
//!   table: a user's key must give the same run whenever it is sent again), and
//!   `runs_exclusive_slot_idx (schedule_id) where exclusive_slot` (at most one exclusive run
//!   of a schedule in flight: the overlap invariant, held by the database even when the
//!   Rust code is wrong). Each would only be unique per partition.
//! - **The wrong key.** Retention is about when a run *ended*, not about its tick. Backfill
//!   writes runs for past ticks, and revived ticks and queued runs stay in flight in old
//!   partitions, so a partition can only be dropped once every row in it is finished and
//!   old: the dropper has to look at every row anyway, and one straggler pins a partition.
//! - **Upkeep.** Partitions must be created ahead of the ticks (or a default partition
//!   catches the rest and gets in the way of new ones), and converting the existing table
//!   rewrites it.
//!
//! Deletes keep every constraint global. Their price: each removed row is a dead tuple for
//! (auto)vacuum to reclaim and a WAL record; in the steady state that is one more dead tuple
//! per run, beside those its status updates (`pending` → `launching` → `running` → end)
//! already leave. Batches bound what one transaction locks and writes.
//!
//! # The walk
//!
//! Run ids are UUID v7: their first 48 bits are the creation time in milliseconds, so the
//! primary key orders runs by creation and no other index is needed. A run created after
//! `now() - retention` cannot have ended before it, so the walk stops at the id of that
//! instant (computed with the database's clock, like every "now" here). One batch
//! ([`DELETE_BATCH`]):
//!
//! 1. reads the next `batch` ids ([`BATCH`]) after the walk's cursor along the primary key,
//!    below that bound;
//! 2. deletes those that are terminal (not `pending`, `launching` or `running`) and ended
//!    (`finished_at`) before `now() - retention`. The others stay, for a later pass.
//!
//! So a batch reads at most `batch` rows, whatever the size of the history, and commits at
//! once (under a statement and a lock timeout). A batch that reads fewer than `batch` rows
//! ends the pass; the next pass starts, after [`RetentionSettings::idle`], at the first run
//! the previous one kept (or where it ended), so settled history is not walked again. A
//! run whose id is older than its row by more than the retention (written by a replica
//! whose clock is that far behind the database's) would sit below that point: at every new
//! leadership term, and every [`FULL_WALK_EVERY`], the walk starts from the beginning.
//!
//! # Who deletes
//!
//! Only the leader ([`NodeState::is_leader`], checked before every batch), on the pool:
//! never on the leader's lock session, whose round trips keep the lease. If two replicas
//! briefly both believe they lead, both delete the same kind of rows; a row is deleted once
//! (the second delete waits for the first's row lock, then finds it gone), so nothing
//! worse than wasted work happens. Retention ignores the worker switch: `/worker/stop`
//! stops ticks and launches, not housekeeping.
//!
//! # Failure behaviour
//!
//! A failed batch rolls back whole, is logged, and is retried from the same cursor after a
//! backoff (1 s, doubling up to 1 min). Between batches the task sleeps at least as long as
//! the last batch took, so it never takes more than half of one connection's time, even
//! while it works off a long backlog (e.g. when retention is first switched on). Shutdown
//! is noticed between batches and during every sleep. Removed runs are counted in
//! `scheduler_runs_deleted_total`.
//!
//! Removing a run removes its tick from the ledger: `GET /runs/{id}` answers 404, the
//! schedule's listing ends earlier, and a deleted schedule whose runs are all gone is
//! unknown. The leader never writes a tick behind a schedule's next due tick, so a removed
//! tick does not fire again; only an explicit backfill over its range creates it anew.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::leader::NodeState;
use crate::{config::Config, telemetry::Metrics};

/// Runs one batch reads (and so deletes) at most.
pub const BATCH: i64 = 5000;

/// How often the walk starts again from the beginning of the primary key.
pub const FULL_WALK_EVERY: Duration = Duration::from_secs(3600);

/// How often a replica that does not lead checks whether it does now.
const LEADER_POLL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// One batch: `$1` the cursor (exclusive), `$2` the retention (an interval), `$3` the
/// batch size. Returns how many ids it read and deleted, the last id read, and the first
/// id read and kept. The ids are read first (an array, at most `$3` of them along the
/// primary key), so the delete looks up exactly those and nothing else.
pub const DELETE_BATCH: &str = "\
with scanned as (
    select array(
        select run_id from runs
        where run_id > $1
          and run_id < (lpad(to_hex(floor(extract(epoch from now() - $2::interval) * 1000)::bigint),
                             12, '0') || '00000000000000000000')::uuid
        order by run_id
        limit $3
    ) as ids
),
deleted as (
    delete from runs
    where run_id = any((select ids from scanned)::uuid[])
      and status not in ('pending', 'launching', 'running')
      and coalesce(finished_at, updated_at) < now() - $2::interval
    returning run_id
)
select cardinality(ids)::int8 as scanned,
       (select count(*) from deleted) as deleted,
       ids[cardinality(ids)] as last_scanned,
       (select id from unnest(ids) as id
        where id not in (select run_id from deleted)
        order by id limit 1) as first_kept
from scanned";

/// Retention settings from configuration.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// How long a finished run is kept after it ended; `None`: forever.
    pub retention: Option<Duration>,
    /// Runs one batch reads at most.
    pub batch: i64,
    /// Least sleep between two batches of a pass (at least the last batch's duration).
    pub pause: Duration,
    /// Sleep between passes.
    pub idle: Duration,
    /// Statement timeout of one batch.
    pub batch_timeout: Duration,
}

impl RetentionSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            retention: config.run_retention,
            batch: BATCH,
            pause: Duration::from_millis(100),
            idle: Duration::from_secs(30),
            batch_timeout: Duration::from_secs(30),
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Runs read.
    pub scanned: u64,
    /// Runs deleted.
    pub deleted: u64,
    /// The batch reached the end of the expired range: the pass is over.
    pub pass_done: bool,
}

#[derive(Debug, sqlx::FromRow)]
struct BatchRow {
    scanned: i64,
    deleted: i64,
    last_scanned: Option<Uuid>,
    first_kept: Option<Uuid>,
}

/// The walk over the expired part of the primary key (see the module docs).
#[derive(Debug)]
pub struct Walker {
    retention: Duration,
    batch: i64,
    batch_timeout: Duration,
    /// Ids up to here were read in this pass.
    cursor: Uuid,
    /// The first run this pass kept: the next pass starts there.
    first_kept: Option<Uuid>,
    /// When the walk last started from the beginning.
    full_walk_at: Instant,
}

impl Walker {
    pub fn new(retention: Duration, batch: i64) -> Self {
        Self {
            retention,
            batch: batch.max(1),
            batch_timeout: Duration::from_secs(30),
            cursor: Uuid::nil(),
            first_kept: None,
            full_walk_at: Instant::now(),
        }
    }

    /// Starts the next pass from the beginning of the primary key.
    pub fn restart(&mut self) {
        self.cursor = Uuid::nil();
        self.first_kept = None;
        self.full_walk_at = Instant::now();
    }

    /// Runs one batch in its own transaction.
    pub async fn batch(&mut self, pool: &PgPool) -> Result<BatchOutcome, sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "select set_config('statement_timeout', $1, true), \
                    set_config('lock_timeout', $2, true)",
        )
        .bind(format!("{}ms", self.batch_timeout.as_millis()))
        .bind(format!("{}ms", (self.batch_timeout / 4).as_millis()))
        .execute(&mut *tx)
        .await?;
        let row: BatchRow = sqlx::query_as(DELETE_BATCH)
            .bind(self.cursor)
            .bind(self.retention)
            .bind(self.batch)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;

        if self.first_kept.is_none() {
            self.first_kept = row.first_kept;
        }
        let pass_done = row.scanned < self.batch;
        let last = row.last_scanned.unwrap_or(self.cursor);
        if !pass_done {
            self.cursor = last;
        } else if self.full_walk_at.elapsed() >= FULL_WALK_EVERY {
            self.restart();
        } else {
            // The cursor is exclusive: start just before the first run kept.
            self.cursor = match self.first_kept.take() {
                Some(kept) => Uuid::from_u128(kept.as_u128().saturating_sub(1)),
                None => last,
            };
        }
        Ok(BatchOutcome {
            scanned: u64::try_from(row.scanned).unwrap_or(0),
            deleted: u64::try_from(row.deleted).unwrap_or(0),
            pass_done,
        })
    }

    /// Batches until the pass is over, without pausing; returns how many runs it deleted.
    /// (The background task does the same with pauses and leadership checks in between.)
    pub async fn pass(&mut self, pool: &PgPool) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        loop {
            let outcome = self.batch(pool).await?;
            deleted += outcome.deleted;
            if outcome.pass_done {
                return Ok(deleted);
            }
        }
    }
}

/// The retention task: while this replica leads, walks and deletes; stops on `shutdown`.
/// Returns at once when retention is off (`SCHEDULER_RUN_RETENTION=0`).
pub async fn run(
    pool: PgPool,
    settings: RetentionSettings,
    node: Arc<NodeState>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    metrics.runs_deleted.add(0, &[]);
    let Some(retention) = settings.retention else {
        tracing::info!("SCHEDULER_RUN_RETENTION is 0: finished runs are kept forever");
        return;
    };
    let mut walker = Walker::new(retention, settings.batch);
    walker.batch_timeout = settings.batch_timeout;
    let mut leading = false;
    let mut backoff = crate::retry::Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut pass_deleted = 0;
    loop {
        let wait = if !node.is_leader() {
            leading = false;
            LEADER_POLL
        } else {
            if !leading {
                leading = true;
                walker.restart();
            }
            let started = Instant::now();
            match walker.batch(&pool).await {
                Ok(outcome) => {
                    backoff.reset();
                    metrics.runs_deleted.add(outcome.deleted, &[]);
                    pass_deleted += outcome.deleted;
                    if outcome.pass_done {
                        tracing::debug!(deleted = pass_deleted, ?retention, "retention pass done");
                        pass_deleted = 0;
                        settings.idle
                    } else {
                        settings.pause.max(started.elapsed())
                    }
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?wait, "retention batch failed");
                    wait
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
