//! Runs: one row per tick (or manual launch), their statuses, and their storage.
//!
//! A run row is written by the leader (one per tick, invariant 1) or by a manual launch,
//! and moved along its statuses by the launcher and the Executor's completion report.
//! This module is the read side: [`model`] holds the types, [`store`] the queries.
//! Runs outlive their schedule: deleting a schedule cancels its pending runs but keeps
//! every row, so its history stays readable.

pub mod complete;
pub mod model;
pub mod store;

pub use model::{Run, RunStatus, RunTrigger};
