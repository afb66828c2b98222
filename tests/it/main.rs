//! Integration tests over real HTTP against a real PostgreSQL (see `common`).

mod bad_input;
mod calendars;
mod common;
mod console;
mod ctl;
mod dashboards;
mod embedded_default;
mod failover;
mod fleet;
mod health;
mod history;
mod intervals;
mod launcher;
mod load;
mod otlp;
mod preview;
mod runs;
mod schedule_health;
mod schedules;
mod security;
mod telemetry;
mod workflows;
