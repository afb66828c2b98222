//! Schedules: the cron dialect, the validated schedule types, and their storage; the
//! calendars schedules name, and what they do to their ticks.

pub mod calendar;
pub mod calendar_store;
pub mod count;
pub mod exclusions;
pub mod health;
pub mod interval;
pub mod model;
pub mod spec;
pub mod store;

pub use count::{TickCount, count_ticks, last_ticks_before};
pub use health::ScheduleHealth;
pub use model::{CatchupPolicy, OverlapPolicy, Schedule, ScheduleSpec, ScheduleStatus};
pub use spec::{CronSpec, Window};
