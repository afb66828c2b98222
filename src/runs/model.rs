//! Run types: the status and trigger enums (text in the database, with CHECK constraints
//! in the schema) and the run as the API returns it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use crate::kinds::{RunReason, RunStatus, RunTrigger};

/// A run as the API returns it. Internal bookkeeping (`idempotency_key`, the launch
/// lease) is not part of it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Run {
    pub run_id: Uuid,
    /// `null` for a manual launch that belongs to no schedule.
    pub schedule_id: Option<String>,
    /// The nominal tick (UTC, before jitter).
    pub scheduled_for: DateTime<Utc>,
    /// When the run is (or was) due to launch: the tick plus its jitter.
    pub fire_at: DateTime<Utc>,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    /// Why the run ended as it did, when that is not obvious from its status
    /// (`overlap`, `paused`, `deleted`, `workflow_not_found`, ...).
    pub reason: Option<String>,
    pub workflow_id: String,
    pub version: i32,
    pub user_id: String,
    /// Launch attempts made so far.
    pub attempt: i32,
    /// The last launch or run error.
    pub last_error: Option<String>,
    /// Leader epoch of the leader that created the run.
    pub leader_epoch: Option<i64>,
    /// Node that created the run.
    pub created_by: Option<String>,
    /// Node that launched the run.
    pub launched_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub launched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_triggers_round_trip_their_text() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
        }
        for t in RunTrigger::ALL {
            assert_eq!(t.as_str().parse::<RunTrigger>().unwrap(), *t);
        }
        assert!("Pending".parse::<RunStatus>().is_err());
    }

    #[test]
    fn terminal_statuses() {
        let live: Vec<_> = RunStatus::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(live, ["pending", "launching", "running"]);
    }
}
