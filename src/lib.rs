//! cron-scheduler: keeps time for a workflow engine. It stores cron schedules, fires every
//! tick exactly once, and hands each run to an external Executor over HTTP.
//!
//! Layout: [`config`] (environment), [`db`] (pool, migrations, embedded PostgreSQL),
//! [`schedules`] (cron dialect, validated types, storage), [`api`] (REST), [`app`] (wiring
//! and the `serve` lifecycle), [`telemetry`] (logs).
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod config;
pub mod db;
pub mod schedules;
pub mod telemetry;

/// This build's version, reported by health endpoints and the node registry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
