//! The RunLauncher: every replica claims due runs and forwards them to the Executor.
//!
//! # The life of a run
//!
//! ```text
//!  pending ──claim (arm window ahead)──▶ launching ──send at fire_at──▶ running ──▶ succeeded
//!     ▲                                     │    │                         │        failed
//!     └── retryable answer, retry_at ◀──────┘    └─ 4xx, no DAG,            └─ no report by
//!         (until SCHEDULER_LAUNCH_RETRY_FOR       or retry time over ──▶       the deadline ──▶
//!          has passed since fire_at)              failed_launch                 timed_out
//! ```
//!
//! - **Claim** ([`claim`]): one transaction on the pool, any replica. Pending runs due
//!   within the arm window (`SCHEDULER_ARM_WINDOW_MS`) are locked `for update skip locked`,
//!   oldest due first, decided by their overlap policy ([`overlap`]), and marked
//!   `launching` with a lease that covers their wait: it runs from their due time, not
//!   from the claim. Runs whose lease ran out (their replica died) are claimed again with
//!   the same `Idempotency-Key`.
//! - **Dispatch** ([`dispatch`]): the replica holds claimed runs and sends each at its due
//!   time, with bounded concurrency. While a run waits (for its instant, or for a free
//!   launch slot behind a slow Executor) its lease is renewed in batches, so it is never
//!   reclaimed and sent twice; a run whose lease could not be renewed is not sent (another
//!   replica will reclaim it).
//! - **Record** ([`record`]): answers are written in batches. Accepted (2xx, 409): `running`
//!   with a deadline. Retryable (connection error, timeout, 429, 5xx): `pending` again, due
//!   at `retry_at` (exponential backoff with jitter from `SCHEDULER_LAUNCH_BACKOFF_MS` to
//!   `SCHEDULER_LAUNCH_BACKOFF_MAX_MS`, at least the `Retry-After`), until
//!   `SCHEDULER_LAUNCH_RETRY_FOR` has passed since its `fire_at`; then `failed_launch`
//!   (`attempts_exhausted`). A run waiting to retry is `pending`, so pausing, deleting or
//!   changing its schedule cancels it like any other pending run. Other 4xx, or no DAG
//!   stored: `failed_launch` at once. An outcome only applies to the attempt that produced
//!   it (`where status = 'launching' and attempt = <attempt>`).
//! - **Timeouts** ([`maintenance`]): a `running` run with no completion report by its
//!   deadline (`SCHEDULER_RUN_TIMEOUT_MS` after launch) ends `timed_out` and frees its
//!   slot, so a lost callback never blocks a `skip` or `queue` schedule forever.

pub mod claim;
pub mod dags;
pub mod dispatch;
pub mod executor;
pub mod maintenance;
pub mod overlap;
pub mod record;
mod send;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::Config;

pub use claim::{ClaimResult, Claimed, claim};
pub use dispatch::run;

#[derive(Debug, Clone)]
pub struct LaunchSettings {
    pub cluster_name: String,
    pub node_id: String,
    /// Runs claimed per transaction at most.
    pub batch: i64,
    /// Launches in flight per replica at most.
    pub concurrency: usize,
    /// How far ahead of its due time a run is claimed and held.
    pub arm_window: Duration,
    /// How long a claimed run is ours after its due time (or after a renewal) before
    /// another replica may reclaim it: the Executor timeout plus a margin.
    pub lease: Duration,
    /// The Executor's time limit for one request: a run is only sent while its lease has
    /// at least this much (plus a margin) left.
    pub executor_timeout: Duration,
    /// How long after its `fire_at` a run's launch is retried.
    pub retry_for: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub run_timeout: Duration,
    /// Longest sleep between passes when nothing is due (notifications wake it earlier).
    pub idle_poll: Duration,
    /// Bound on the parsed DAGs kept in memory ([`dags::DagCache`]).
    pub dag_cache_bytes: u64,
}

impl LaunchSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            cluster_name: config.cluster_name.clone(),
            node_id: config.node_id.clone(),
            batch: 2048,
            concurrency: config.launch_concurrency,
            arm_window: config.arm_window,
            lease: config.executor_timeout + Duration::from_secs(5),
            executor_timeout: config.executor_timeout,
            retry_for: config.launch_retry_for,
            backoff_min: config.launch_backoff,
            backoff_max: config.launch_backoff_max,
            run_timeout: config.run_timeout,
            idle_poll: Duration::from_millis(1000),
            dag_cache_bytes: config.dag_cache_bytes,
        }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` failed: exponential with
    /// jitter, at least the Executor's `Retry-After`.
    pub fn retry_delay(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let nth = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        let backoff = ExponentialBuilder::new()
            .with_min_delay(self.backoff_min)
            .with_max_delay(self.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(nth)
            .unwrap_or(self.backoff_max)
            // backon's jitter adds up to one more delay: the cap holds after it.
            .min(self.backoff_max);
        backoff.max(retry_after.unwrap_or_default())
    }

    /// The lease as milliseconds, for SQL.
    fn lease_ms(&self) -> f64 {
        self.lease.as_secs_f64() * 1000.0
    }
}

/// Starts this replica's dispatcher when an Executor is configured (`None` otherwise: the
/// replica launches nothing, and says so). It stops when `shutdown` fires.
pub fn start(
    pool: &sqlx::PgPool,
    config: &Config,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let Some(url) = &config.executor_url else {
        tracing::warn!(
            "SCHEDULER_EXECUTOR_URL is not set: this replica launches nothing (runs stay pending)"
        );
        return None;
    };
    match executor::ExecutorClient::new(url, config.executor_token.clone(), config.executor_timeout)
    {
        Ok(client) => Some(tokio::spawn(run(
            pool.clone(),
            client,
            LaunchSettings::from_config(config),
            metrics,
            shutdown.clone(),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the Executor client; this replica launches nothing");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LaunchSettings {
        let mut cfg = Config::from_lookup(|_| None).unwrap();
        cfg.launch_backoff = Duration::from_secs(1);
        cfg.launch_backoff_max = Duration::from_secs(60);
        LaunchSettings::from_config(&cfg)
    }

    #[test]
    fn retry_delays_grow_to_the_cap_and_honour_retry_after() {
        let s = settings();
        let mut last_cap = Duration::ZERO;
        for attempt in 1..=12 {
            let d = s.retry_delay(attempt, None);
            assert!(d >= Duration::from_secs(1), "attempt {attempt}: {d:?}");
            assert!(d <= Duration::from_secs(60), "attempt {attempt}: {d:?}");
            last_cap = last_cap.max(d);
        }
        assert_eq!(last_cap, Duration::from_secs(60), "reaches the cap");
        assert_eq!(
            s.retry_delay(1, Some(Duration::from_secs(300))),
            Duration::from_secs(300),
            "Retry-After wins when longer"
        );
    }
}
