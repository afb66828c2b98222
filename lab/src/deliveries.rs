//! What the Executor saw: launches the mock accepted, duplicates it answered 409, and fire
//! lag (mock receive time − `scheduled_for`), over any subset of what it received.

use chrono::{DateTime, Utc};
use serde::Serialize;

use cron_scheduler::mock_executor::{MockExecutor, Received};

use super::report::{Lag, millis_between};

#[derive(Debug, Clone, Serialize)]
pub struct Deliveries {
    /// Requests the mock answered 202 (first delivery of a run).
    pub accepted: usize,
    /// Requests for a run already accepted (same `Idempotency-Key`; answered 409).
    pub duplicates: usize,
    /// Requests refused with an error status (the mock was told to fail).
    pub refused: usize,
    /// Lag of the accepted ones.
    pub lag: Lag,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
}

/// Summarizes the received requests that `keep` selects.
pub fn summarize(mock: &MockExecutor, keep: impl Fn(&Received) -> bool) -> Deliveries {
    mock.inspect_received(|all| {
        let mut accepted = 0;
        let mut duplicates = 0;
        let mut refused = 0;
        let mut lags = Vec::new();
        let mut first_at: Option<DateTime<Utc>> = None;
        let mut last_at: Option<DateTime<Utc>> = None;
        for r in all.iter().filter(|r| keep(r)) {
            match r.status {
                202 => {
                    accepted += 1;
                    if let Some(s) = r.scheduled_for {
                        lags.push(millis_between(s, r.received_at));
                    }
                    first_at = Some(first_at.map_or(r.received_at, |f| f.min(r.received_at)));
                    last_at = Some(last_at.map_or(r.received_at, |l| l.max(r.received_at)));
                }
                409 => duplicates += 1,
                _ => refused += 1,
            }
        }
        Deliveries {
            accepted,
            duplicates,
            refused,
            lag: Lag::of(lags),
            first_at,
            last_at,
        }
    })
}

/// Whether a received request is for a tick of a schedule whose id starts with `prefix`.
pub fn of_prefix<'a>(prefix: &'a str) -> impl Fn(&Received) -> bool + 'a {
    move |r| {
        r.schedule_id
            .as_deref()
            .is_some_and(|s| s.starts_with(prefix))
    }
}
