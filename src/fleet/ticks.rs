//! Tick planning: from a schedule's next due tick and the database's "now" to the runs the
//! leader writes. Pure (no I/O), so every rule here is tested without a database.
//!
//! For one schedule, the ticks from `next_due_at` up to `horizon` (now + lookahead) are
//! split in two:
//! - **fresh** ticks (not older than now − misfire grace) become `pending` runs with
//!   `fire_at = scheduled_for + jitter`, where the jitter is a stable hash of
//!   (schedule id, tick) modulo `jitter_ms + 1`, capped at the next tick's nominal time;
//! - **missed** ticks (older than the grace, e.g. after downtime) follow the catch-up
//!   policy: `none` records them `missed`; `fire_immediately` runs the latest
//!   `max_catchup_runs` now and records the rest `missed`; `spread` runs the latest
//!   `max_catchup_runs` spaced evenly over the spread window.
//!
//! At most [`MAX_MISSED_ROWS`] `missed` rows are written per plan; the rest are counted
//! (`schedules.missed_uncounted`). Nothing is dropped without a row or a count.

use std::{collections::VecDeque, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{runs::RunStatus, runs::RunTrigger, schedules::CatchupPolicy, schedules::Window};

/// Bound on `missed` rows one plan writes for one schedule.
pub const MAX_MISSED_ROWS: usize = 1000;

/// Catch-up settings (from configuration).
#[derive(Debug, Clone, Copy)]
pub struct CatchupLimits {
    pub misfire_grace: Duration,
    pub max_catchup_runs: u32,
    pub spread: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    pub scheduled_for: DateTime<Utc>,
    pub fire_at: DateTime<Utc>,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
    /// The first tick after the horizon; `None`: the schedule has no tick left.
    pub next_due_at: Option<DateTime<Utc>>,
    /// Missed ticks counted but given no row.
    pub uncounted_missed: i64,
}

/// FNV-1a, 64 bits: stable across builds and Rust versions (std's hasher is not), so
/// every leader computes the same jitter for a tick.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Deterministic jitter in `0..=jitter_ms` for one tick.
pub fn jitter_offset(schedule_id: &str, scheduled_for: DateTime<Utc>, jitter_ms: i32) -> TimeDelta {
    let Ok(span) = u64::try_from(jitter_ms) else {
        return TimeDelta::zero();
    };
    if span == 0 {
        return TimeDelta::zero();
    }
    let nanos = scheduled_for.timestamp_nanos_opt().unwrap_or_default();
    let h = fnv1a(&[schedule_id.as_bytes(), &[0], &nanos.to_be_bytes()]);
    TimeDelta::milliseconds(i64::try_from(h % (span + 1)).expect("below 3_600_001"))
}

/// When a tick fires: its jittered time, never after the next tick's nominal time.
pub fn fire_at(
    schedule_id: &str,
    scheduled_for: DateTime<Utc>,
    next_tick: Option<DateTime<Utc>>,
    jitter_ms: i32,
) -> DateTime<Utc> {
    let jittered = scheduled_for + jitter_offset(schedule_id, scheduled_for, jitter_ms);
    match next_tick {
        Some(next) if jittered > next => next,
        _ => jittered,
    }
}

/// What to write for one schedule.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    schedule_id: &str,
    window: &Window,
    jitter_ms: i32,
    catchup: CatchupPolicy,
    next_due_at: DateTime<Utc>,
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
    limits: &CatchupLimits,
) -> Plan {
    let grace = TimeDelta::from_std(limits.misfire_grace).unwrap_or(TimeDelta::MAX);
    let missed_before = now - grace;
    let keep_runs = limits.max_catchup_runs as usize;
    let keep = match catchup {
        CatchupPolicy::None => MAX_MISSED_ROWS,
        _ => keep_runs + MAX_MISSED_ROWS,
    };

    let mut ticks = window.ticks_from(next_due_at).peekable();
    // The latest `keep` missed ticks; older ones are only counted.
    let mut missed: VecDeque<DateTime<Utc>> = VecDeque::new();
    let mut uncounted: i64 = 0;
    while let Some(t) = ticks.next_if(|t| *t < missed_before && *t <= horizon) {
        if missed.len() == keep {
            missed.pop_front();
            uncounted += 1;
        }
        missed.push_back(t);
    }

    let mut runs = Vec::new();
    // Of the kept missed ticks, the latest `keep_runs` run (per policy) and the rest are
    // recorded as missed.
    let run_from = match catchup {
        CatchupPolicy::None => missed.len(),
        _ => missed.len().saturating_sub(keep_runs),
    };
    let catchup_count = missed.len() - run_from;
    for (i, t) in missed.into_iter().enumerate() {
        if i < run_from {
            let reason = if catchup == CatchupPolicy::None {
                "catchup_none"
            } else {
                "catchup_limit"
            };
            runs.push(PlannedRun {
                scheduled_for: t,
                fire_at: t,
                status: RunStatus::Missed,
                trigger: RunTrigger::Catchup,
                reason: Some(reason),
            });
            continue;
        }
        let k = i - run_from;
        let fire = match catchup {
            CatchupPolicy::Spread if catchup_count > 0 => {
                let step = limits.spread / u32::try_from(catchup_count).unwrap_or(u32::MAX);
                now + TimeDelta::from_std(step * u32::try_from(k).unwrap_or(0)).unwrap_or_default()
            }
            _ => now,
        };
        runs.push(PlannedRun {
            scheduled_for: t,
            fire_at: fire,
            status: RunStatus::Pending,
            trigger: RunTrigger::Catchup,
            reason: None,
        });
    }
    while let Some(t) = ticks.next_if(|t| *t <= horizon) {
        let next = ticks.peek().copied();
        runs.push(PlannedRun {
            scheduled_for: t,
            fire_at: fire_at(schedule_id, t, next, jitter_ms),
            status: RunStatus::Pending,
            trigger: RunTrigger::Schedule,
            reason: None,
        });
    }
    Plan {
        runs,
        next_due_at: ticks.next(),
        uncounted_missed: uncounted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::CronSpec;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn window(expr: &str, tz: &str) -> Window {
        Window {
            spec: CronSpec::parse(expr, tz).unwrap(),
            start_at: None,
            end_at: None,
        }
    }

    fn limits(max: u32) -> CatchupLimits {
        CatchupLimits {
            misfire_grace: Duration::from_secs(5),
            max_catchup_runs: max,
            spread: Duration::from_secs(60),
        }
    }

    #[test]
    fn jitter_is_bounded_stable_and_spread() {
        let base = t("2030-01-01T00:00:00Z");
        let mut seen = std::collections::HashSet::new();
        for i in 0..500 {
            let tick = base + TimeDelta::minutes(i);
            let a = jitter_offset("sched", tick, 1000);
            assert_eq!(
                a,
                jitter_offset("sched", tick, 1000),
                "same input, same jitter"
            );
            assert!(
                a >= TimeDelta::zero() && a <= TimeDelta::milliseconds(1000),
                "{a}"
            );
            seen.insert(a.num_milliseconds());
        }
        assert!(
            seen.len() > 300,
            "jitter should spread over the range, got {} values",
            seen.len()
        );
        assert_ne!(
            jitter_offset("a", base, 3_600_000),
            jitter_offset("b", base, 3_600_000),
            "different schedules get different offsets"
        );
        assert_eq!(jitter_offset("a", base, 0), TimeDelta::zero());
        // A known value pins the hash: a change would move every tick in every fleet.
        assert_eq!(jitter_offset("sched", base, 1000).num_milliseconds(), {
            let h = fnv1a(&[
                b"sched",
                &[0],
                &base.timestamp_nanos_opt().unwrap().to_be_bytes(),
            ]);
            i64::try_from(h % 1001).unwrap()
        });
    }

    #[test]
    fn jitter_never_fires_after_the_next_tick() {
        // Every-second schedule with up to an hour of jitter: always capped at the next tick.
        let w = window("* * * * * *", "UTC");
        let now = t("2030-01-01T00:00:00Z");
        let p = plan(
            "s",
            &w,
            3_600_000,
            CatchupPolicy::None,
            now,
            now,
            now + TimeDelta::seconds(10),
            &limits(10),
        );
        assert_eq!(p.runs.len(), 11);
        for r in &p.runs {
            assert!(r.fire_at >= r.scheduled_for);
            assert!(
                r.fire_at <= r.scheduled_for + TimeDelta::seconds(1),
                "{r:?}"
            );
        }
        assert_eq!(p.next_due_at, Some(t("2030-01-01T00:00:11Z")));
    }

    #[test]
    fn fresh_ticks_up_to_the_horizon_are_pending() {
        let w = window("*/10 * * * * *", "UTC");
        let now = t("2030-01-01T00:00:03Z");
        let p = plan(
            "s",
            &w,
            0,
            CatchupPolicy::None,
            t("2030-01-01T00:00:00Z"),
            now,
            t("2030-01-01T00:00:20Z"),
            &limits(10),
        );
        let got: Vec<_> = p
            .runs
            .iter()
            .map(|r| (r.scheduled_for, r.status, r.trigger))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    t("2030-01-01T00:00:00Z"),
                    RunStatus::Pending,
                    RunTrigger::Schedule
                ),
                (
                    t("2030-01-01T00:00:10Z"),
                    RunStatus::Pending,
                    RunTrigger::Schedule
                ),
                (
                    t("2030-01-01T00:00:20Z"),
                    RunStatus::Pending,
                    RunTrigger::Schedule
                ),
            ]
        );
        assert_eq!(p.next_due_at, Some(t("2030-01-01T00:00:30Z")));
    }

    /// 100 minutely ticks missed (downtime from 00:00 to 01:40).
    fn downtime(policy: CatchupPolicy, max: u32) -> Plan {
        let w = window("* * * * *", "UTC");
        let now = t("2030-01-01T01:40:00Z");
        plan(
            "s",
            &w,
            0,
            policy,
            t("2030-01-01T00:00:00Z"),
            now,
            now + TimeDelta::seconds(2),
            &limits(max),
        )
    }

    #[test]
    fn catchup_none_records_every_missed_tick() {
        let p = downtime(CatchupPolicy::None, 10);
        let missed: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Missed)
            .collect();
        assert_eq!(missed.len(), 100);
        assert!(missed.iter().all(|r| r.reason == Some("catchup_none")));
        // The 01:40 tick is fresh (inside the grace): it runs.
        let pending: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Pending)
            .collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].scheduled_for, t("2030-01-01T01:40:00Z"));
        assert_eq!(p.uncounted_missed, 0);
    }

    #[test]
    fn catchup_fire_immediately_runs_the_latest_up_to_the_bound() {
        let p = downtime(CatchupPolicy::FireImmediately, 10);
        let now = t("2030-01-01T01:40:00Z");
        let catchup: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Pending && r.trigger == RunTrigger::Catchup)
            .collect();
        assert_eq!(catchup.len(), 10);
        assert_eq!(catchup[0].scheduled_for, t("2030-01-01T01:30:00Z"));
        assert_eq!(catchup[9].scheduled_for, t("2030-01-01T01:39:00Z"));
        assert!(catchup.iter().all(|r| r.fire_at == now));
        let missed = p
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count();
        assert_eq!(missed, 90, "the rest are recorded, not dropped");
        assert_eq!(
            p.runs.len(),
            101,
            "every tick has a row: 90 missed + 10 catch-up + 1 fresh"
        );
    }

    #[test]
    fn catchup_spread_spaces_runs_over_the_window() {
        let p = downtime(CatchupPolicy::Spread, 4);
        let now = t("2030-01-01T01:40:00Z");
        let fires: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.trigger == RunTrigger::Catchup && r.status == RunStatus::Pending)
            .map(|r| r.fire_at)
            .collect();
        assert_eq!(
            fires,
            vec![
                now,
                now + TimeDelta::seconds(15),
                now + TimeDelta::seconds(30),
                now + TimeDelta::seconds(45)
            ]
        );
        assert_eq!(
            p.runs
                .iter()
                .filter(|r| r.status == RunStatus::Missed)
                .count(),
            96
        );
    }

    #[test]
    fn missed_rows_are_bounded_then_counted() {
        // Every second for a day: 86_400 missed ticks.
        let w = window("* * * * * *", "UTC");
        let start = t("2030-01-01T00:00:00Z");
        let now = start + TimeDelta::days(1);
        let p = plan(
            "s",
            &w,
            0,
            CatchupPolicy::None,
            start,
            now,
            now,
            &limits(10),
        );
        let missed = p
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count();
        assert_eq!(missed, MAX_MISSED_ROWS);
        let fresh = p
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Pending)
            .count();
        // Ticks in [now - 5 s, now] are fresh: 6 of them.
        assert_eq!(fresh, 6);
        assert_eq!(
            i64::try_from(missed + fresh).unwrap() + p.uncounted_missed,
            86_401
        );
    }

    #[test]
    fn bounds_stop_the_ticks() {
        let mut w = window("0 * * * *", "UTC");
        w.end_at = Some(t("2030-01-01T02:00:00Z"));
        let now = t("2030-01-01T00:00:00Z");
        let p = plan(
            "s",
            &w,
            0,
            CatchupPolicy::None,
            now,
            now,
            t("2030-01-01T05:00:00Z"),
            &limits(10),
        );
        assert_eq!(p.runs.len(), 3, "00:00, 01:00 and 02:00 (end inclusive)");
        assert_eq!(p.next_due_at, None, "completed");
    }

    #[test]
    fn dst_spring_forward_day_in_new_york() {
        // 02:30 local does not exist on 2026-03-08: the tick fires at 03:00 EDT (07:00Z).
        let w = window("30 2 * * *", "America/New_York");
        let now = t("2026-03-08T00:00:00Z");
        let p = plan(
            "s",
            &w,
            0,
            CatchupPolicy::None,
            t("2026-03-08T06:00:00Z"),
            now,
            t("2026-03-10T00:00:00Z"),
            &limits(10),
        );
        let got: Vec<_> = p.runs.iter().map(|r| r.scheduled_for).collect();
        assert_eq!(
            got,
            vec![t("2026-03-08T07:00:00Z"), t("2026-03-09T06:30:00Z")]
        );
    }
}
