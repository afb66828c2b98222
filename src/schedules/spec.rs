//! A schedule's rule (a parsed cron expression, or an interval: `interval.rs`) together
//! with its IANA timezone and DST policy: the only way to compute fire times in this crate.
//!
//! Dialect (croner 4, POSIX/Vixie): 5 fields are `min hour dom mon dow`, 6 fields are
//! `sec min hour dom mon dow`; `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`
//! aliases; `L`, `W`, `#`; month and weekday names. When both day-of-month and
//! day-of-week are restricted a day matching either fires; `+` before day-of-week asks
//! for both. A 7th (year) field is refused: it is not part of the contract.
//!
//! DST (croner, OCPS/Vixie): a fixed-time tick inside a spring-forward gap fires at the
//! first instant after the gap; interval ticks inside the gap are skipped; in a fall-back
//! fold a fixed-time tick fires once (first pass) and interval ticks fire on both passes.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

pub use super::interval::Interval;
pub use crate::kinds::{DstFold, DstGap};
use croner::{
    Cron, CronPattern, JobType,
    parser::{CronParser, Seconds, Year},
};

/// 0001-01-01T00:00:00Z, the start of the first year croner searches.
const YEAR_ONE: i64 = -62_135_596_800;
/// croner searches no further than this year.
const LAST_YEAR: i32 = 5000;
/// 5000-01-01T00:00:00Z: `next` answers nothing from here on.
const YEAR_LAST: i64 = 95_617_584_000;

/// Longest cron expression accepted; longer input is refused before parsing.
pub const MAX_CRON_LEN: usize = 256;

/// The IANA time zone database compiled into this binary (through `chrono-tz`): the rules
/// every fire time is computed with. A rule change reaches a fleet as a new build, rolled
/// out replica by replica (docs/CRON.md, "Time zone rules").
pub const TZDB_VERSION: &str = chrono_tz::IANA_TZDB_VERSION;

/// What a valid expression looks like, for error messages.
const EXPECTED_CRON: &str = "expected 5 fields \"minute hour day-of-month month day-of-week\" \
     (minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 or \
     SUN-SAT, 0 and 7 are Sunday), e.g. \"30 2 * * MON-FRI\"; 6 fields with a leading \
     second (0-59); or one of the aliases @yearly, @annually, @monthly, @weekly, @daily, \
     @hourly";

/// The aliases croner knows.
const ALIASES: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// A cron field: its name and the range of its numbers.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    plural: &'static str,
}

const SECOND: FieldKind = FieldKind {
    name: "second",
    min: 0,
    max: 59,
    plural: "seconds are 0-59",
};
const FIELDS: [FieldKind; 5] = [
    FieldKind {
        name: "minute",
        min: 0,
        max: 59,
        plural: "minutes are 0-59",
    },
    FieldKind {
        name: "hour",
        min: 0,
        max: 23,
        plural: "hours are 0-23",
    },
    FieldKind {
        name: "day-of-month",
        min: 1,
        max: 31,
        plural: "days of the month are 1-31 (or L, W)",
    },
    FieldKind {
        name: "month",
        min: 1,
        max: 12,
        plural: "months are 1-12 or JAN-DEC",
    },
    FieldKind {
        name: "day-of-week",
        min: 0,
        max: 7,
        plural: "days of the week are 0-7 or SUN-SAT, 0 and 7 are Sunday",
    },
];

/// Checks what croner reports badly or accepts although it is malformed: the field count,
/// unknown aliases, empty list elements (`1,,2`), numbers out of their field's range and
/// zero steps, each named by its field. The rest (names, `L`, `W`, `#`) is croner's.
fn check_fields(expr: &str) -> Result<(), String> {
    if expr.starts_with('@') {
        if ALIASES.iter().any(|a| a.eq_ignore_ascii_case(expr)) {
            return Ok(());
        }
        let hint = if expr.eq_ignore_ascii_case("@midnight") {
            " (@midnight is @daily)"
        } else {
            ""
        };
        return Err(format!(
            "cron_expr alias {expr:?} is not supported{hint}: the aliases are @yearly, \
             @annually, @monthly, @weekly, @daily and @hourly"
        ));
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let kinds: Vec<&FieldKind> = match fields.len() {
        5 => FIELDS.iter().collect(),
        6 => std::iter::once(&SECOND).chain(FIELDS.iter()).collect(),
        n => {
            return Err(format!(
                "cron_expr {expr:?} has {n} fields; {EXPECTED_CRON}"
            ));
        }
    };
    for (field, kind) in fields.iter().zip(kinds) {
        for element in field.split(',') {
            if element.is_empty() {
                return Err(format!(
                    "cron_expr {expr:?}: the {} field {field:?} has an empty list element \
                     (a comma with nothing on one side); list values as \"1,2,5\"",
                    kind.name
                ));
            }
            let (base, step) = match element.split_once('/') {
                Some((base, step)) => (base, Some(step)),
                None => (element, None),
            };
            if let Some(step) = step {
                if step.parse::<u32>().is_ok_and(|s| s == 0) {
                    return Err(format!(
                        "cron_expr {expr:?}: the {} field {field:?} has a step of 0; a step is \
                         at least 1, as in \"*/5\"",
                        kind.name
                    ));
                }
            }
            let numbers: Vec<&str> = match base.split_once('-') {
                Some((a, b)) => vec![a, b],
                None => vec![base],
            };
            for n in numbers {
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    let value = n.parse::<u32>().unwrap_or(u32::MAX);
                    if value < kind.min || value > kind.max {
                        return Err(format!(
                            "cron_expr {expr:?}: {n} is out of range in the {} field ({})",
                            kind.name, kind.plural
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Why a cron expression or timezone was refused, and which field it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

/// A schedule's daylight-saving policy. A field left `None` keeps croner's rule for the
/// tick's kind (module docs): a fixed-time tick shifts out of a gap and fires once in a
/// fold; an interval tick is skipped in a gap and fires on both passes of a fold. A field
/// that is set applies to every tick of the schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DstPolicy {
    pub gap: Option<DstGap>,
    pub fold: Option<DstFold>,
}

/// A schedule's rule in its timezone, under its DST policy: a cron expression, or an
/// interval (`interval.rs`: ticks in absolute time, which no DST change moves; the
/// timezone then only names the local days calendars and moves count in).
#[derive(Clone)]
pub struct CronSpec {
    rule: Rule,
    tz: Tz,
    dst: DstPolicy,
}

#[derive(Clone)]
enum Rule {
    Cron { expr: String, cron: Box<Cron> },
    Every(Interval),
}

/// A cron rule with what its searches need.
struct CronRule<'a> {
    cron: &'a Cron,
    tz: Tz,
    dst: DstPolicy,
}

impl fmt::Debug for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Cron { expr, .. } => write!(f, "CronSpec({expr:?} in {})", self.tz.name()),
            Rule::Every(i) => write!(
                f,
                "CronSpec(every {} from {} in {})",
                i.text(),
                i.anchor(),
                self.tz.name()
            ),
        }
    }
}

impl PartialEq for CronSpec {
    fn eq(&self, other: &Self) -> bool {
        let same_rule = match (&self.rule, &other.rule) {
            (Rule::Cron { expr: a, .. }, Rule::Cron { expr: b, .. }) => a == b,
            (Rule::Every(a), Rule::Every(b)) => a == b,
            _ => false,
        };
        same_rule && self.tz == other.tz && self.dst == other.dst
    }
}

impl CronSpec {
    /// Parses `expr` in the IANA zone `timezone`.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, SpecError> {
        let tz = parse_timezone(timezone)?;
        let invalid = |message: String| SpecError {
            field: "cron_expr",
            message,
        };
        if expr.trim().is_empty() {
            return Err(invalid(format!("cron_expr is empty: {EXPECTED_CRON}")));
        }
        if expr.len() > MAX_CRON_LEN {
            return Err(invalid(format!(
                "cron_expr is longer than {MAX_CRON_LEN} characters"
            )));
        }
        if expr.trim() != expr {
            return Err(invalid(format!(
                "cron_expr {expr:?} has leading or trailing whitespace: remove it"
            )));
        }
        check_fields(expr).map_err(invalid)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| {
                invalid(format!(
                    "cron_expr {expr:?} is not valid ({e}): {EXPECTED_CRON}"
                ))
            })?;
        Ok(Self {
            rule: Rule::Cron {
                expr: expr.to_owned(),
                cron: Box::new(cron),
            },
            tz,
            dst: DstPolicy::default(),
        })
    }

    /// An interval rule in the IANA zone `timezone`.
    pub fn every(interval: Interval, timezone: &str) -> Result<Self, SpecError> {
        Ok(Self {
            rule: Rule::Every(interval),
            tz: parse_timezone(timezone)?,
            dst: DstPolicy::default(),
        })
    }

    /// The rule a stored schedule describes: its `cron_expr`, or its interval (seconds)
    /// and anchor.
    pub fn from_columns(
        cron_expr: Option<&str>,
        interval_seconds: Option<i64>,
        anchor: Option<DateTime<Utc>>,
        timezone: &str,
        dst: DstPolicy,
    ) -> Result<Self, SpecError> {
        let spec = match (cron_expr, interval_seconds) {
            (Some(expr), None) => Self::parse(expr, timezone)?,
            (None, Some(seconds)) => Self::every(
                Interval::new(seconds, anchor).map_err(|message| SpecError {
                    field: "interval",
                    message,
                })?,
                timezone,
            )?,
            _ => {
                return Err(SpecError {
                    field: "cron_expr",
                    message: "a schedule has either cron_expr or interval".into(),
                });
            }
        };
        Ok(spec.with_dst(dst))
    }

    /// The same rule under the daylight-saving policy `dst` (an interval rule has no
    /// use for one: its ticks are in absolute time).
    #[must_use]
    pub fn with_dst(mut self, dst: DstPolicy) -> Self {
        self.dst = dst;
        self
    }

    pub fn dst(&self) -> DstPolicy {
        self.dst
    }

    /// The cron expression; `None` for an interval rule.
    pub fn expr(&self) -> Option<&str> {
        match &self.rule {
            Rule::Cron { expr, .. } => Some(expr),
            Rule::Every(_) => None,
        }
    }

    /// The interval; `None` for a cron rule.
    pub fn interval(&self) -> Option<&Interval> {
        match &self.rule {
            Rule::Cron { .. } => None,
            Rule::Every(i) => Some(i),
        }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// A human description of the rule ("At 00:00", "Every 90 minutes, counted from...").
    pub fn describe(&self) -> String {
        match &self.rule {
            Rule::Cron { cron, .. } => cron.describe(),
            Rule::Every(i) => i.describe(),
        }
    }

    fn cron_rule_of<'a>(&self, cron: &'a Cron) -> CronRule<'a> {
        CronRule {
            cron,
            tz: self.tz,
            dst: self.dst,
        }
    }

    /// The first fire time at or after `t` (`inclusive`) or strictly after it, under the
    /// schedule's DST policy. `None` when the rule never matches again (`0 0 30 2 *`).
    pub fn next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Cron { cron, .. } => self.cron_rule_of(cron).next(t, inclusive),
            Rule::Every(i) => i.next(t, inclusive),
        }
    }

    /// The last fire time at or before `t` (`inclusive`) or strictly before it. For a
    /// cron rule, croner's backward search: around DST transitions it does not always
    /// mirror the forward one (`next`/`iter_from` define the ticks), so use it to find
    /// where to start walking forward, not as a tick itself. `None` when there is none.
    pub fn prev(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Cron { cron, .. } => self.cron_rule_of(cron).prev(t, inclusive),
            Rule::Every(i) => i.prev(t, inclusive),
        }
    }

    /// The parsed pattern, for code that counts ticks by calendar arithmetic; `None` for
    /// an interval rule.
    pub(crate) fn pattern(&self) -> Option<&CronPattern> {
        match &self.rule {
            Rule::Cron { cron, .. } => Some(&cron.pattern),
            Rule::Every(_) => None,
        }
    }

    /// For a fixed-time expression (one second, one minute and one hour, croner's DST
    /// class that fires once in a fall-back fold and after a spring-forward gap), its time
    /// of day in seconds after midnight; `None` for an interval expression or rule.
    pub fn fixed_time_of_day(&self) -> Option<u32> {
        match &self.rule {
            Rule::Cron { cron, .. } => self.cron_rule_of(cron).fixed_time_of_day(),
            Rule::Every(_) => None,
        }
    }

    /// Fire times from `t` on (inclusive), in order.
    pub fn iter_from(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = Some((t, true));
        std::iter::from_fn(move || {
            let (from, inclusive) = cursor?;
            let next = self.next(from, inclusive);
            cursor = next.map(|n| (n, false));
            next
        })
    }
}

impl CronRule<'_> {
    fn next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        // Outside croner's years there is no tick to add or drop (and converting such an
        // instant to local time may overflow).
        if self.dst == DstPolicy::default()
            || t.timestamp() <= YEAR_ONE
            || t.timestamp() >= YEAR_LAST
        {
            return self.raw_next(t, inclusive);
        }
        let fixed = self.fixed_time_of_day();
        // croner's ticks the policy drops: a fixed-time tick croner moved out of a gap
        // (its wall time is not its time of day) under `skip`; the second pass of an
        // interval tick in a fold under `once`. Each is a step within one gap or fold.
        let dropped = |c: DateTime<Utc>| match fixed {
            Some(tod) => {
                self.dst.gap == Some(DstGap::Skip)
                    && c.with_timezone(&self.tz).num_seconds_from_midnight() != tod
            }
            None => self.dst.fold == Some(DstFold::Once) && self.is_second_pass(c),
        };
        let mut found = self.raw_next(t, inclusive);
        while let Some(c) = found.filter(|c| dropped(*c)) {
            // A dropped second pass: the rest of the fold's second pass goes too, so look
            // on from the fold's end in one step.
            found = match fixed {
                None => fold_end(self.tz, c).and_then(|e| self.raw_next(e, true)),
                Some(_) => self.raw_next(c, false),
            };
        }
        // Ticks the policy adds, before croner's next one.
        let after_t = |c: &DateTime<Utc>| *c > t || (inclusive && *c == t);
        let added = match fixed {
            Some(tod) if self.dst.fold == Some(DstFold::Twice) => self.second_pass(t, tod),
            None if self.dst.gap == Some(DstGap::Shift) => self.shifted_out_of_gap(t, inclusive),
            _ => None,
        }
        .filter(after_t);
        match (found, added) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        }
    }

    /// Whether `c` is the second pass of a wall time that repeats (a fall-back fold).
    fn is_second_pass(&self, c: DateTime<Utc>) -> bool {
        let wall = c.with_timezone(&self.tz).naive_local();
        matches!(self.tz.from_local_datetime(&wall),
            LocalResult::Ambiguous(_, second) if second.with_timezone(&Utc) == c)
    }

    /// The earliest second pass at or after `t` of a fixed-time tick (time of day `tod`)
    /// whose wall time repeats, on `t`'s local day or the day before (a fold is shorter
    /// than a day), if its first pass is a tick.
    fn second_pass(&self, t: DateTime<Utc>, tod: u32) -> Option<DateTime<Utc>> {
        let today = t.with_timezone(&self.tz).date_naive();
        [today.pred_opt()?, today]
            .into_iter()
            .filter_map(|day| {
                let wall = day.and_hms_opt(tod / 3600, tod / 60 % 60, tod % 60)?;
                match self.tz.from_local_datetime(&wall) {
                    LocalResult::Ambiguous(first, second)
                        if self.cron.is_time_matching(&first).unwrap_or(false) =>
                    {
                        Some(second.with_timezone(&Utc))
                    }
                    _ => None,
                }
            })
            .filter(|s| *s >= t)
            .min()
    }

    /// Under `dst_gap = shift`, an interval tick whose wall time falls in a spring-forward
    /// gap fires at the first instant after the gap (all of one gap's ticks are one tick
    /// there). The first wall-clock match from `t` on, if it does not exist, gives it.
    fn shifted_out_of_gap(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz).naive_local();
        let whole = local.with_nanosecond(0)?;
        let inclusive = inclusive && local.nanosecond() == 0;
        if whole.year() >= LAST_YEAR || whole.and_utc().timestamp() <= YEAR_ONE {
            return None;
        }
        let wall = self
            .cron
            .find_next_occurrence(&Utc.from_utc_datetime(&whole), inclusive)
            .ok()?
            .naive_utc();
        match self.tz.from_local_datetime(&wall) {
            LocalResult::None => gap_end(self.tz, wall),
            _ => None,
        }
    }

    /// croner's next fire time (its DST rules), see [`CronSpec::next`].
    fn raw_next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        // croner counts in whole seconds and drops `t`'s fraction, so from 10:47:00.5 it
        // would answer 10:47:00, before `t` (found by the property tests). And croner's
        // walk meets a fixed-time tick moved past a spring-forward gap only from before the
        // gap: searching inclusively from the moved tick's own instant skips it (so a
        // schedule whose `next_due_at` is that tick would lose it). So always search
        // exclusively: from a fraction's whole second, or from the second before `t`.
        let whole = t.with_nanosecond(0)?;
        // croner knows the years 1 to 5000. From before year 1 it would walk every empty
        // year up to it (70 ms from chrono's earliest instant); start there instead, which
        // gives the same answer. From year 5000 on there is no answer; near chrono's last
        // instant croner would even panic converting to local time in a zone east of UTC
        // (found by the property tests).
        if whole.year() >= LAST_YEAR {
            return None;
        }
        let origin = if t.nanosecond() == 0 && inclusive {
            whole.checked_sub_signed(TimeDelta::seconds(1))
        } else {
            Some(whole)
        };
        let floor = DateTime::from_timestamp(YEAR_ONE, 0)?;
        let (t, inclusive) = match origin {
            Some(origin) if origin >= floor => (origin, false),
            _ => (floor, true),
        };
        CRON_STEPS.with(|c| c.set(c.get() + 1));
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, inclusive)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn prev(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let found = self.raw_prev(t, inclusive)?;
        if found.timestamp() <= YEAR_ONE || found.timestamp() >= YEAR_LAST {
            return Some(found);
        }
        // Under `dst_fold = once` an interval tick's second pass is no tick: look on from
        // before the fold's second pass in one step.
        if self.dst.fold == Some(DstFold::Once)
            && self.fixed_time_of_day().is_none()
            && self.is_second_pass(found)
        {
            return self.raw_prev(fold_start(self.tz, found)?, false);
        }
        Some(found)
    }

    fn raw_prev(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        // croner drops the fraction: from 10:47:00.5 the answer may be 10:47:00 itself.
        let (t, inclusive) = if t.nanosecond() == 0 {
            (t, inclusive)
        } else {
            (t.with_nanosecond(0)?, true)
        };
        // `next` answers nothing from year 5000 on, so neither does the search back from
        // there; before year 1 there is nothing at all.
        let (t, inclusive) = match DateTime::from_timestamp(YEAR_LAST, 0) {
            Some(ceiling) if t > ceiling => (ceiling, false),
            _ => (t, inclusive),
        };
        if t.timestamp() <= YEAR_ONE {
            return None;
        }
        CRON_STEPS.with(|c| c.set(c.get() + 1));
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, inclusive)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn fixed_time_of_day(&self) -> Option<u32> {
        if self.cron.determine_job_type() != JobType::FixedTime {
            return None;
        }
        let only = |values: Vec<u16>| values.first().copied().map(u32::from);
        let p = &self.cron.pattern;
        Some(
            only(p.hours.values())? * 3600
                + only(p.minutes.values())? * 60
                + only(p.seconds.values())?,
        )
    }
}

thread_local! {
    static CRON_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Cron steps (searches for a next or previous fire time) this thread has taken: how tests
/// check that a piece of planning is bounded in steps, not in time.
pub fn cron_steps() -> u64 {
    CRON_STEPS.with(std::cell::Cell::get)
}

/// How many whole seconds from `wall` (going forward for `step` 1, back for -1) the wall
/// clock stays in the kind of local time `within` names (`LocalResult::None`: a
/// spring-forward gap; `Ambiguous`: a fall-back fold): the first distance at which it is
/// out. Gaps and folds last less than 4 hours in every real zone.
fn distance_out(
    tz: Tz,
    wall: NaiveDateTime,
    step: i64,
    within: fn(&LocalResult<DateTime<Tz>>) -> bool,
) -> Option<i64> {
    let inside_at = |s: i64| {
        wall.checked_add_signed(TimeDelta::seconds(step * s))
            .map(|w| within(&tz.from_local_datetime(&w)))
    };
    let (mut inside, mut out) = (0_i64, 4 * 3600_i64);
    if inside_at(out)? {
        return None;
    }
    while out - inside > 1 {
        let mid = inside + (out - inside) / 2;
        if inside_at(mid)? {
            inside = mid;
        } else {
            out = mid;
        }
    }
    Some(out)
}

fn in_gap(r: &LocalResult<DateTime<Tz>>) -> bool {
    matches!(r, LocalResult::None)
}

fn in_fold(r: &LocalResult<DateTime<Tz>>) -> bool {
    matches!(r, LocalResult::Ambiguous(..))
}

/// The instant of the wall time `seconds` after `wall` (its latest, when it repeats).
fn instant_at(tz: Tz, wall: NaiveDateTime, seconds: i64) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&wall.checked_add_signed(TimeDelta::seconds(seconds))?)
        .latest()
        .map(|d| d.with_timezone(&Utc))
}

/// The instant of the wall time `wall` in `tz` as a fixed-time tick has it: its first pass
/// when it happens twice (a fall-back fold), the first instant after the gap when it does
/// not exist (a spring-forward gap). `None` only at the ends of time.
pub fn local_instant(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => Some(d.with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, wall),
    }
}

/// The first instant after the spring-forward gap that holds the wall time `wall` (which
/// does not exist in `tz`).
fn gap_end(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    instant_at(tz, wall, distance_out(tz, wall, 1, in_gap)?)
}

/// The first instant after the fall-back fold that `c` is in the second pass of: where the
/// wall clock leaves the repeated times.
fn fold_end(tz: Tz, c: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let wall = c.with_timezone(&tz).naive_local();
    instant_at(tz, wall, distance_out(tz, wall, 1, in_fold)?)
}

/// The first instant of the second pass of the fall-back fold that `c` is in the second
/// pass of (the instant the clock went back): the earliest repeated wall time, second pass.
fn fold_start(tz: Tz, c: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let wall = c.with_timezone(&tz).naive_local();
    instant_at(tz, wall, 1 - distance_out(tz, wall, -1, in_fold)?)
}

/// An IANA timezone name (`Europe/London`, `UTC`). Abbreviations that are not zone names
/// (`EST5EDT` is one, `CEST` is not) follow the IANA database.
pub fn parse_timezone(name: &str) -> Result<Tz, SpecError> {
    let refuse = || SpecError {
        field: "timezone",
        message: format!(
            "timezone {} is not an IANA timezone name (e.g. \"Europe/Berlin\")",
            crate::text::quoted(name)
        ),
    };
    // The longest IANA name is 32 characters; a longer one is refused unexamined.
    if name.len() > MAX_TIMEZONE_LEN {
        return Err(refuse());
    }
    if name.trim() != name {
        return Err(SpecError {
            field: "timezone",
            message: format!(
                "timezone {} has leading or trailing whitespace: remove it (e.g. \"UTC\")",
                crate::text::quoted(name)
            ),
        });
    }
    Tz::from_str(name).map_err(|_| refuse())
}

/// Longest timezone name accepted.
pub const MAX_TIMEZONE_LEN: usize = 64;

/// A schedule's window: the cron spec bounded by `start_at` and `end_at` (both inclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub spec: CronSpec,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
}

impl Window {
    /// Ticks at or after `from` (and at or after `start_at`), up to `end_at`.
    pub fn ticks_from(&self, from: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let from = self.start_at.map_or(from, |s| s.max(from));
        let end = self.end_at;
        self.spec
            .iter_from(from)
            .take_while(move |t| end.is_none_or(|e| *t <= e))
    }

    /// The first tick at or after `from`, if any is left.
    pub fn first_tick_from(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.ticks_from(from).next()
    }
}
