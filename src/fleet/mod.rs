//! The fleet: leader election ([`leader`]), the node registry ([`nodes`]), the ticker
//! ([`ticker`], with its pure planning in [`ticks`]) and the fleet-wide worker switch
//! (`fleet_state.worker_enabled`, set through `/worker/start` and `/worker/stop`), and
//! the leader's housekeeping: retention ([`retention`]) and the backlog gauges
//! ([`backlog`]). The launcher is not started here: the
//! app wires each part (`crate::app`), and no domain module starts another.

pub mod backlog;
pub mod health;
pub mod leader;
pub mod nodes;
pub mod retention;
pub mod state;
pub mod ticker;
pub mod ticks;

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, telemetry::Metrics};
use leader::{ElectionSettings, NodeState};
use ticker::TickSettings;
use ticks::CatchupLimits;

/// Runs one tick batch writes at most.
pub const TICK_MAX_ROWS: usize = 10_000;

/// How long one tick batch should take (the claim size adapts to it).
pub const TICK_BATCH_TARGET: Duration = Duration::from_millis(250);

/// Election and tick settings from configuration.
pub fn election_settings(config: &Config) -> ElectionSettings {
    ElectionSettings {
        cluster_name: config.cluster_name.clone(),
        node_id: config.node_id.clone(),
        lease: config.leader_lease,
        worker_autostart: config.worker_autostart,
        tick: TickSettings {
            lookahead: config.lookahead,
            cohort_lookahead: config.cohort_lookahead,
            limits: CatchupLimits {
                misfire_grace: config.misfire_grace,
                max_catchup_runs: config.max_catchup_runs,
                spread: config.catchup_spread,
            },
            max_rows: TICK_MAX_ROWS,
            batch_target: TICK_BATCH_TARGET,
            statement_timeout: config.leader_lease,
            max_queued: config.max_queued,
            // The dispatchers' arm window, and their idle poll on top.
            notify_within: config.arm_window + Duration::from_secs(1),
        },
    }
}

/// This replica's part in the fleet: its background tasks and what it knows of itself.
pub struct Fleet {
    pub state: Arc<NodeState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts the election and the node heartbeat; both stop when `shutdown` fires.
    pub fn start(
        pool: &PgPool,
        config: &Config,
        shutdown: &CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        let state = Arc::new(NodeState::new(
            config.node_id.clone(),
            config.cluster_name.clone(),
        ));
        let tasks = vec![
            tokio::spawn(leader::run(
                pool.clone(),
                election_settings(config),
                state.clone(),
                metrics.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(backlog::run(
                pool.clone(),
                state.clone(),
                metrics.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(health::run(
                pool.clone(),
                state.clone(),
                metrics,
                config.misfire_grace,
                shutdown.clone(),
            )),
            tokio::spawn(nodes::run(
                pool.clone(),
                state.clone(),
                config.worker_autostart,
                shutdown.clone(),
            )),
        ];
        Self { state, tasks }
    }

    /// Waits for the background tasks to finish (after shutdown was signalled).
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "fleet task failed");
            }
        }
    }
}
