//! The vocabulary stored as text: policies, run statuses, triggers and the reasons a run
//! ended as it did. Each is an enum with its sqlx mapping to the text column (see
//! `text_enum!`), so rows decode into it and statements bind it: a misspelt state is a
//! compile error, and an unknown one read from the database a decode error naming it. The
//! schema's CHECK constraints list the same values. Depends on nothing else in this crate.

text_enum!(
    /// What happens when a run is about to launch while another of its schedule is in flight.
    OverlapPolicy { Allow = "allow", Skip = "skip", Queue = "queue" }
);
text_enum!(
    /// What happens to ticks missed while no leader could fire them.
    CatchupPolicy { None = "none", FireImmediately = "fire_immediately", Spread = "spread" }
);

text_enum!(
    /// What a schedule's fixed-time tick does in a spring-forward gap (its wall time does
    /// not exist that day): `shift` to the first instant after the gap, or `skip` it.
    DstGap { Shift = "shift", Skip = "skip" }
);
text_enum!(
    /// What a schedule's tick does in a fall-back fold (its wall time happens twice):
    /// fire `once` (the first pass) or `twice`.
    DstFold { Once = "once", Twice = "twice" }
);

text_enum!(
    /// What happens to a tick on a date one of its schedule's calendars excludes: `skip`
    /// it (the run ends `skipped`, reason `calendar`), or move its run, once, to the same
    /// wall time on the next or previous business day (docs/CRON.md, "Calendars").
    #[derive(Default)]
    OnExcluded {
        #[default]
        Skip = "skip",
        NextBusinessDay = "next_business_day",
        PreviousBusinessDay = "previous_business_day",
    }
);

text_enum!(
    /// A day of the week, as a calendar's `weekly_off` names it.
    Weekday {
        Mon = "mon",
        Tue = "tue",
        Wed = "wed",
        Thu = "thu",
        Fri = "fri",
        Sat = "sat",
        Sun = "sun",
    }
);

impl Weekday {
    /// Days since Monday (0..=6), as `chrono::Weekday::num_days_from_monday`.
    pub fn days_from_monday(self) -> u32 {
        match self {
            Weekday::Mon => 0,
            Weekday::Tue => 1,
            Weekday::Wed => 2,
            Weekday::Thu => 3,
            Weekday::Fri => 4,
            Weekday::Sat => 5,
            Weekday::Sun => 6,
        }
    }
}

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

text_enum!(
    /// Why a run ended without running, or was revived: kept in `runs.reason`.
    RunReason {
        /// `skipped`: its schedule had a run in flight (`overlap_policy = skip`).
        Overlap = "overlap",
        /// `skipped`: `SCHEDULER_MAX_QUEUED` runs of its `queue` schedule were waiting.
        QueueFull = "queue_full",
        /// `missed`: a tick past the misfire grace of a `catchup_policy = none` schedule.
        CatchupNone = "catchup_none",
        /// `cancelled` by a pause.
        Paused = "paused",
        /// `cancelled` by an upsert that changed what a tick is.
        SpecChanged = "spec_changed",
        /// `cancelled` by a delete.
        Deleted = "deleted",
        /// `failed_launch`: retried for `SCHEDULER_LAUNCH_RETRY_FOR` without an answer.
        AttemptsExhausted = "attempts_exhausted",
        /// `failed_launch`: no DAG stored for the run's workflow version.
        WorkflowNotFound = "workflow_not_found",
        /// `failed_launch`: the Executor refused it (a 4xx).
        Rejected = "rejected",
        /// `skipped`: its date is excluded by a calendar of its schedule (`on_excluded =
        /// skip`, or no business day to move to within 366 days).
        Calendar = "calendar",
    }
);

impl RunReason {
    /// The reasons a pending tick is cancelled with, and revived from when its schedule
    /// has it again.
    pub const CANCELLATIONS: [RunReason; 3] = [
        RunReason::Paused,
        RunReason::SpecChanged,
        RunReason::Deleted,
    ];
}
