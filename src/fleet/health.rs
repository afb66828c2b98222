//! The unhealthy-schedules gauge (`scheduler_schedules_unhealthy{reason="late"|"failing"}`):
//! how many schedules are `late` or `failing` (see [`crate::schedules::health`]).
//!
//! Health is computed when read, so counting it costs what it scans. The leader surveys
//! every schedule in id order, [`CHUNK`] schedules a second, and publishes the counts
//! when a survey completes: at most one chunk of work per step whatever the number of
//! schedules (about 20 ms of database time per chunk, measured with 100,000 schedules and
//! 6 million runs), and a full survey every `⌈schedules / CHUNK⌉` seconds (5 s at 2,000
//! schedules, 250 s at 100,000). Each step starts [`OFFSET`] into a second of the
//! database clock's whole seconds as this replica sees them, away from the burst of ticks
//! due on the whole second (a chunk of 2,000 every 5 s, landing on a burst now and then,
//! raised the p99 fire lag of the 1,000 fires/s load). A replica that does not lead reports 0, so the fleet's
//! figure is the max (or sum) over replicas; a new leader reports after its first survey.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::leader::NodeState;
use crate::{
    schedules::{ScheduleHealth, health},
    telemetry::Metrics,
};

/// How often the leader surveys one chunk.
pub const EVERY: Duration = Duration::from_secs(1);
/// Where in each second a step starts.
pub const OFFSET: Duration = Duration::from_millis(400);
/// Schedules surveyed per step.
pub const CHUNK: i64 = 400;

/// Counts of a survey in progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub late: u64,
    pub failing: u64,
}

/// A survey over every schedule, one chunk per [`Survey::step`].
#[derive(Debug, Default)]
pub struct Survey {
    after: Option<String>,
    counts: Counts,
}

impl Survey {
    /// Surveys the next chunk; returns the counts when this completes a survey (and starts
    /// the next one from the first schedule).
    pub async fn step(
        &mut self,
        pool: &PgPool,
        chunk: i64,
        late_after: Duration,
    ) -> Result<Option<Counts>, sqlx::Error> {
        let rows = health::survey(pool, self.after.as_deref(), chunk, late_after).await?;
        for (_, h) in &rows {
            match h {
                ScheduleHealth::Late => self.counts.late += 1,
                ScheduleHealth::Failing => self.counts.failing += 1,
                ScheduleHealth::Ok => {}
            }
        }
        if (rows.len() as i64) < chunk {
            self.after = None;
            return Ok(Some(std::mem::take(&mut self.counts)));
        }
        self.after = rows.last().map(|(id, _)| id.clone());
        Ok(None)
    }
}

/// How long until [`OFFSET`] into the next second of [`EVERY`] (by this machine's clock,
/// which the fleet's NTP keeps near the database's).
fn until_next_step() -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into = Duration::from_nanos(u64::try_from(now.as_nanos() % EVERY.as_nanos()).unwrap_or(0));
    if into < OFFSET {
        OFFSET - into
    } else {
        EVERY - into + OFFSET
    }
}

/// Reports the gauge while this replica leads, until `shutdown`.
pub async fn run(
    pool: PgPool,
    node: Arc<NodeState>,
    metrics: Arc<Metrics>,
    late_after: Duration,
    shutdown: CancellationToken,
) {
    let mut survey = Survey::default();
    let mut published = Counts::default();
    loop {
        if node.is_leader() {
            match survey.step(&pool, CHUNK, late_after).await {
                Ok(Some(counts)) => published = counts,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "surveying schedule health failed"),
            }
        } else {
            survey = Survey::default();
            published = Counts::default();
        }
        metrics.record_unhealthy(published.late, published.failing);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(until_next_step()) => {}
        }
    }
}
