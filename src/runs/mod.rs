//! Runs: one row per tick (or manual launch), their statuses, and their storage.
//!
//! A run row is written by the leader (one per tick, invariant 1) or by a manual launch,
//! and moved along its statuses by the launcher and the Executor's completion report.
//! This module holds the types ([`model`]), the reads and the cancellation of a schedule's
//! pending runs ([`store`]), and completion reports ([`complete`]). Retention, a task of
//! the leader, lives in `crate::fleet::retention`.
//! Runs outlive their schedule: deleting a schedule cancels its pending runs but keeps
//! every row, so its history stays readable until retention removes it
//! (`SCHEDULER_RUN_RETENTION` after each run ended).

pub mod complete;
pub mod model;
pub mod store;

pub use model::{Run, RunReason, RunStatus, RunTrigger};
