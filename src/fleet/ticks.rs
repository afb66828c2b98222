//! Tick planning: from a schedule's next due tick and the database's "now" to the runs the
//! leader writes. Pure (no I/O), so every rule here is tested without a database, and its
//! cost is bounded whatever the schedule's state: the leader runs it for thousands of
//! schedules per batch, so a schedule a year behind must plan as fast as one a second
//! behind.
//!
//! For one schedule, from `next_due_at` on:
//! - **missed** ticks (older than now − misfire grace, e.g. after an outage) follow the
//!   catch-up policy, and cost at most its bound (`max_catchup_runs`), not the length of
//!   the outage. Only the latest `max_catchup_runs` missed ticks get rows (found with a
//!   bounded search back from the end of the gap): `none` records them `missed` (reason
//!   `catchup_none`); `fire_immediately` runs them now; `spread` runs them spaced evenly
//!   over the spread window. Every earlier missed tick is counted, not written
//!   (`schedules.missed_uncounted`, exact where the count is cheap, a lower bound
//!   otherwise: see [`crate::schedules::count`]). Nothing is dropped without a row or a
//!   count (invariant 2). Then planning jumps to the first tick after the gap.
//! - **fresh** ticks become `pending` runs with `fire_at = scheduled_for + jitter`, where
//!   the jitter is a stable hash of (schedule id, tick) modulo `jitter_ms + 1`, capped at
//!   the next tick's nominal time. A tick is materialized once it is within its **lead**
//!   of now: the lookahead (`SCHEDULER_LOOKAHEAD_MS`) for frequent schedules, and for
//!   sparse ones half the gap to the following tick, up to the cohort lookahead
//!   (`SCHEDULER_COHORT_LOOKAHEAD_MS`). So a minutely cohort is written about 30 s before
//!   it is due and a daily one up to the cohort lookahead before: a cohort of a million
//!   schedules due at midnight is in the database long before midnight, spread over the
//!   leader's batches, instead of being written in the last two seconds.
//!
//! - **calendars** (the schedule's `exclude_calendars`, resolved by the ticker, see
//!   [`crate::schedules::exclusions`]): a fresh tick on an excluded date is written
//!   `skipped` (reason `calendar`, `fire_at` = the tick) under `on_excluded = skip`, or
//!   `pending` at its moved time (plus the tick's jitter) under `next_business_day` /
//!   `previous_business_day`, keeping its `scheduled_for`. A tick moved earlier is written
//!   once its *moved* time is within its lead; a tick moved later once its own time is (so
//!   the row exists from the tick on). A tick moved to an instant already past the misfire
//!   grace (a schedule created after that moment) is written `skipped` (`calendar`).
//!   Among the missed ticks that get rows, an excluded one under `skip` is `skipped`
//!   (`calendar`) instead of missed, and a moved one whose moved time is not past the
//!   grace is `pending` at that time; the missed ticks that are only counted are counted
//!   without looking at calendars.
//!
//! The plan also says when the leader should look at the schedule again (`claim_at`: its
//! next tick's effective time, the earlier of the tick and its moved time, minus that
//! tick's lead). Moves are limited to fixed-time-of-day schedules, so effective times stay
//! in tick order and the first tick not planned is the next one due. A plan stops after
//! [`MAX_TICKS_PER_PLAN`] ticks; the schedule is then claimable again at once and the next
//! batch goes on.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{
    runs::{RunReason, RunStatus, RunTrigger},
    schedules::{
        CatchupPolicy, Window,
        count::{count_ticks, last_ticks_before},
        exclusions::{Exclusions, TickFate},
    },
};

/// Fresh ticks one plan writes for one schedule at most (a bound for pathological
/// settings; with sane ones a plan writes a few).
pub const MAX_TICKS_PER_PLAN: usize = 512;

/// Cron steps one plan may spend walking missed ticks one by one; a longer gap is counted
/// by calendar arithmetic ([`count_ticks`]), exact except in rare cases (then a lower
/// bound).
pub const COUNT_BUDGET: usize = 64;

/// Catch-up settings (from configuration).
#[derive(Debug, Clone, Copy)]
pub struct CatchupLimits {
    pub misfire_grace: Duration,
    pub max_catchup_runs: u32,
    pub spread: Duration,
}

/// How far ahead ticks are materialized: `min` for frequent schedules (the lookahead),
/// up to `max` for sparse ones (the cohort lookahead).
#[derive(Debug, Clone, Copy)]
pub struct Lead {
    pub min: Duration,
    pub max: Duration,
}

impl Lead {
    /// The lead of `tick`, given the tick after it: half the gap, within `[min, max]`.
    pub fn of(&self, tick: DateTime<Utc>, following: Option<DateTime<Utc>>) -> TimeDelta {
        let min = TimeDelta::from_std(self.min).unwrap_or(TimeDelta::MAX);
        let max = TimeDelta::from_std(self.max)
            .unwrap_or(TimeDelta::MAX)
            .max(min);
        match following {
            Some(next) => ((next - tick) / 2).clamp(min, max),
            None => max,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    pub scheduled_for: DateTime<Utc>,
    pub fire_at: DateTime<Utc>,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub reason: Option<RunReason>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
    /// The first tick not planned; `None`: the schedule has no tick left.
    pub next_due_at: Option<DateTime<Utc>>,
    /// When to look at the schedule again: `next_due_at` minus its lead; `None`: at once
    /// (the plan stopped at its bound).
    pub claim_at: Option<DateTime<Utc>>,
    /// Missed ticks counted but given no row.
    pub uncounted_missed: i64,
    /// Whether `uncounted_missed` is exact (otherwise a lower bound).
    pub uncounted_exact: bool,
    /// Cron steps spent (bounded whatever the schedule's state).
    pub steps: usize,
}

// FNV-1a (`crate::text::fnv1a`): every leader computes the same jitter for a tick.
use crate::text::fnv1a;

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

/// A tick a calendar moved to `to`: pending there, with the tick's own jitter.
fn calendar_move(
    schedule_id: &str,
    t: DateTime<Utc>,
    to: DateTime<Utc>,
    jitter_ms: i32,
) -> PlannedRun {
    PlannedRun {
        scheduled_for: t,
        fire_at: to + jitter_offset(schedule_id, t, jitter_ms),
        status: RunStatus::Pending,
        trigger: RunTrigger::Schedule,
        reason: None,
    }
}

/// A tick a calendar excludes, recorded `skipped` at its own time.
fn calendar_skip(t: DateTime<Utc>) -> PlannedRun {
    PlannedRun {
        scheduled_for: t,
        fire_at: t,
        status: RunStatus::Skipped,
        trigger: RunTrigger::Schedule,
        reason: Some(RunReason::Calendar),
    }
}

/// What to write for one schedule: see the module docs.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    schedule_id: &str,
    window: &Window,
    jitter_ms: i32,
    catchup: CatchupPolicy,
    next_due_at: DateTime<Utc>,
    now: DateTime<Utc>,
    lead: &Lead,
    limits: &CatchupLimits,
    exclusions: &Exclusions<'_>,
) -> Plan {
    let grace = TimeDelta::from_std(limits.misfire_grace).unwrap_or(TimeDelta::MAX);
    let missed_before = now - grace;
    let mut plan = Plan {
        uncounted_exact: true,
        ..Plan::default()
    };
    let mut from = next_due_at;
    if next_due_at < missed_before {
        let keep = limits.max_catchup_runs as usize;
        let latest = last_ticks_before(window, next_due_at, missed_before, keep);
        let counted = count_ticks(window, next_due_at, missed_before, COUNT_BUDGET);
        plan.steps += counted.steps + 2 * keep + 2;
        let kept = u64::try_from(latest.len()).unwrap_or(u64::MAX);
        plan.uncounted_missed =
            i64::try_from(counted.count.saturating_sub(kept)).unwrap_or(i64::MAX);
        plan.uncounted_exact = counted.exact;
        let n = latest.len();
        for (k, t) in latest.into_iter().enumerate() {
            match exclusions.fate(t, &window.spec) {
                TickFate::Skipped { .. } => {
                    plan.runs.push(calendar_skip(t));
                    continue;
                }
                TickFate::Moved { to, .. } if to >= missed_before => {
                    plan.runs.push(calendar_move(schedule_id, t, to, jitter_ms));
                    continue;
                }
                _ => {}
            }
            let (status, fire, reason) = match catchup {
                CatchupPolicy::None => (RunStatus::Missed, t, Some(RunReason::CatchupNone)),
                CatchupPolicy::FireImmediately => (RunStatus::Pending, now, None),
                CatchupPolicy::Spread => {
                    let step = limits.spread / u32::try_from(n).unwrap_or(u32::MAX);
                    let offset = step * u32::try_from(k).unwrap_or(0);
                    (
                        RunStatus::Pending,
                        now + TimeDelta::from_std(offset).unwrap_or_default(),
                        None,
                    )
                }
            };
            plan.runs.push(PlannedRun {
                scheduled_for: t,
                fire_at: fire,
                status,
                trigger: RunTrigger::Catchup,
                reason,
            });
        }
        from = missed_before;
    }

    let mut ticks = window.ticks_from(from);
    let mut current = ticks.next();
    plan.steps += 1;
    let mut fresh = 0;
    while let Some(t) = current {
        let following = ticks.next();
        plan.steps += 1;
        let lead_t = lead.of(t, following);
        let fate = if exclusions.is_empty() {
            TickFate::Fire
        } else {
            exclusions.fate(t, &window.spec)
        };
        // When the tick needs its row: by its own time, or by its moved time if earlier.
        let effective = match fate {
            TickFate::Moved { to, .. } => to.min(t),
            _ => t,
        };
        if effective > now + lead_t {
            plan.next_due_at = Some(t);
            plan.claim_at = Some(effective - lead_t);
            return plan;
        }
        if fresh == MAX_TICKS_PER_PLAN {
            // Bounded: the next batch goes on from here.
            plan.next_due_at = Some(t);
            return plan;
        }
        plan.runs.push(match fate {
            TickFate::Fire => PlannedRun {
                scheduled_for: t,
                fire_at: fire_at(schedule_id, t, following, jitter_ms),
                status: RunStatus::Pending,
                trigger: RunTrigger::Schedule,
                reason: None,
            },
            TickFate::Skipped { .. } => calendar_skip(t),
            TickFate::Moved { to, .. } if to < missed_before => calendar_skip(t),
            TickFate::Moved { to, .. } => calendar_move(schedule_id, t, to, jitter_ms),
        });
        fresh += 1;
        current = following;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::{
        CronSpec,
        calendar::Weekday,
        exclusions::{CalendarRules, OnExcluded},
        spec::cron_steps,
    };

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

    /// The defaults: 2 s lookahead, 10 min cohort lookahead.
    fn lead() -> Lead {
        Lead {
            min: Duration::from_secs(2),
            max: Duration::from_secs(600),
        }
    }

    fn plan_at(expr: &str, policy: CatchupPolicy, next_due: &str, now: &str, max: u32) -> Plan {
        plan(
            "s",
            &window(expr, "UTC"),
            0,
            policy,
            t(next_due),
            t(now),
            &lead(),
            &limits(max),
            &Exclusions::none(),
        )
    }

    fn by_status(p: &Plan, status: RunStatus) -> Vec<&PlannedRun> {
        p.runs.iter().filter(|r| r.status == status).collect()
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
        let now = t("2030-01-01T00:00:00Z");
        let p = plan(
            "s",
            &window("* * * * * *", "UTC"),
            3_600_000,
            CatchupPolicy::None,
            now,
            now,
            &Lead {
                min: Duration::from_secs(10),
                max: Duration::from_secs(600),
            },
            &limits(10),
            &Exclusions::none(),
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
    fn frequent_ticks_are_materialized_one_lookahead_ahead() {
        let p = plan_at(
            "*/10 * * * * *",
            CatchupPolicy::None,
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:03Z",
            10,
        );
        let got: Vec<_> = p
            .runs
            .iter()
            .map(|r| (r.scheduled_for, r.status, r.trigger))
            .collect();
        // Gap 10 s: lead 5 s, so ticks up to 00:00:08 are written.
        assert_eq!(
            got,
            vec![(
                t("2030-01-01T00:00:00Z"),
                RunStatus::Pending,
                RunTrigger::Schedule
            )]
        );
        assert_eq!(p.next_due_at, Some(t("2030-01-01T00:00:10Z")));
        assert_eq!(p.claim_at, Some(t("2030-01-01T00:00:05Z")));
        // Every second: the lookahead (2 s) is the lead.
        let p = plan_at(
            "* * * * * *",
            CatchupPolicy::None,
            "2030-01-01T00:00:03Z",
            "2030-01-01T00:00:03Z",
            10,
        );
        assert_eq!(p.runs.len(), 3, "00:00:03, :04 and :05");
        assert_eq!(p.next_due_at, Some(t("2030-01-01T00:00:06Z")));
        assert_eq!(p.claim_at, Some(t("2030-01-01T00:00:04Z")));
    }

    #[test]
    fn sparse_ticks_are_materialized_early_up_to_the_cohort_lookahead() {
        // Minutely (a cohort at second 0): the tick is written 30 s before it is due.
        let early = plan_at(
            "0 * * * * *",
            CatchupPolicy::None,
            "2030-01-01T00:01:00Z",
            "2030-01-01T00:00:29Z",
            10,
        );
        assert!(early.runs.is_empty(), "31 s ahead: not yet");
        assert_eq!(early.claim_at, Some(t("2030-01-01T00:00:30Z")));
        let p = plan_at(
            "0 * * * * *",
            CatchupPolicy::None,
            "2030-01-01T00:01:00Z",
            "2030-01-01T00:00:30Z",
            10,
        );
        assert_eq!(p.runs.len(), 1);
        assert_eq!(p.runs[0].scheduled_for, t("2030-01-01T00:01:00Z"));
        assert_eq!(p.next_due_at, Some(t("2030-01-01T00:02:00Z")));
        assert_eq!(p.claim_at, Some(t("2030-01-01T00:01:30Z")));
        // Daily: the cohort lookahead (10 min) caps the lead.
        let p = plan_at(
            "0 0 * * *",
            CatchupPolicy::None,
            "2030-01-02T00:00:00Z",
            "2030-01-01T23:50:00Z",
            10,
        );
        assert_eq!(p.runs.len(), 1, "exactly 10 minutes ahead");
        assert_eq!(p.claim_at, Some(t("2030-01-02T23:50:00Z")));
        // A new schedule far from its tick: nothing written, looked at again in time.
        let p = plan_at(
            "0 0 * * *",
            CatchupPolicy::None,
            "2030-01-02T00:00:00Z",
            "2030-01-01T12:00:00Z",
            10,
        );
        assert!(p.runs.is_empty());
        assert_eq!(p.next_due_at, Some(t("2030-01-02T00:00:00Z")));
        assert_eq!(p.claim_at, Some(t("2030-01-01T23:50:00Z")));
    }

    /// 100 minutely ticks missed (outage from 00:00 to 01:40).
    fn outage(policy: CatchupPolicy, max: u32) -> Plan {
        plan_at(
            "* * * * *",
            policy,
            "2030-01-01T00:00:00Z",
            "2030-01-01T01:40:00Z",
            max,
        )
    }

    #[test]
    fn catchup_none_records_the_latest_missed_ticks_and_counts_the_rest() {
        let p = outage(CatchupPolicy::None, 10);
        let missed = by_status(&p, RunStatus::Missed);
        assert_eq!(missed.len(), 10);
        assert!(
            missed
                .iter()
                .all(|r| r.reason == Some(RunReason::CatchupNone))
        );
        assert_eq!(missed[0].scheduled_for, t("2030-01-01T01:30:00Z"));
        assert_eq!(missed[9].scheduled_for, t("2030-01-01T01:39:00Z"));
        // 01:39 is older than the 5 s grace too: 00:00..=01:39 are 100 missed ticks.
        assert_eq!(p.uncounted_missed, 90);
        assert!(p.uncounted_exact);
        // The 01:40 tick is fresh (inside the grace): it runs.
        let pending = by_status(&p, RunStatus::Pending);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].scheduled_for, t("2030-01-01T01:40:00Z"));
    }

    #[test]
    fn catchup_fire_immediately_runs_the_latest_up_to_the_bound() {
        let p = outage(CatchupPolicy::FireImmediately, 10);
        let now = t("2030-01-01T01:40:00Z");
        let catchup: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.trigger == RunTrigger::Catchup)
            .collect();
        assert_eq!(catchup.len(), 10);
        assert!(catchup.iter().all(|r| r.status == RunStatus::Pending));
        assert_eq!(catchup[0].scheduled_for, t("2030-01-01T01:30:00Z"));
        assert_eq!(catchup[9].scheduled_for, t("2030-01-01T01:39:00Z"));
        assert!(catchup.iter().all(|r| r.fire_at == now));
        assert!(by_status(&p, RunStatus::Missed).is_empty());
        assert_eq!(p.uncounted_missed, 90, "the rest are counted, not dropped");
        assert_eq!(p.runs.len(), 11, "10 catch-up runs + the fresh 01:40 tick");
    }

    #[test]
    fn catchup_spread_spaces_runs_over_the_window() {
        let p = outage(CatchupPolicy::Spread, 4);
        let now = t("2030-01-01T01:40:00Z");
        let fires: Vec<_> = p
            .runs
            .iter()
            .filter(|r| r.trigger == RunTrigger::Catchup)
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
        assert_eq!(p.uncounted_missed, 96);
    }

    #[test]
    fn a_day_of_every_second_ticks_costs_the_bound_not_the_day() {
        // Every second for a day: 86_400 missed ticks.
        let p = plan_at(
            "* * * * * *",
            CatchupPolicy::None,
            "2030-01-01T00:00:00Z",
            "2030-01-02T00:00:00Z",
            10,
        );
        let missed = by_status(&p, RunStatus::Missed).len();
        assert_eq!(missed, 10);
        // Ticks in [now - 5 s, now + 2 s] are fresh: 8 of them.
        let fresh = by_status(&p, RunStatus::Pending).len();
        assert_eq!(fresh, 8);
        // The missed ticks are [00:00:00, 23:59:55): 86_395.
        assert_eq!(
            i64::try_from(missed).unwrap() + p.uncounted_missed,
            86_395,
            "every missed tick has a row or a count"
        );
    }

    #[test]
    fn a_year_behind_plans_within_a_bounded_number_of_cron_steps() {
        let limits = limits(10);
        for (expr, tz) in [
            ("* * * * * *", "UTC"),
            ("*/7 * * * *", "America/New_York"),
            ("0 9 * * MON-FRI", "Europe/London"),
        ] {
            let w = window(expr, tz);
            let now = t("2031-01-01T00:00:00Z");
            for behind in [TimeDelta::minutes(1), TimeDelta::days(365)] {
                let before = cron_steps();
                let p = plan(
                    "s",
                    &w,
                    0,
                    CatchupPolicy::FireImmediately,
                    w.first_tick_from(now - behind).unwrap(),
                    now,
                    &lead(),
                    &limits,
                    &Exclusions::none(),
                );
                let steps = cron_steps() - before;
                assert!(
                    steps < 10_000,
                    "{expr} in {tz}, {behind} behind: {steps} cron steps"
                );
                assert!(p.next_due_at.unwrap() > now, "{expr}: jumped past the gap");
                assert!(p.runs.len() <= 10 + 8, "{expr}: {} rows", p.runs.len());
            }
        }
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
            &Lead {
                min: Duration::from_secs(5 * 3600),
                max: Duration::from_secs(5 * 3600),
            },
            &limits(10),
            &Exclusions::none(),
        );
        assert_eq!(p.runs.len(), 3, "00:00, 01:00 and 02:00 (end inclusive)");
        assert_eq!(p.next_due_at, None, "completed");
    }

    #[test]
    fn a_plan_stops_at_its_bound_and_is_claimable_again_at_once() {
        let p = plan(
            "s",
            &window("* * * * * *", "UTC"),
            0,
            CatchupPolicy::None,
            t("2030-01-01T00:00:00Z"),
            t("2030-01-01T00:00:00Z"),
            &Lead {
                min: Duration::from_secs(3600),
                max: Duration::from_secs(3600),
            },
            &limits(10),
            &Exclusions::none(),
        );
        assert_eq!(p.runs.len(), MAX_TICKS_PER_PLAN);
        assert_eq!(p.next_due_at, Some(t("2030-01-01T00:08:32Z")));
        assert_eq!(p.claim_at, None);
    }

    #[test]
    fn dst_spring_forward_day_in_new_york() {
        // 02:30 local does not exist on 2026-03-08: the tick fires at 03:00 EDT (07:00Z).
        let w = window("30 2 * * *", "America/New_York");
        let p = plan(
            "s",
            &w,
            0,
            CatchupPolicy::None,
            t("2026-03-08T06:00:00Z"),
            t("2026-03-08T00:00:00Z"),
            &Lead {
                min: Duration::from_secs(48 * 3600),
                max: Duration::from_secs(48 * 3600),
            },
            &limits(10),
            &Exclusions::none(),
        );
        let got: Vec<_> = p.runs.iter().map(|r| r.scheduled_for).collect();
        assert_eq!(
            got,
            vec![t("2026-03-08T07:00:00Z"), t("2026-03-09T06:30:00Z")]
        );
    }

    /// `0 9 * * MON-FRI` in Berlin (09:00 CET is 08:00Z) with a holiday calendar (weekends
    /// off, the dates given), planned at `now` from `next_due`.
    fn holiday_plan(dates: &[&str], on: OnExcluded, next_due: &str, now: &str) -> Plan {
        let cal = CalendarRules::new(
            "holidays",
            "Europe/Berlin".parse().unwrap(),
            dates.iter().map(|d| d.parse().unwrap()).collect(),
            Vec::new(),
            &[Weekday::Sat, Weekday::Sun],
        );
        plan(
            "s",
            &window("0 9 * * MON-FRI", "Europe/Berlin"),
            0,
            CatchupPolicy::None,
            t(next_due),
            t(now),
            &lead(),
            &limits(10),
            &Exclusions {
                calendars: vec![&cal],
                on_excluded: on,
            },
        )
    }

    /// A planned run as (scheduled_for, fire_at, status, reason).
    type Row = (DateTime<Utc>, DateTime<Utc>, RunStatus, Option<RunReason>);

    fn rows(p: &Plan) -> Vec<Row> {
        p.runs
            .iter()
            .map(|r| (r.scheduled_for, r.fire_at, r.status, r.reason))
            .collect()
    }

    #[test]
    fn a_holiday_tick_is_recorded_skipped_with_reason_calendar() {
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::Skip,
            "2026-12-25T08:00:00Z",
            "2026-12-25T07:55:00Z",
        );
        let christmas = t("2026-12-25T08:00:00Z");
        assert_eq!(
            rows(&p),
            vec![(
                christmas,
                christmas,
                RunStatus::Skipped,
                Some(RunReason::Calendar)
            )]
        );
        assert_eq!(p.next_due_at, Some(t("2026-12-28T08:00:00Z")));
        assert_eq!(p.claim_at, Some(t("2026-12-28T07:50:00Z")));
    }

    #[test]
    fn next_business_day_moves_the_run_across_the_weekend_and_a_holiday() {
        let christmas = t("2026-12-25T08:00:00Z");
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::NextBusinessDay,
            "2026-12-25T08:00:00Z",
            "2026-12-25T07:55:00Z",
        );
        assert_eq!(
            rows(&p),
            vec![(
                christmas,
                t("2026-12-28T08:00:00Z"),
                RunStatus::Pending,
                None
            )],
            "written at the tick, firing on Monday"
        );
        let p = holiday_plan(
            &["2026-12-25", "2026-12-28"],
            OnExcluded::NextBusinessDay,
            "2026-12-25T08:00:00Z",
            "2026-12-25T07:55:00Z",
        );
        assert_eq!(
            rows(&p),
            vec![(
                christmas,
                t("2026-12-29T08:00:00Z"),
                RunStatus::Pending,
                None
            )]
        );
        // Monday's own tick moves too, to the same Tuesday instant: both runs exist.
        let p = holiday_plan(
            &["2026-12-25", "2026-12-28"],
            OnExcluded::NextBusinessDay,
            "2026-12-28T08:00:00Z",
            "2026-12-28T07:55:00Z",
        );
        assert_eq!(
            rows(&p),
            vec![(
                t("2026-12-28T08:00:00Z"),
                t("2026-12-29T08:00:00Z"),
                RunStatus::Pending,
                None
            )]
        );
    }

    #[test]
    fn previous_business_day_writes_the_moved_run_in_time() {
        // The day before: Thursday's tick is looked at 10 minutes ahead.
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::PreviousBusinessDay,
            "2026-12-24T08:00:00Z",
            "2026-12-23T12:00:00Z",
        );
        assert!(p.runs.is_empty());
        assert_eq!(p.claim_at, Some(t("2026-12-24T07:50:00Z")));
        // Then Thursday's tick and Friday's, moved onto Thursday, are written together.
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::PreviousBusinessDay,
            "2026-12-24T08:00:00Z",
            "2026-12-24T07:50:00Z",
        );
        let thursday = t("2026-12-24T08:00:00Z");
        assert_eq!(
            rows(&p),
            vec![
                (thursday, thursday, RunStatus::Pending, None),
                (
                    t("2026-12-25T08:00:00Z"),
                    thursday,
                    RunStatus::Pending,
                    None
                ),
            ]
        );
        assert_eq!(p.next_due_at, Some(t("2026-12-28T08:00:00Z")));
        // A tick moved earlier is looked at by its moved time: with Monday the 28th a
        // holiday too, Monday's tick moves back across the weekend and Christmas to
        // Thursday the 24th, so the leader looks at it by Thursday 07:50Z.
        let p = holiday_plan(
            &["2026-12-25", "2026-12-28"],
            OnExcluded::PreviousBusinessDay,
            "2026-12-28T08:00:00Z",
            "2026-12-23T12:00:00Z",
        );
        assert!(p.runs.is_empty());
        assert_eq!(p.next_due_at, Some(t("2026-12-28T08:00:00Z")));
        assert_eq!(p.claim_at, Some(t("2026-12-24T07:50:00Z")));
    }

    #[test]
    fn missed_ticks_follow_the_calendar() {
        // An outage from Monday the 21st to Monday the 28th, 07:00Z (before that day's tick).
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::Skip,
            "2026-12-21T08:00:00Z",
            "2026-12-28T07:00:00Z",
        );
        let got = rows(&p);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(
            got[4],
            (
                t("2026-12-25T08:00:00Z"),
                t("2026-12-25T08:00:00Z"),
                RunStatus::Skipped,
                Some(RunReason::Calendar)
            ),
            "skipped by the calendar, not missed"
        );
        assert!(got[..4].iter().all(|r| r.2 == RunStatus::Missed));
        // Moved onto Monday 08:00Z, still ahead: pending at that time.
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::NextBusinessDay,
            "2026-12-21T08:00:00Z",
            "2026-12-28T07:00:00Z",
        );
        assert_eq!(
            rows(&p)[4],
            (
                t("2026-12-25T08:00:00Z"),
                t("2026-12-28T08:00:00Z"),
                RunStatus::Pending,
                None
            )
        );
        assert_eq!(p.next_due_at, Some(t("2026-12-28T08:00:00Z")));
        // Moved onto a time already past: missed under catchup_policy none.
        let p = holiday_plan(
            &["2026-12-25"],
            OnExcluded::NextBusinessDay,
            "2026-12-21T08:00:00Z",
            "2026-12-28T09:00:00Z",
        );
        let friday = rows(&p)
            .into_iter()
            .find(|r| r.0 == t("2026-12-25T08:00:00Z"))
            .unwrap();
        assert_eq!(friday.2, RunStatus::Missed);
    }
}
