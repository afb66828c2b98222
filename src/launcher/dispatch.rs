//! The dispatcher loop of one replica: claim, hold, send at the due instant, record.
//!
//! Claimed runs are **held** until their due time (a claim reaches up to the arm window
//! ahead, so the database work of a burst is done before its instant), then each waits for
//! one of `SCHEDULER_LAUNCH_CONCURRENCY` launch slots and is sent. A held run is ours
//! while its lease lasts; the lease was set from its due time, and the keeper renews it in
//! batches while the run waits (for its instant, or behind a slow Executor), so a run
//! waiting for a launch slot is never reclaimed by another replica and sent twice. A run is
//! only sent while its lease has at least the Executor timeout left; one whose renewal
//! failed (the database was unreachable, or another replica reclaimed it) is dropped
//! unsent and left to the replica that reclaims it.
//!
//! Due times come from the database clock; the replica turns them into local instants
//! measured from the end of the claim, so a run is never sent before its due time
//! whatever the replica's wall clock says.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use opentelemetry::KeyValue;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::Channel;

use super::{
    LaunchSettings,
    claim::{Claimed, claim},
    dags::DagCache,
    executor::ExecutorClient,
    maintenance::{expire_runs, until_next},
    record::{self, Recorded},
    send::launch_one,
};
use crate::{
    db::{self, BatchPlan},
    telemetry::Metrics,
};

/// How often held runs' leases are checked for renewal (a lease has seconds to spare).
const RENEW_EVERY: Duration = Duration::from_millis(250);

/// Claims a notification may cause, at most one per this interval (per replica).
const MIN_CLAIM_INTERVAL: Duration = Duration::from_millis(25);

/// Taken off every lease read from the database before trusting it locally (the time
/// between the database's clock reading and ours).
const LEASE_SAFETY: Duration = Duration::from_millis(250);

/// Runs claimed by this replica and not yet answered, with what their leases allow.
#[derive(Debug, Default)]
struct Held {
    runs: Mutex<HashMap<Uuid, HeldRun>>,
    len: AtomicUsize,
}

#[derive(Debug)]
struct HeldRun {
    attempt: i32,
    /// Until when the run is ours, in local time.
    lease_end: Instant,
    /// Sent (or being sent): its lease no longer matters to us.
    sent: bool,
    /// A renewal found it no longer ours.
    lost: bool,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HeldRun>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn insert(&self, run_id: Uuid, attempt: i32, lease_end: Instant) {
        let mut runs = self.lock();
        runs.insert(
            run_id,
            HeldRun {
                attempt,
                lease_end,
                sent: false,
                lost: false,
            },
        );
        self.len.store(runs.len(), Ordering::Release);
    }

    fn remove(&self, run_id: Uuid) {
        let mut runs = self.lock();
        runs.remove(&run_id);
        self.len.store(runs.len(), Ordering::Release);
    }

    /// Marks the run as being sent if its lease still covers `need`; `false`: drop it.
    fn take_for_sending(&self, run_id: Uuid, need: Duration) -> bool {
        let mut runs = self.lock();
        match runs.get_mut(&run_id) {
            Some(r) if !r.lost && r.lease_end.saturating_duration_since(Instant::now()) >= need => {
                r.sent = true;
                true
            }
            _ => false,
        }
    }

    /// Unsent runs whose lease ends within `within`.
    fn expiring(&self, within: Duration) -> (Vec<Uuid>, Vec<i32>) {
        let limit = Instant::now() + within;
        self.lock()
            .iter()
            .filter(|(_, r)| !r.sent && !r.lost && r.lease_end < limit)
            .map(|(id, r)| (*id, r.attempt))
            .unzip()
    }

    /// Applies a renewal: the runs in `renewed` are ours until their new lease end; the
    /// other runs of `asked` are lost.
    fn renewed(&self, asked: &[Uuid], renewed: &HashMap<Uuid, Instant>) {
        let mut runs = self.lock();
        for id in asked {
            if let Some(r) = runs.get_mut(id) {
                match renewed.get(id) {
                    Some(end) => r.lease_end = *end,
                    None => r.lost = true,
                }
            }
        }
    }
}

/// Renews the leases of held runs (`$1` run ids, `$2` their `run_id/attempt` keys, `$3` the
/// lease in ms, `$4` this node): selected by key, never by joining the batch to `runs` (see
/// [`db::BatchPlan`]).
pub const RENEW: &str = "update runs r set lease_until = greatest(coalesce(r.retry_at, r.fire_at), now()) \
      + make_interval(secs => $3::float8 / 1000), updated_at = now() \
    where r.run_id = any($1::uuid[]) and coalesce(r.status, '') = 'launching' and r.launched_by = $4 \
      and (r.run_id::text || '/' || r.attempt::text) = any($2::text[]) \
    returning r.run_id, r.lease_until, now()";

/// (run, its new lease end, the database clock)
type Renewed = (Uuid, DateTime<Utc>, DateTime<Utc>);

async fn renew(
    pool: &PgPool,
    settings: &LaunchSettings,
    ids: &[Uuid],
    attempts: &[i32],
) -> Result<Vec<Renewed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    db::plan_batch(&mut tx, BatchPlan::KeyLookups).await?;
    let rows = sqlx::query_as(RENEW)
        .bind(ids)
        .bind(db::run_keys(ids.iter().zip(attempts.iter().copied())))
        .bind(settings.lease_ms())
        .bind(&settings.node_id)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Renews the leases of held runs that would run out within a renewal margin.
async fn renew_leases(pool: &PgPool, settings: &LaunchSettings, held: &Held) {
    let (ids, attempts) = held.expiring(settings.executor_timeout + Duration::from_secs(3));
    if ids.is_empty() {
        return;
    }
    let started = Instant::now();
    let rows = renew(pool, settings, &ids, &attempts).await;
    match rows {
        Ok(rows) => {
            let renewed: HashMap<Uuid, Instant> = rows
                .into_iter()
                .map(|(id, until, now)| (id, local_instant(started, now, until) - LEASE_SAFETY))
                .collect();
            if renewed.len() < ids.len() {
                tracing::warn!(
                    lost = ids.len() - renewed.len(),
                    "claimed runs are no longer ours (reclaimed); they will not be sent from here"
                );
            }
            held.renewed(&ids, &renewed);
        }
        // The runs keep their current lease; if it runs out before a renewal succeeds,
        // they are not sent from here.
        Err(e) => tracing::warn!(error = %e, runs = ids.len(), "renewing launch leases failed"),
    }
}

/// The local instant of the database time `at`, given that the database read `db_now`
/// no earlier than `anchor`.
fn local_instant(anchor: Instant, db_now: DateTime<Utc>, at: DateTime<Utc>) -> Instant {
    match (at - db_now).to_std() {
        Ok(ahead) => anchor + ahead,
        Err(_) => anchor
            .checked_sub((db_now - at).to_std().unwrap_or_default())
            .unwrap_or(anchor),
    }
}

/// Everything a send task needs.
struct Sender {
    client: Arc<ExecutorClient>,
    dags: Arc<DagCache>,
    /// For DAGs evicted between claim and send.
    pool: PgPool,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    held: Arc<Held>,
    finished: Arc<Notify>,
    outcomes: mpsc::UnboundedSender<Recorded>,
    /// Lease a run must have left to be sent.
    need: Duration,
}

impl Sender {
    /// Holds `run` until `send_at`, waits for a launch slot, and sends it if it is still
    /// ours.
    async fn send(self: Arc<Self>, run: Claimed, send_at: Instant) {
        tokio::time::sleep_until(send_at.into()).await;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        if self.held.take_for_sending(run.run_id, self.need) {
            let outcome =
                launch_one(&self.client, &self.dags, &self.pool, &self.metrics, &run).await;
            let _ = self.outcomes.send(Recorded {
                run_id: run.run_id,
                attempt: run.attempt,
                outcome,
            });
        } else {
            tracing::warn!(run_id = %run.run_id, "not sending a run whose lease is over; another replica reclaims it");
        }
        drop(permit);
        self.held.remove(run.run_id);
        self.finished.notify_one();
    }
}

/// The dispatcher loop of one replica. Stops claiming at `shutdown`, then sends the runs
/// it holds and writes their outcomes.
pub async fn run(
    pool: PgPool,
    client: Arc<ExecutorClient>,
    settings: LaunchSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let held = Arc::new(Held::default());
    let finished = Arc::new(Notify::new());
    let (outcomes, rx) = mpsc::unbounded_channel::<Recorded>();
    let recorder = tokio::spawn(record::run(
        pool.clone(),
        settings.clone(),
        metrics.clone(),
        rx,
    ));
    let sender = Arc::new(Sender {
        client,
        dags: Arc::new(DagCache::new(settings.dag_cache_bytes)),
        pool: pool.clone(),
        metrics: metrics.clone(),
        permits: Arc::new(Semaphore::new(settings.concurrency)),
        held: held.clone(),
        finished: finished.clone(),
        outcomes,
        need: settings.executor_timeout + Duration::from_millis(500),
    });
    // Runs in hand at most: a batch waiting for slots while the slots are busy.
    let max_held = settings.concurrency + usize::try_from(settings.batch).unwrap_or(0);

    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut l) => l.listen(Channel::Runs.name()).await.ok().map(|()| l),
        Err(_) => None,
    };
    let mut last_expiry = Instant::now() - Duration::from_secs(10);
    let mut last_reclaim = Instant::now() - Duration::from_secs(10);
    let mut last_renewal = Instant::now();
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut busy = false;
    let mut expecting = true;
    while !shutdown.is_cancelled() {
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = expire_runs(&pool, &metrics).await {
                tracing::warn!(error = %e, "expiring timed-out runs failed");
            }
            last_expiry = Instant::now();
        }
        if last_renewal.elapsed() >= RENEW_EVERY {
            renew_leases(&pool, &settings, &held).await;
            last_renewal = Instant::now();
        }
        // Claim a whole batch even while launches are in flight: a burst is claimed in a
        // few large transactions, not in many small ones sized by the free slots.
        let in_hand = held.len();
        let room = i64::try_from(max_held.saturating_sub(in_hand))
            .unwrap_or(0)
            .min(settings.batch);
        if in_hand > 0 && room < settings.batch / 2 {
            // Enough in hand: let it drain to half a batch of room before claiming again
            // (waking at least every half second to renew leases).
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = finished.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        // Idle passes are not traced: a span only when work is expected (the last pass
        // claimed something, or the wait ended for a known due time or a notification,
        // not at the idle poll).
        let claim_span = if busy || expecting {
            tracing::info_span!("claim_batch", node_id = %settings.node_id, runs = tracing::field::Empty)
        } else {
            tracing::Span::none()
        };
        let reclaim = last_reclaim.elapsed() >= Duration::from_secs(1);
        if reclaim {
            last_reclaim = Instant::now();
        }
        let anchor = Instant::now();
        let claimed = match claim(&pool, &settings, room, reclaim)
            .instrument(claim_span.clone())
            .await
        {
            Ok(c) => {
                backoff.reset();
                metrics.runs_skipped_overlap.add(c.skipped, &[]);
                metrics.runs_failed_launch.add(
                    c.exhausted,
                    &[KeyValue::new("reason", "attempts_exhausted")],
                );
                c
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "claiming runs failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        let claimed_at = Instant::now();
        claim_span.record("runs", claimed.runs.len());
        busy = !claimed.runs.is_empty();
        let full = room > 0 && i64::try_from(claimed.runs.len()).unwrap_or(0) >= room;
        if !claimed.runs.is_empty() {
            let loaded = sender
                .dags
                .load_missing(
                    &pool,
                    claimed
                        .runs
                        .iter()
                        .map(|r| (r.workflow_id.as_str(), r.version)),
                )
                .await;
            if let Err(e) = loaded {
                // Not "workflow not found": the runs stay claimed and are reclaimed when
                // their lease runs out.
                tracing::warn!(error = %e, "loading DAGs failed; the runs will be retried after their lease");
                continue;
            }
            for run in claimed.runs {
                let lease_end = local_instant(anchor, claimed.db_now, run.lease_until)
                    .checked_sub(LEASE_SAFETY)
                    .unwrap_or(anchor);
                // Measured from the database's clock at the end of the claim, read before
                // `claimed_at`: never before the due time, and late by no more than the
                // commit's round trip.
                let send_at = local_instant(claimed_at, claimed.db_clock, run.due_at);
                held.insert(run.run_id, run.attempt, lease_end);
                tokio::spawn(sender.clone().send(run, send_at));
            }
        }
        if full {
            continue;
        }
        if room == 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = finished.notified() => {}
            }
            continue;
        }
        let cap = if claimed.worker_enabled {
            settings.idle_poll
        } else {
            Duration::from_secs(1)
        };
        let sleep = until_next(&pool, settings.arm_window, cap)
            .await
            .unwrap_or(cap);
        expecting = sleep < cap;
        if sleep.is_zero() {
            continue;
        }
        match listener.as_mut() {
            Some(l) => tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(sleep) => {}
                n = l.recv() => match n {
                    Ok(_) => {
                        expecting = true;
                        // Every completion batch and tick batch of the fleet notifies: take
                        // the ones already here together, and claim at most every
                        // MIN_CLAIM_INTERVAL on their account.
                        while l.next_buffered().is_some() {}
                        let wait = MIN_CLAIM_INTERVAL.saturating_sub(anchor.elapsed());
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                    Err(_) => listener = None,
                },
            },
            None => tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(sleep) => {}
            },
        }
    }
    // Drain: send the runs in hand (armed ones within the arm window; each launch bounded
    // by the Executor timeout), renewing their leases while they wait.
    while held.len() > 0 {
        renew_leases(&pool, &settings, &held).await;
        let _ = tokio::time::timeout(Duration::from_millis(100), finished.notified()).await;
    }
    drop(sender);
    let _ = recorder.await;
}
