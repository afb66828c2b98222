//! Run types: the status and trigger enums (text in the database, with CHECK constraints
//! in the schema) and the run as the API returns it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{
    Postgres,
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
};
use utoipa::ToSchema;
use uuid::Uuid;

text_enum!(
    /// Where a run is in its life: `pending` → `launching` → `running` → `succeeded` |
    /// `failed` | `timed_out`; or it ends `skipped`, `missed`, `cancelled` or
    /// `failed_launch` without running.
    RunStatus {
        Pending = "pending",
        Launching = "launching",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        TimedOut = "timed_out",
        Skipped = "skipped",
        Missed = "missed",
        Cancelled = "cancelled",
        FailedLaunch = "failed_launch",
    }
);

text_enum!(
    /// What made a run: its schedule's tick, a catch-up of a missed tick, a manual launch
    /// or trigger, or a backfill.
    RunTrigger {
        Schedule = "schedule",
        Catchup = "catchup",
        Manual = "manual",
        Backfill = "backfill",
    }
);

impl RunStatus {
    /// Whether the run is over: nothing will move it to another status.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunStatus::Pending | RunStatus::Launching | RunStatus::Running
        )
    }
}

/// Text columns decode into (and bind from) these enums; a value outside the enum is a
/// decode error naming it, not a silent default.
macro_rules! pg_text {
    ($($t:ty),+) => {$(
        impl sqlx::Type<Postgres> for $t {
            fn type_info() -> PgTypeInfo {
                <&str as sqlx::Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $t {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as sqlx::Decode<Postgres>>::decode(value)?.parse()?)
            }
        }

        impl sqlx::Encode<'_, Postgres> for $t {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }
    )+};
}

pg_text!(RunStatus, RunTrigger);

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
