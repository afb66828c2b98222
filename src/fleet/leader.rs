//! Leader election and fencing.
//!
//! One replica of a cluster (replicas sharing `SCHEDULER_CLUSTER_NAME`) is the leader: it
//! alone turns due schedules into runs. Leadership is a PostgreSQL session-level advisory
//! lock, keyed by a hash of the cluster name, held on a **dedicated connection** (the
//! "lock session") outside the pool.
//!
//! # States
//!
//! ```text
//!            connect + configure session
//!  (start) ───────────────────────────────▶ Waiting ── pg_try_advisory_lock true ──▶ Leading
//!     ▲                                       │  ▲                                     │
//!     │ backoff (200 ms … 5 s)                │  └──── session lost / deposed ◀────────┤
//!     └──────── connection error ◀────────────┘                                        │
//!                                       shutdown: finish batch, unlock, close ◀────────┘
//! ```
//!
//! - **Waiting**: the follower tries `pg_try_advisory_lock(key)` every [`FOLLOWER_POLL`]
//!   (100 ms), so a released lock is taken within that. It does not block in
//!   `pg_advisory_lock`: a statement waiting on a lock keeps the snapshot it started with,
//!   and a follower waits for hours, so PostgreSQL could not vacuum any row that died in
//!   the whole database meanwhile (a fleet of followers pinned the xmin horizon, and the
//!   run queue's dead rows piled up without bound). A follower that dies holds nothing.
//! - **Leading**: on grant, the node increments `fleet_state.leader_epoch` (on the lock
//!   session) and records itself as leader. It then loops: one tick batch
//!   ([`super::ticker::Ticker::batch`], which renews the fence), again at once while
//!   batches come back full, then sleep until the next schedule is due to be looked at, a
//!   `NOTIFY` of a schedule change, the heartbeat interval (lease / 4), or shutdown. Work
//!   of any size is a sequence of short batches: a backlog never outlasts the lease.
//!
//! # Timings
//!
//! The lease (`SCHEDULER_LEADER_LEASE_MS`, default 5 s) is enforced **by PostgreSQL**: the
//! lock session sets `idle_session_timeout` and `idle_in_transaction_session_timeout` to
//! the lease, and TCP keepalives, so a leader that stops talking loses its session, and
//! with it the lock, one lease later. The leader talks at least every lease / 4.
//!
//! # Failure cases
//!
//! - **Leader process killed (SIGKILL), or the machine's network stack closes the socket**:
//!   the server sees the socket close and ends the session at once; the next follower in
//!   the queue is granted the lock within milliseconds.
//! - **Leader frozen (SIGSTOP, a long GC-like pause) or partitioned**: its session goes
//!   idle; after the lease the server ends it and a follower takes over. When the frozen
//!   leader resumes, its next query on the dead session fails and it steps down. It also
//!   steps down without trying when its last successful round trip is older than the
//!   lease (the local trust window).
//! - **Leader shut down (SIGTERM)**: it finishes the batch in hand, unlocks, and closes the
//!   session: a follower takes over at once.
//! - **Database restart or connection loss**: every session ends; all nodes reconnect with
//!   backoff and one wins the lock.
//! - **Two nodes believe they lead** (a deposed leader that has not noticed yet): every
//!   leader write runs on the lock session, inside a transaction that first updates the
//!   `fleet_state` row *where the epoch is its own*. A deposed leader's session is dead (its
//!   writes fail) or its epoch is stale (its transaction finds no row and writes nothing).
//!   Under both sits `UNIQUE (schedule_id, scheduled_for)` with `ON CONFLICT DO NOTHING`:
//!   even a leader that got past both fences could not create a second run for a tick.
//!
//! Session advisory locks need a real session: the leader connection must reach PostgreSQL
//! directly or through a session-mode pooler, never a transaction-mode pooler (PgBouncer
//! `pool_mode=transaction` would hand the lock to whichever client shares the backend).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use super::ticker::{self, TickSettings};
use crate::{db::Channel, telemetry::Metrics};

/// How often a follower tries the leader lock.
pub const FOLLOWER_POLL: Duration = Duration::from_millis(100);

/// What this replica knows about its own role, shared with the API and metrics.
#[derive(Debug)]
pub struct NodeState {
    pub node_id: String,
    pub cluster_name: String,
    pub started_at: DateTime<Utc>,
    is_leader: AtomicBool,
    epoch: AtomicI64,
    last_tick_ms: AtomicI64,
    elections: AtomicU64,
}

impl NodeState {
    pub fn new(node_id: String, cluster_name: String) -> Self {
        Self {
            node_id,
            cluster_name,
            started_at: Utc::now(),
            is_leader: AtomicBool::new(false),
            epoch: AtomicI64::new(0),
            last_tick_ms: AtomicI64::new(0),
            elections: AtomicU64::new(0),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// The epoch this node leads in, if it leads.
    pub fn epoch(&self) -> Option<i64> {
        self.is_leader().then(|| self.epoch.load(Ordering::Acquire))
    }

    /// When this node last finished a tick pass as leader.
    pub fn last_tick(&self) -> Option<DateTime<Utc>> {
        match self.last_tick_ms.load(Ordering::Acquire) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// How many times this node has won an election.
    pub fn elections(&self) -> u64 {
        self.elections.load(Ordering::Acquire)
    }

    fn set_leader(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::Release);
        self.elections.fetch_add(1, Ordering::AcqRel);
        self.is_leader.store(true, Ordering::Release);
    }

    fn clear_leader(&self) {
        self.is_leader.store(false, Ordering::Release);
    }

    fn ticked(&self, at: DateTime<Utc>) {
        self.last_tick_ms
            .store(at.timestamp_millis(), Ordering::Release);
    }
}

/// Election settings.
#[derive(Debug, Clone)]
pub struct ElectionSettings {
    pub cluster_name: String,
    pub node_id: String,
    pub lease: Duration,
    pub worker_autostart: bool,
    pub tick: TickSettings,
}

impl ElectionSettings {
    /// How often the leader talks on its lock session at the least.
    pub fn heartbeat(&self) -> Duration {
        (self.lease / 4).max(Duration::from_millis(100))
    }
}

/// The advisory lock key of a cluster: FNV-1a of a prefixed name, as a signed 64-bit int.
pub fn lock_key(cluster_name: &str) -> i64 {
    let hash = crate::text::fnv1a(&[b"cron-scheduler/leader/", cluster_name.as_bytes()]);
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Opens and configures a lock session: the lease and liveness checks live here.
pub async fn open_lock_session(
    pool: &PgPool,
    settings: &ElectionSettings,
) -> anyhow::Result<PgConnection> {
    let opts = (*pool.connect_options())
        .clone()
        .application_name(&format!("cron-scheduler/{}/leader", settings.node_id));
    let mut conn = opts
        .connect()
        .await
        .context("cannot open the lock session")?;
    let lease_ms = settings.lease.as_millis();
    let keepalive_s = (settings.lease.as_secs() / 3).max(1);
    for stmt in [
        format!("set idle_session_timeout = {lease_ms}"),
        format!("set idle_in_transaction_session_timeout = {lease_ms}"),
        "set client_connection_check_interval = 1000".to_owned(),
        format!("set tcp_keepalives_idle = {keepalive_s}"),
        "set tcp_keepalives_interval = 1".to_owned(),
        "set tcp_keepalives_count = 3".to_owned(),
    ] {
        if let Err(e) = sqlx::query(&stmt).execute(&mut conn).await {
            // Older servers lack some settings; the lease then rests on TCP alone.
            tracing::warn!(error = %e, statement = %stmt, "lock session setting refused");
        }
    }
    Ok(conn)
}

/// Takes part in elections until `shutdown`: waits for the lock, leads while it holds it,
/// and starts over after any failure.
pub async fn run(
    pool: PgPool,
    settings: ElectionSettings,
    state: Arc<NodeState>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    metrics.is_leader.record(0, &[]);
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        match campaign(&pool, &settings, &state, &metrics, &shutdown).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = format!("{e:#}"), ?delay, "election round ended");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One round: connect, wait for the lock, lead until something ends it.
async fn campaign(
    pool: &PgPool,
    settings: &ElectionSettings,
    state: &NodeState,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut conn = open_lock_session(pool, settings).await?;
    let key = lock_key(&settings.cluster_name);
    // Try, and try again every FOLLOWER_POLL: a statement blocked in pg_advisory_lock
    // would hold its snapshot for as long as this node follows, and no dead row of the
    // whole database could be vacuumed meanwhile.
    loop {
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .context("trying the leader lock")?;
        if got {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(FOLLOWER_POLL) => {}
        }
    }

    let epoch = claim_epoch(&mut conn, settings).await?;
    state.set_leader(epoch);
    metrics.is_leader.record(1, &[]);
    metrics.leader_elections.add(1, &[]);
    tracing::info!(epoch, node_id = %settings.node_id, "became leader");
    let result = lead(&mut conn, pool, settings, state, metrics, epoch, shutdown).await;
    state.clear_leader();
    metrics.is_leader.record(0, &[]);
    match &result {
        Ok(()) => {
            // Graceful: hand over at once.
            let _ = sqlx::query(
                "update fleet_state set leader_node = null, updated_at = now() \
                 where cluster_name = $1 and leader_epoch = $2",
            )
            .bind(&settings.cluster_name)
            .bind(epoch)
            .execute(&mut conn)
            .await;
            let _ = sqlx::query("select pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            tracing::info!(epoch, "released leadership");
        }
        Err(e) => tracing::warn!(epoch, error = format!("{e:#}"), "stepped down"),
    }
    result
}

/// Records a new epoch with this node as leader, on the lock session.
async fn claim_epoch(conn: &mut PgConnection, settings: &ElectionSettings) -> anyhow::Result<i64> {
    let mut tx = conn.begin().await?;
    super::state::ensure(&mut tx, &settings.cluster_name, settings.worker_autostart).await?;
    let epoch: i64 = sqlx::query_scalar(
        "update fleet_state set leader_epoch = leader_epoch + 1, leader_node = $2, \
           leader_since = now(), updated_at = now() \
         where cluster_name = $1 returning leader_epoch",
    )
    .bind(&settings.cluster_name)
    .bind(&settings.node_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(epoch)
}

/// The leader loop. `Ok` only on shutdown; any error means leadership is lost or unsafe.
async fn lead(
    conn: &mut PgConnection,
    pool: &PgPool,
    settings: &ElectionSettings,
    state: &NodeState,
    metrics: &Metrics,
    epoch: i64,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(mut l) => match l.listen(Channel::Schedules.name()).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for schedule changes; polling");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for schedule changes; polling");
            None
        }
    };
    let mut ticker = ticker::Ticker::new(settings.tick.clone());
    let mut last_ok = Instant::now();
    let mut due_in_pass = 0usize;
    let mut locked = crate::retry::Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if last_ok.elapsed() > settings.lease {
            anyhow::bail!(
                "no successful round trip on the lock session for {:?} (lease {:?}): not trusting it",
                last_ok.elapsed(),
                settings.lease
            );
        }
        // One batch at a time, each bounded by the lease on the client side too: on a
        // silently dead network (no FIN, no RST) a query would wait forever, and a leader
        // that cannot talk must step down. Each batch renews the fence, so a pass of any
        // size (a cohort of a million, a week of catch-up) keeps the leadership.
        let batch = ticker.batch(
            conn,
            &settings.cluster_name,
            &settings.node_id,
            epoch,
            metrics,
        );
        let outcome = tokio::time::timeout(settings.lease, batch)
            .await
            .map_err(|_| anyhow::anyhow!("a tick batch took longer than the lease"))??;
        last_ok = Instant::now();
        state.ticked(outcome.db_now);
        due_in_pass += outcome.planned;
        if outcome.more {
            continue;
        }
        metrics.schedules_due.record(due_in_pass as u64, &[]);
        due_in_pass = 0;
        let until_next = if outcome.worker_enabled {
            tokio::time::timeout(settings.lease, ticker.until_next(conn))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("a query on the lock session took longer than the lease")
                })??
        } else {
            Duration::MAX
        };
        last_ok = Instant::now();
        // Something due but nothing claimed (every due schedule is locked by API calls, or
        // by a stuck transaction): back off, doubling from 20 ms to 1 s, instead of
        // spinning; the first batch that claims something resets it.
        let floor = if outcome.claimed == 0 && until_next.is_zero() {
            locked.next_delay()
        } else {
            locked.reset();
            Duration::ZERO
        };
        let sleep = until_next.max(floor).min(settings.heartbeat());
        if sleep.is_zero() {
            continue;
        }
        match listener.as_mut() {
            Some(l) => {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(sleep) => {}
                    n = l.recv() => {
                        if let Err(e) = n {
                            tracing::warn!(error = %e, "schedule change listener failed; polling");
                            listener = None;
                        }
                    }
                }
            }
            None => {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(sleep) => {}
                }
            }
        }
    }
}
