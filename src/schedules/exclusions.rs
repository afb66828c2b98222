//! What calendars do to a schedule's ticks: which tick a calendar excludes, and where a
//! moved run fires. The calendar resource itself is [`super::calendar`].
//!
//! A tick at instant `T` is excluded by a calendar when `T`'s local date *in the
//! calendar's timezone* is an excluded date, inside an excluded range, or a weekday off.
//! A schedule names up to [`super::calendar::MAX_SCHEDULE_CALENDARS`] calendars (`exclude_calendars`) and
//! says what an excluded tick does (`on_excluded`):
//! - `skip`: the tick's run ends `skipped` with reason `calendar`;
//! - `next_business_day` / `previous_business_day`: the run moves, once, to the same wall
//!   time (the schedule's timezone) on the nearest later / earlier *business day*, a day
//!   on which that wall time is excluded by none of the schedule's calendars. The tick
//!   keeps its identity (`scheduled_for` stays the nominal tick); only `fire_at` moves. A
//!   wall time that does not exist that day (spring-forward gap) moves to the first
//!   instant after the gap; one that happens twice is its first pass, as a fixed-time tick
//!   is. The search looks at most [`MAX_MOVE_DAYS`] days away; with no business day in
//!   reach the tick is skipped (reason `calendar`).
//!
//! Moves are allowed for schedules that fire at one fixed time of day only (checked by
//! [`super::model::ScheduleRequest::validate`]): so moved fire times stay in tick order.
//!
//! Pure: no I/O. A lookup is a binary search in sorted dates and merged ranges, so a tick
//! costs `O(log n)` per calendar and a move at most `MAX_MOVE_DAYS` of those.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;

use super::calendar::Weekday;
use super::spec::{CronSpec, Window, local_instant};
pub use crate::kinds::{OnExcluded, RunReason};

/// How far a move looks for a business day, in days.
pub const MAX_MOVE_DAYS: u32 = 366;

/// What a calendar excludes, ready for lookups: sorted dates, sorted and merged ranges, a
/// weekday mask.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarRules {
    pub name: String,
    tz: Tz,
    dates: Vec<NaiveDate>,
    ranges: Vec<(NaiveDate, NaiveDate)>,
    weekly_off: [bool; 7],
}

impl CalendarRules {
    pub fn new(
        name: &str,
        tz: Tz,
        mut dates: Vec<NaiveDate>,
        mut ranges: Vec<(NaiveDate, NaiveDate)>,
        weekly_off: &[Weekday],
    ) -> Self {
        dates.sort_unstable();
        dates.dedup();
        ranges.retain(|(a, b)| a <= b);
        ranges.sort_unstable();
        let mut merged: Vec<(NaiveDate, NaiveDate)> = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            match merged.last_mut() {
                Some(last) if from <= last.1.succ_opt().unwrap_or(last.1) => {
                    last.1 = last.1.max(to);
                }
                _ => merged.push((from, to)),
            }
        }
        let mut mask = [false; 7];
        for d in weekly_off {
            mask[d.days_from_monday() as usize] = true;
        }
        Self {
            name: name.to_owned(),
            tz,
            dates,
            ranges: merged,
            weekly_off: mask,
        }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Whether the local date `d` (in this calendar's timezone) is excluded.
    pub fn excludes_date(&self, d: NaiveDate) -> bool {
        if self.weekly_off[d.weekday().num_days_from_monday() as usize] {
            return true;
        }
        if self.dates.binary_search(&d).is_ok() {
            return true;
        }
        // The last range starting on or before `d` is the only one that can hold it.
        let i = self.ranges.partition_point(|(from, _)| *from <= d);
        i > 0 && self.ranges[i - 1].1 >= d
    }

    /// Whether the instant `t` falls on an excluded local date.
    pub fn excludes(&self, t: DateTime<Utc>) -> bool {
        self.excludes_date(t.with_timezone(&self.tz).date_naive())
    }
}

/// A schedule's calendars, resolved, and what its excluded ticks do.
#[derive(Debug, Clone, Default)]
pub struct Exclusions<'a> {
    pub calendars: Vec<&'a CalendarRules>,
    pub on_excluded: OnExcluded,
}

/// What becomes of one tick under a schedule's calendars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickFate<'a> {
    /// Not excluded: it fires at its own time.
    Fire,
    /// Excluded by `calendar`: the run ends `skipped` (reason `calendar`).
    Skipped { calendar: &'a str },
    /// Excluded by `calendar`: its run fires at `to` instead (before jitter).
    Moved {
        to: DateTime<Utc>,
        calendar: &'a str,
    },
}

impl TickFate<'_> {
    /// When the tick's run fires (before jitter); `None` when it is skipped.
    pub fn fire_at(&self, tick: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            TickFate::Fire => Some(tick),
            TickFate::Skipped { .. } => None,
            TickFate::Moved { to, .. } => Some(*to),
        }
    }
}

impl<'a> Exclusions<'a> {
    /// No calendar: every tick fires.
    pub fn none() -> Self {
        Self::default()
    }

    /// Resolves a schedule's calendar names with `lookup`; a name it does not know (a
    /// calendar deleted under a race the row locks should prevent) excludes nothing.
    pub fn resolve(
        names: &[String],
        on_excluded: OnExcluded,
        lookup: impl Fn(&str) -> Option<&'a CalendarRules>,
    ) -> Self {
        Self {
            calendars: names.iter().filter_map(|n| lookup(n)).collect(),
            on_excluded,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
    }

    /// The first of the calendars that excludes `t`.
    pub fn excluded_by(&self, t: DateTime<Utc>) -> Option<&'a CalendarRules> {
        self.calendars.iter().copied().find(|c| c.excludes(t))
    }

    /// The fate of the tick `t` of the schedule whose cron is `spec` (see module docs).
    pub fn fate(&self, t: DateTime<Utc>, spec: &CronSpec) -> TickFate<'a> {
        let Some(calendar) = self.excluded_by(t) else {
            return TickFate::Fire;
        };
        let name = calendar.name.as_str();
        let forward = match self.on_excluded {
            OnExcluded::Skip => return TickFate::Skipped { calendar: name },
            OnExcluded::NextBusinessDay => true,
            OnExcluded::PreviousBusinessDay => false,
        };
        let tz = spec.timezone();
        let local = t.with_timezone(&tz);
        // The wall time the expression asks for (a tick shifted out of a gap keeps the
        // time it was meant for).
        let wall = spec
            .fixed_time_of_day()
            .and_then(|s| NaiveTime::from_num_seconds_from_midnight_opt(s, 0))
            .unwrap_or_else(|| local.time());
        let mut day = local.date_naive();
        for _ in 0..MAX_MOVE_DAYS {
            let next = if forward {
                day.succ_opt()
            } else {
                day.pred_opt()
            };
            let Some(next) = next else { break };
            day = next;
            let Some(at) = local_instant(tz, day.and_time(wall)) else {
                break;
            };
            if self.excluded_by(at).is_none() {
                return TickFate::Moved {
                    to: at,
                    calendar: name,
                };
            }
        }
        TickFate::Skipped { calendar: name }
    }
}

text_enum!(
    /// What a tick does, as a preview or a schedule's `next_ticks` shows it.
    TickOutcome { Fire = "fire", Skipped = "skipped", Moved = "moved" }
);

/// One upcoming tick and its fate, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NextTick {
    /// The nominal tick (the run's identity).
    pub scheduled_for: DateTime<Utc>,
    /// When its run fires, before jitter; `null` when it is skipped.
    pub fire_at: Option<DateTime<Utc>>,
    pub outcome: TickOutcome,
    /// `calendar` when a calendar excluded the tick; `null` otherwise.
    pub reason: Option<RunReason>,
    /// The calendar that excluded the tick; `null` otherwise.
    pub calendar: Option<String>,
}

impl NextTick {
    pub fn new(scheduled_for: DateTime<Utc>, fate: TickFate<'_>) -> Self {
        let (outcome, calendar) = match fate {
            TickFate::Fire => (TickOutcome::Fire, None),
            TickFate::Skipped { calendar } => (TickOutcome::Skipped, Some(calendar)),
            TickFate::Moved { calendar, .. } => (TickOutcome::Moved, Some(calendar)),
        };
        Self {
            scheduled_for,
            fire_at: fate.fire_at(scheduled_for),
            outcome,
            reason: calendar.map(|_| RunReason::Calendar),
            calendar: calendar.map(str::to_owned),
        }
    }
}

/// Ticks a schedule's view walks at most to find its next fire times (a calendar may skip
/// many ticks in a row).
pub const UPCOMING_SCAN: usize = 100;

/// A schedule's next `n` ticks from `from` with their fates, and its next `n` fire times
/// (skipped ticks left out, moved ones at their moved time, in tick order; before jitter),
/// found among at most [`UPCOMING_SCAN`] ticks, and up to the first tick that finds no
/// business day to move to (both lists may then be short).
pub fn upcoming(
    window: &Window,
    exclusions: &Exclusions<'_>,
    from: DateTime<Utc>,
    n: usize,
) -> (Vec<DateTime<Utc>>, Vec<NextTick>) {
    let mut fires = Vec::with_capacity(n);
    let mut ticks = Vec::with_capacity(n);
    for t in window.ticks_from(from).take(UPCOMING_SCAN.max(n)) {
        let fate = exclusions.fate(t, &window.spec);
        if ticks.len() < n {
            ticks.push(NextTick::new(t, fate));
        }
        match fate.fire_at(t) {
            Some(at) => fires.push(at),
            // A move that found no business day within reach searched a year of days;
            // the next ticks would search nearly the same year again: stop here, so a
            // view costs at most one failed search.
            None if exclusions.on_excluded != OnExcluded::Skip => break,
            None => {}
        }
        if fires.len() >= n && ticks.len() >= n {
            break;
        }
    }
    fires.truncate(n);
    (fires, ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn rules(name: &str, tz: &str, dates: &[&str], off: &[Weekday]) -> CalendarRules {
        CalendarRules::new(
            name,
            tz.parse().unwrap(),
            dates.iter().map(|s| d(s)).collect(),
            Vec::new(),
            off,
        )
    }

    const WEEKEND: [Weekday; 2] = [Weekday::Sat, Weekday::Sun];

    #[test]
    fn dates_ranges_and_weekdays_are_looked_up() {
        let c = CalendarRules::new(
            "c",
            Tz::UTC,
            vec![d("2026-12-25"), d("2026-01-01")],
            vec![
                (d("2026-08-10"), d("2026-08-14")),
                (d("2026-08-12"), d("2026-08-20")),
                (d("2026-03-01"), d("2026-03-01")),
            ],
            &[Weekday::Sun],
        );
        for yes in [
            "2026-12-25",
            "2026-01-01",
            "2026-08-10",
            "2026-08-15",
            "2026-08-20",
            "2026-03-01",
            "2026-12-27", // a Sunday
        ] {
            assert!(c.excludes_date(d(yes)), "{yes}");
        }
        for no in [
            "2026-12-24",
            "2026-08-08",
            "2026-08-21",
            "2026-03-02",
            "2026-12-26",
        ] {
            assert!(!c.excludes_date(d(no)), "{no}");
        }
    }

    #[test]
    fn the_calendars_timezone_decides_the_date() {
        // 2026-12-24T23:30Z is already the 25th in Berlin, still the 24th in New York.
        let berlin = rules("de", "Europe/Berlin", &["2026-12-25"], &[]);
        let ny = rules("us", "America/New_York", &["2026-12-25"], &[]);
        assert!(berlin.excludes(t("2026-12-24T23:30:00Z")));
        assert!(!ny.excludes(t("2026-12-24T23:30:00Z")));
        assert!(
            ny.excludes(t("2026-12-26T04:59:00Z")),
            "still the 25th in New York"
        );
        assert!(!ny.excludes(t("2026-12-26T05:00:00Z")));
    }

    /// `0 9 * * MON-FRI` in Berlin; Fri 2026-12-25 09:00 CET is 08:00Z.
    fn weekday_fate(dates: &[&str], on: OnExcluded) -> TickFate<'static> {
        let spec = CronSpec::parse("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
        let cal: &'static CalendarRules = Box::leak(Box::new(rules(
            "holidays",
            "Europe/Berlin",
            dates,
            &WEEKEND,
        )));
        Exclusions {
            calendars: vec![cal],
            on_excluded: on,
        }
        .fate(t("2026-12-25T08:00:00Z"), &spec)
    }

    #[test]
    fn hand_checked_moves_of_a_christmas_tick_in_berlin() {
        assert_eq!(
            weekday_fate(&["2026-12-25"], OnExcluded::Skip),
            TickFate::Skipped {
                calendar: "holidays"
            }
        );
        assert_eq!(
            weekday_fate(&["2026-12-25"], OnExcluded::NextBusinessDay),
            TickFate::Moved {
                to: t("2026-12-28T08:00:00Z"),
                calendar: "holidays"
            },
            "across the weekend to Monday"
        );
        assert_eq!(
            weekday_fate(&["2026-12-25", "2026-12-28"], OnExcluded::NextBusinessDay),
            TickFate::Moved {
                to: t("2026-12-29T08:00:00Z"),
                calendar: "holidays"
            },
            "across the weekend and a holiday to Tuesday"
        );
        assert_eq!(
            weekday_fate(&["2026-12-25"], OnExcluded::PreviousBusinessDay),
            TickFate::Moved {
                to: t("2026-12-24T08:00:00Z"),
                calendar: "holidays"
            }
        );
        // A tick on a day no calendar excludes fires.
        let spec = CronSpec::parse("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
        let cal = rules("holidays", "Europe/Berlin", &["2026-12-25"], &WEEKEND);
        let ex = Exclusions {
            calendars: vec![&cal],
            on_excluded: OnExcluded::NextBusinessDay,
        };
        assert_eq!(ex.fate(t("2026-12-24T08:00:00Z"), &spec), TickFate::Fire);
    }

    #[test]
    fn a_calendar_in_another_zone_decides_by_its_own_date() {
        // 09:00 Tokyo on Fri 2026-12-25 is 00:00Z, still Thu 24th in New York... and in
        // Berlin it is 01:00 on the 25th. A New York calendar excluding the 25th does not
        // exclude this tick; a Berlin one does.
        let spec = CronSpec::parse("0 9 * * *", "Asia/Tokyo").unwrap();
        let tick = t("2026-12-25T00:00:00Z");
        let ny = rules("us", "America/New_York", &["2026-12-25"], &[]);
        let berlin = rules("de", "Europe/Berlin", &["2026-12-25"], &[]);
        fn fate<'a>(c: &'a CalendarRules, spec: &CronSpec, tick: DateTime<Utc>) -> TickFate<'a> {
            Exclusions {
                calendars: vec![c],
                on_excluded: OnExcluded::NextBusinessDay,
            }
            .fate(tick, spec)
        }
        assert_eq!(fate(&ny, &spec, tick), TickFate::Fire);
        // Next Tokyo day at 09:00 is 2026-12-26T00:00Z: the 26th in Berlin, not excluded.
        assert_eq!(
            fate(&berlin, &spec, tick),
            TickFate::Moved {
                to: t("2026-12-26T00:00:00Z"),
                calendar: "de"
            }
        );
        // 18:00Z on the 25th is 13:00 on the 25th in New York.
        assert!(ny.excludes(t("2026-12-25T18:00:00Z")));
    }

    #[test]
    fn a_move_across_a_dst_change_keeps_the_wall_time() {
        // New York changes to EDT on Sun 2027-03-14. Fri 2027-03-12 09:00 EST is 14:00Z;
        // moved to Mon 2027-03-15 09:00 EDT, 13:00Z.
        let spec = CronSpec::parse("0 9 * * MON-FRI", "America/New_York").unwrap();
        let us = rules("us", "America/New_York", &["2027-03-12"], &WEEKEND);
        let ex = Exclusions {
            calendars: vec![&us],
            on_excluded: OnExcluded::NextBusinessDay,
        };
        assert_eq!(
            ex.fate(t("2027-03-12T14:00:00Z"), &spec),
            TickFate::Moved {
                to: t("2027-03-15T13:00:00Z"),
                calendar: "us"
            }
        );
        // 02:30 daily: Sat 2027-03-13 02:30 EST (07:30Z) moves to Sunday, where 02:30
        // does not exist: the first instant after the gap, 03:00 EDT (07:00Z).
        let spec = CronSpec::parse("30 2 * * *", "America/New_York").unwrap();
        let us = rules("us", "America/New_York", &["2027-03-13"], &[]);
        let ex = Exclusions {
            calendars: vec![&us],
            on_excluded: OnExcluded::NextBusinessDay,
        };
        assert_eq!(
            ex.fate(t("2027-03-13T07:30:00Z"), &spec),
            TickFate::Moved {
                to: t("2027-03-14T07:00:00Z"),
                calendar: "us"
            }
        );
    }

    #[test]
    fn no_business_day_within_reach_skips() {
        let spec = CronSpec::parse("0 9 * * *", "UTC").unwrap();
        let cal = CalendarRules::new(
            "closed",
            Tz::UTC,
            Vec::new(),
            vec![(d("2026-01-01"), d("2028-12-31"))],
            &[],
        );
        let ex = Exclusions {
            calendars: vec![&cal],
            on_excluded: OnExcluded::NextBusinessDay,
        };
        assert_eq!(
            ex.fate(t("2026-06-01T09:00:00Z"), &spec),
            TickFate::Skipped { calendar: "closed" }
        );
        // Within reach (the range ends in 300 days), it moves.
        let cal = CalendarRules::new(
            "closed",
            Tz::UTC,
            Vec::new(),
            vec![(d("2026-01-01"), d("2027-03-28"))],
            &[],
        );
        let ex = Exclusions {
            calendars: vec![&cal],
            on_excluded: OnExcluded::NextBusinessDay,
        };
        assert_eq!(
            ex.fate(t("2026-06-01T09:00:00Z"), &spec),
            TickFate::Moved {
                to: t("2027-03-29T09:00:00Z"),
                calendar: "closed"
            }
        );
    }

    #[test]
    fn upcoming_lists_fire_times_in_tick_order_and_stops_at_a_failed_search() {
        let window = |expr: &str| Window {
            spec: CronSpec::parse(expr, "Europe/Berlin").unwrap(),
            start_at: None,
            end_at: None,
        };
        let cal = rules("holidays", "Europe/Berlin", &["2026-12-25"], &WEEKEND);
        let ex = |on| Exclusions {
            calendars: vec![&cal],
            on_excluded: on,
        };
        let from = t("2026-12-24T00:00:00Z");
        let w = window("0 9 * * MON-FRI");
        let (fires, ticks) = upcoming(&w, &ex(OnExcluded::NextBusinessDay), from, 3);
        assert_eq!(
            fires,
            vec![
                t("2026-12-24T08:00:00Z"),
                t("2026-12-28T08:00:00Z"),
                t("2026-12-28T08:00:00Z")
            ]
        );
        assert_eq!(ticks[1].outcome, TickOutcome::Moved);
        assert_eq!(ticks[1].calendar.as_deref(), Some("holidays"));
        let (fires, ticks) = upcoming(&w, &ex(OnExcluded::Skip), from, 3);
        assert_eq!(
            fires,
            vec![
                t("2026-12-24T08:00:00Z"),
                t("2026-12-28T08:00:00Z"),
                t("2026-12-29T08:00:00Z")
            ]
        );
        assert_eq!(ticks[1].outcome, TickOutcome::Skipped);
        assert_eq!(ticks[1].reason, Some(RunReason::Calendar));
        // Closed for three years: one failed search, then the view stops.
        let closed = CalendarRules::new(
            "closed",
            Tz::UTC,
            Vec::new(),
            vec![(d("2026-01-01"), d("2028-12-31"))],
            &[],
        );
        let ex = Exclusions {
            calendars: vec![&closed],
            on_excluded: OnExcluded::NextBusinessDay,
        };
        let (fires, ticks) = upcoming(&window("0 9 * * *"), &ex, from, 5);
        assert!(fires.is_empty());
        assert_eq!(ticks.len(), 1);
        assert_eq!(ticks[0].outcome, TickOutcome::Skipped);
    }
}
