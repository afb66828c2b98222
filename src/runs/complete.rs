//! The Executor's completion reports, written in batches.
//!
//! Every run ends with a report (`POST /runs/{id}/complete`), so at 1,000 fires/s a replica
//! takes 1,000 reports a second. Each request hands its report to one writer task per
//! replica and waits for the answer; the writer takes every report queued meanwhile and
//! writes them in one transaction (one `update ... from unnest(...)`, one read back, at
//! most one NOTIFY, and that only when a freed slot lets a waiting run go), so the cost
//! per report falls as the load rises and a quiet replica still answers at once (no
//! batching delay).
//!
//! A report ends a run that is `launching` or `running`, or `pending` with an attempt
//! behind it (its launch was accepted but the answer was lost, and it waits to retry): the
//! Executor ran it. Reporting the same end again changes nothing; a different end for a
//! run that is over is a conflict.

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Run, RunStatus, store::COLUMNS};
use crate::db::{self, BatchPlan, Channel};

/// Reports one write takes at most.
const MAX_BATCH: usize = 1024;

/// What became of a report.
#[derive(Debug)]
pub enum Completed {
    /// The run ended as reported.
    Ended(Run),
    /// The run had already ended this way: nothing changed.
    Already(Run),
    /// The run is in another state that the report cannot change.
    Conflict(Run),
    NotFound,
}

struct Report {
    run_id: Uuid,
    status: RunStatus,
    error: Option<String>,
    reply: oneshot::Sender<Result<Completed, sqlx::Error>>,
}

/// A handle to this replica's completion writer (cheap to clone).
#[derive(Clone)]
pub struct Completions {
    tx: mpsc::Sender<Report>,
}

impl std::fmt::Debug for Completions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completions").finish_non_exhaustive()
    }
}

impl Completions {
    /// Starts the writer; it stops when every handle is dropped. `arm_window`: the
    /// dispatchers' (a report wakes them when a run waiting for its schedule's slot is due
    /// within it).
    pub fn start(pool: PgPool, arm_window: std::time::Duration) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(pool, rx, arm_window));
        Self { tx }
    }

    /// Ends `run_id` as `status` (`succeeded` or `failed`), waiting for the write.
    pub async fn complete(
        &self,
        run_id: Uuid,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<Completed, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Report {
                run_id,
                status,
                error,
                reply,
            })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// How long a batch under load waits for more reports.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

fn drain(rx: &mut mpsc::Receiver<Report>, batch: &mut Vec<Report>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

async fn writer(pool: PgPool, mut rx: mpsc::Receiver<Report>, arm_window: std::time::Duration) {
    let mut carried: Vec<Report> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            match rx.recv().await {
                Some(r) => batch.push(r),
                None => return,
            }
        }
        drain(&mut rx, &mut batch);
        if batch.len() > 1 && batch.len() < MAX_BATCH {
            // Reports are arriving together: give the rest of this wave a moment to join
            // (a lone report is written at once).
            tokio::time::sleep(LINGER).await;
            drain(&mut rx, &mut batch);
        }
        // Two reports for one run in one statement would race each other: the later one
        // waits for the next batch, where it sees the first one's result.
        let mut seen = HashSet::new();
        let (now, later): (Vec<Report>, Vec<Report>) =
            batch.into_iter().partition(|r| seen.insert(r.run_id));
        carried = later;
        match write(&pool, &now, arm_window).await {
            Ok(results) => {
                for (report, result) in now.into_iter().zip(results) {
                    let _ = report.reply.send(Ok(result));
                }
            }
            Err(e) => {
                // The write failed as a whole (the database is unreachable or restarting):
                // every reporter hears "unavailable" and the Executor reports again.
                tracing::warn!(error = %e, reports = now.len(), "writing completion reports failed");
                let message = e.to_string();
                for report in now {
                    let _ = report
                        .reply
                        .send(Err(sqlx::Error::Io(std::io::Error::other(message.clone()))));
                }
            }
        }
    }
}

/// Ends a batch of runs (`$1` ids, `$2` statuses, `$3` errors; `$4` the arm window in
/// seconds) and returns each ended run with `wake`: a run of its `skip` or `queue` schedule
/// waits for the slot it freed. Rows are selected by key (`run_id = any($1)`, see
/// [`db::BatchPlan`]); built once, with the run columns.
static END_RUNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let returning = COLUMNS
        .split(',')
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "update runs r set status = u.status, last_error = u.error, finished_at = now(), \
           launched_at = coalesce(r.launched_at, now()), exclusive_slot = false, \
           lease_until = null, retry_at = null, updated_at = now() \
         from unnest($1::uuid[], $2::text[], $3::text[]) as u(run_id, status, error) \
         where r.run_id = u.run_id and r.run_id = any($1) \
           and (coalesce(r.status, '') in ('launching', 'running') \
             or (coalesce(r.status, '') = 'pending' and r.attempt > 0)) \
         returning {returning}, \
           exists (select 1 from schedules s \
             where s.schedule_id = r.schedule_id and s.overlap_policy <> 'allow') \
           and exists (select 1 from runs n where n.schedule_id = r.schedule_id \
             and n.status = 'pending' and n.scheduled_for <= now() + make_interval(secs => $4)) \
           as wake"
    )
});

/// Writes one batch (run ids distinct) and reads every run back.
async fn write(
    pool: &PgPool,
    batch: &[Report],
    arm_window: std::time::Duration,
) -> Result<Vec<Completed>, sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|r| r.run_id).collect();
    let statuses: Vec<RunStatus> = batch.iter().map(|r| r.status).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|r| r.error.as_deref()).collect();
    let mut tx = pool.begin().await?;
    db::plan_batch(&mut tx, BatchPlan::KeyLookups).await?;
    let ended: Vec<Ended> = sqlx::query_as(&END_RUNS)
        .bind(&ids)
        .bind(&statuses)
        .bind(&errors)
        .bind(arm_window.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
    if ended.iter().any(|e| e.wake) {
        // A `skip` or `queue` schedule's slot is free and its next run is due within the
        // arm window (a queued run: already due): wake the dispatchers to arm or launch it.
        // Other ends wake no one.
        db::notify(&mut *tx, Channel::Runs, "").await?;
    }
    let mut runs: HashMap<Uuid, (Run, bool)> = ended
        .into_iter()
        .map(|e| (e.run.run_id, (e.run, true)))
        .collect();
    // The reports that ended nothing (repeats, conflicts, unknown runs): read them back.
    let others: Vec<Uuid> = ids
        .iter()
        .filter(|id| !runs.contains_key(id))
        .copied()
        .collect();
    if !others.is_empty() {
        let rows: Vec<Run> = sqlx::query_as(&format!(
            "select {COLUMNS} from runs where run_id = any($1)"
        ))
        .bind(&others)
        .fetch_all(&mut *tx)
        .await?;
        runs.extend(rows.into_iter().map(|r| (r.run_id, (r, false))));
    }
    tx.commit().await?;
    Ok(batch
        .iter()
        .map(|report| match runs.remove(&report.run_id) {
            None => Completed::NotFound,
            Some((run, true)) => Completed::Ended(run),
            Some((run, false)) if run.status == report.status => Completed::Already(run),
            Some((run, false)) => Completed::Conflict(run),
        })
        .collect())
}

/// A run a report ended, and whether a run of its schedule waits for the slot it freed.
#[derive(sqlx::FromRow)]
struct Ended {
    #[sqlx(flatten)]
    run: Run,
    wake: bool,
}
