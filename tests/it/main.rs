//! Integration tests over real HTTP against a real PostgreSQL (see `common`).

mod bad_input;
mod common;
mod embedded_default;
mod health;
mod preview;
mod schedules;
mod workflows;
