//! Calendars: named sets of excluded local dates (single dates, inclusive ranges, weekdays
//! off) in the calendar's own timezone, and what they do to a schedule's ticks.
//!
//! A tick at instant `T` is excluded by a calendar when `T`'s local date *in the
//! calendar's timezone* is an excluded date, inside an excluded range, or a weekday off.
//! A schedule names up to [`MAX_SCHEDULE_CALENDARS`] calendars (`exclude_calendars`) and
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
use serde::{Deserialize, Serialize, de::IgnoredAny};
use utoipa::ToSchema;

use super::spec::{CronSpec, Window, local_instant, parse_timezone};
use crate::field::{FieldError, validate_name};
pub use crate::kinds::{OnExcluded, RunReason, Weekday};

/// Excluded single dates one calendar holds at most.
pub const MAX_EXCLUDED_DATES: usize = 1_000;
/// Excluded ranges one calendar holds at most.
pub const MAX_EXCLUDED_RANGES: usize = 100;
/// Calendars one schedule names at most.
pub const MAX_SCHEDULE_CALENDARS: usize = 8;
/// Longest calendar description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1_024;
/// How far a move looks for a business day, in days.
pub const MAX_MOVE_DAYS: u32 = 366;
/// The years a calendar date may fall in.
pub const FIRST_YEAR: i32 = 1970;
pub const LAST_YEAR: i32 = 9999;

/// A calendar name: `[A-Za-z0-9._:-]{1,128}`, like a schedule id.
pub fn check_calendar_name(s: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "calendar name {} must be 1 to 128 characters from A-Z a-z 0-9 . _ : -",
            crate::text::quoted(s)
        ))
    }
}

/// One inclusive range of excluded dates, as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateRangeRequest {
    /// First excluded date, `YYYY-MM-DD`.
    #[schema(value_type = String, required, example = "2026-12-24", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub from: Option<String>,
    /// Last excluded date (inclusive), `YYYY-MM-DD`, not before `from`.
    #[schema(value_type = String, required, example = "2026-12-31", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub to: Option<String>,
}

/// `PUT /calendars/{name}` body. Read-only fields of a calendar are accepted and ignored,
/// so a calendar fetched with GET can be sent back as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarRequest {
    /// The owner (a `user` token may only name itself).
    #[schema(example = "alice", value_type = String, required, min_length = 1, max_length = 256)]
    pub user_id: Option<String>,
    /// IANA timezone the dates are local to; default `UTC`.
    #[schema(example = "Europe/Berlin", max_length = 64)]
    pub timezone: Option<String>,
    /// Excluded dates, `YYYY-MM-DD` (years 1970 to 9999), at most 1,000.
    #[schema(value_type = Option<Vec<String>>, example = json!(["2026-12-25"]))]
    pub excluded_dates: Option<Vec<String>>,
    /// Excluded inclusive date ranges, at most 100.
    pub excluded_ranges: Option<Vec<DateRangeRequest>>,
    /// Weekdays off (`mon` ... `sun`); not all seven.
    #[schema(value_type = Option<Vec<Weekday>>, example = json!(["sat", "sun"]))]
    pub weekly_off: Option<Vec<String>>,
    /// Whether every user may read and use it; only an admin may share. Default false.
    pub shared: Option<bool>,
    /// Free text, at most 1,024 characters.
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    #[schema(ignore)]
    #[serde(default)]
    pub name: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub updated_at: Option<IgnoredAny>,
}

/// A validated calendar definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarSpec {
    pub name: String,
    pub user_id: String,
    pub timezone: Tz,
    /// Sorted, without duplicates.
    pub excluded_dates: Vec<NaiveDate>,
    /// In the order given; each `from <= to`.
    pub excluded_ranges: Vec<(NaiveDate, NaiveDate)>,
    /// In week order, without duplicates.
    pub weekly_off: Vec<Weekday>,
    pub shared: bool,
    pub description: Option<String>,
}

/// A date exactly as `YYYY-MM-DD`, a real day, in years 1970 to 9999.
pub fn parse_date(text: &str, field: &'static str) -> Result<NaiveDate, FieldError> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let refuse = |why: &str| {
        FieldError::new(
            field,
            format!("{field}: {} {why}", crate::text::quoted(text)),
        )
    };
    if !shaped {
        return Err(refuse(
            "is not a date written YYYY-MM-DD (e.g. \"2026-12-25\")",
        ));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| refuse("is not a day of the calendar (month 01-12, day within the month)"))?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
        return Err(refuse("is outside the years 1970 to 9999"));
    }
    Ok(date)
}

impl CalendarRequest {
    /// Checks every field for the calendar `name`; the first problem found is returned,
    /// naming its field.
    pub fn validate(self, name: &str) -> Result<CalendarSpec, FieldError> {
        check_calendar_name(name).map_err(|m| FieldError::new("name", m))?;
        let user_id = self
            .user_id
            .ok_or_else(|| FieldError::new("user_id", "user_id is required"))?;
        validate_name(&user_id, "user_id")?;
        let timezone = parse_timezone(self.timezone.as_deref().unwrap_or("UTC"))?;
        let dates = self.excluded_dates.unwrap_or_default();
        if dates.len() > MAX_EXCLUDED_DATES {
            return Err(FieldError::new(
                "excluded_dates",
                format!(
                    "excluded_dates holds {} dates; at most {MAX_EXCLUDED_DATES} (use excluded_ranges for runs of days)",
                    dates.len()
                ),
            ));
        }
        let mut excluded_dates = dates
            .iter()
            .map(|d| parse_date(d, "excluded_dates"))
            .collect::<Result<Vec<_>, _>>()?;
        excluded_dates.sort_unstable();
        excluded_dates.dedup();
        let ranges = self.excluded_ranges.unwrap_or_default();
        if ranges.len() > MAX_EXCLUDED_RANGES {
            return Err(FieldError::new(
                "excluded_ranges",
                format!(
                    "excluded_ranges holds {} ranges; at most {MAX_EXCLUDED_RANGES}",
                    ranges.len()
                ),
            ));
        }
        let mut excluded_ranges = Vec::with_capacity(ranges.len());
        for r in ranges {
            let end = |v: Option<String>, which: &str| {
                v.ok_or_else(|| {
                    FieldError::new(
                        "excluded_ranges",
                        format!("excluded_ranges: each range needs \"from\" and \"to\"; {which} is missing"),
                    )
                })
                .and_then(|v| parse_date(&v, "excluded_ranges"))
            };
            let (from, to) = (end(r.from, "from")?, end(r.to, "to")?);
            if from > to {
                return Err(FieldError::new(
                    "excluded_ranges",
                    format!(
                        "excluded_ranges: from {from} is after to {to}; a range is from <= to (both inclusive)"
                    ),
                ));
            }
            excluded_ranges.push((from, to));
        }
        let mut weekly_off = self
            .weekly_off
            .unwrap_or_default()
            .iter()
            .map(|d| {
                d.parse::<Weekday>()
                    .map_err(|m| FieldError::new("weekly_off", format!("weekly_off {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        weekly_off.sort_unstable_by_key(|d| d.days_from_monday());
        weekly_off.dedup();
        if weekly_off.len() == 7 {
            return Err(FieldError::new(
                "weekly_off",
                "weekly_off names all seven days: no day would be left to fire on",
            ));
        }
        if let Some(d) = &self.description {
            if d.chars().count() > MAX_DESCRIPTION_LEN {
                return Err(FieldError::new(
                    "description",
                    format!("description is longer than {MAX_DESCRIPTION_LEN} characters"),
                ));
            }
            if d.contains('\0') {
                return Err(FieldError::new(
                    "description",
                    "description must not contain the NUL character",
                ));
            }
        }
        Ok(CalendarSpec {
            name: name.to_owned(),
            user_id,
            timezone,
            excluded_dates,
            excluded_ranges,
            weekly_off,
            shared: self.shared.unwrap_or(false),
            description: self.description,
        })
    }
}

/// A calendar's range as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DateRange {
    #[schema(value_type = String, example = "2026-12-24")]
    pub from: NaiveDate,
    #[schema(value_type = String, example = "2026-12-31")]
    pub to: NaiveDate,
}

/// A calendar as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Calendar {
    pub name: String,
    pub user_id: String,
    pub timezone: String,
    #[schema(value_type = Vec<String>)]
    pub excluded_dates: Vec<NaiveDate>,
    pub excluded_ranges: Vec<DateRange>,
    pub weekly_off: Vec<Weekday>,
    pub shared: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

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

impl CalendarSpec {
    pub fn rules(&self) -> CalendarRules {
        CalendarRules::new(
            &self.name,
            self.timezone,
            self.excluded_dates.clone(),
            self.excluded_ranges.clone(),
            &self.weekly_off,
        )
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
/// found among at most [`UPCOMING_SCAN`] ticks.
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
        if let Some(at) = fate.fire_at(t) {
            fires.push(at);
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

    fn request(body: serde_json::Value) -> Result<CalendarSpec, FieldError> {
        serde_json::from_value::<CalendarRequest>(body)
            .unwrap()
            .validate("cal")
    }

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
    fn requests_are_validated_naming_the_field() {
        let ok = request(serde_json::json!({
            "user_id": "alice", "timezone": "Europe/Berlin",
            "excluded_dates": ["2026-12-25", "2026-01-01", "2026-12-25"],
            "excluded_ranges": [{"from": "2026-12-24", "to": "2026-12-31"}],
            "weekly_off": ["sun", "sat"]
        }))
        .unwrap();
        assert_eq!(ok.excluded_dates, vec![d("2026-01-01"), d("2026-12-25")]);
        assert_eq!(ok.weekly_off, vec![Weekday::Sat, Weekday::Sun]);
        let field = |body: serde_json::Value| request(body).unwrap_err().field.into_owned();
        for (body, f) in [
            (serde_json::json!({"excluded_dates": []}), "user_id"),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["2026-02-30"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["2026/12/25"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["2026-1-05"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["1969-12-31"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_ranges": [{"from": "2026-12-31", "to": "2026-12-24"}]}),
                "excluded_ranges",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_ranges": [{"from": "2026-12-31"}]}),
                "excluded_ranges",
            ),
            (
                serde_json::json!({"user_id": "a", "weekly_off": ["mon","tue","wed","thu","fri","sat","sun"]}),
                "weekly_off",
            ),
            (
                serde_json::json!({"user_id": "a", "weekly_off": ["Monday"]}),
                "weekly_off",
            ),
            (
                serde_json::json!({"user_id": "a", "timezone": "Mars/Base"}),
                "timezone",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": vec!["2026-01-01"; 1001]}),
                "excluded_dates",
            ),
        ] {
            assert_eq!(field(body.clone()), f, "{body}");
        }
        assert_eq!(
            serde_json::from_value::<CalendarRequest>(serde_json::json!({"user_id": "a"}))
                .unwrap()
                .validate("bad name")
                .unwrap_err()
                .field,
            "name"
        );
    }
}
