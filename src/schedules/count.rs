//! Counting and locating a window's ticks in a range at a cost that does not grow with the
//! number of ticks, so that a schedule a year behind is planned as fast as one a minute
//! behind (DESIGN.md §2.5, §4). Pure: no I/O, no clock.
//!
//! The ticks are exactly those [`Window::ticks_from`] yields: `start_at` / `end_at`
//! inclusive, croner's DST rules as [`CronSpec::next`] applies them (see `spec.rs`).
//!
//! - [`count_ticks`] counts the ticks in `[from, to)`. It first walks them with croner,
//!   at most `budget` steps (the ground truth, and the cheapest way for a short range).
//!   The rest of the range is counted by calendar arithmetic, with no croner step: the
//!   range is cut where the zone's UTC offset changes, and on each piece local time is
//!   UTC plus a constant, so a matching local day holds `|hours| × |minutes| × |seconds|`
//!   ticks (partial days counted by time of day). At the seams the DST rules are applied
//!   as croner does: interval ticks whose local time repeats (fall-back fold) fire on
//!   both passes and those whose local time is skipped (spring-forward gap) do not fire;
//!   a fixed-time tick (one hour, minute and second) fires on the first pass of a fold
//!   only, and one in a gap fires at the first instant after the gap.
//!
//!   Cost: at most `budget` croner steps (`steps`) plus, for the arithmetic, one
//!   `day_match` per local day and one offset lookup per hour of the range, over at most
//!   [`MAX_DAYS`] days. Exact (`exact = true`) except when the range runs past
//!   [`MAX_DAYS`] days after the walk, or outside the years 2..4999 (croner's limits,
//!   with a margin): then only the part inside is counted and the result is a lower
//!   bound (never above the truth), with `exact = false`.
//!
//!   One assumption: the UTC offset is probed every hour (then bisected to the second),
//!   so the zone's offset changes must be at least an hour apart, as in real zones;
//!   two changes closer than that could be miscounted.
//!
//! - [`last_ticks_before`] returns the latest `n` ticks in `[from, to)`, ascending: exactly
//!   the last `n` of `ticks_from(from).take_while(|t| *t < to)`. It steps back `n` times
//!   with croner's backward search to find where to start, then walks forward with
//!   `ticks_from`'s own steps, so the answer agrees with forward iteration even where
//!   croner's backward search does not (DST folds and gaps). Cost: about `2n + 1` croner
//!   steps whatever the range length; more rounds only where the backward search
//!   disagrees with the forward one.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{CronPattern, Weekday};

use super::{
    CronSpec, Window,
    spec::{DstFold, DstGap, DstPolicy},
};

/// Most local days the arithmetic counts in one call; beyond, the count is a lower bound.
pub const MAX_DAYS: i64 = 800;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
/// How far back the arithmetic looks for the wall clock a fold or gap started from
/// (longer than any UTC offset change).
const CONTEXT: i64 = 2 * DAY;
/// croner's search past a spring-forward gap for a fixed-time tick gives up after this
/// many seconds (`MAX_GAP_SEARCH_SECONDS`), and its iteration ends there.
const CRONER_GAP_SEARCH: i64 = 2 * HOUR;
/// 0002-01-01T00:00:00Z and 4999-01-01T00:00:00Z: croner's year range (1..=5000), less a
/// margin for any UTC offset. Outside, counts are lower bounds.
const FIRST_COUNTED: i64 = -62_104_060_800;
const LAST_COUNTED: i64 = 95_586_048_000;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_DAY: i64 = 719_163;

/// How many ticks a range holds, and what it cost to find out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickCount {
    pub count: u64,
    /// `false`: `count` is a lower bound (the range was too long or too far out).
    pub exact: bool,
    /// croner steps (next / previous occurrence searches) spent.
    pub steps: usize,
}

/// The ticks `window.ticks_from(from)` yields with `from <= t < to`; see the module docs.
pub fn count_ticks(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    budget: usize,
) -> TickCount {
    let Some((lo, hi)) = bounds(window, from, to) else {
        return TickCount {
            count: 0,
            exact: true,
            steps: 0,
        };
    };
    // Ticks are whole seconds: `t >= lo` is `t >= ceil(lo)`, `t < hi` is `t < ceil(hi)`.
    let (lo, hi) = (ceil_secs(lo), ceil_secs(hi));
    let in_years = lo >= FIRST_COUNTED && hi <= LAST_COUNTED;
    let (lo, hi) = (lo.max(FIRST_COUNTED), hi.min(LAST_COUNTED));
    if lo >= hi {
        return TickCount {
            count: 0,
            exact: in_years,
            steps: 0,
        };
    }

    let spec = &window.spec;
    // An interval's ticks are counted by division, exactly, at no step.
    if let Some(interval) = spec.interval() {
        return TickCount {
            count: interval.count(lo, hi),
            exact: in_years,
            steps: 0,
        };
    }
    // Walk as `ticks_from` does: inclusive from `lo`, then exclusive from each tick.
    let (mut count, mut steps) = (0, 0);
    let mut last: Option<i64> = None;
    while steps < budget {
        steps += 1;
        let next = match last {
            None => spec.next(at(lo), true),
            Some(t) => spec.next(at(t), false),
        };
        match next.map(|t| t.timestamp()) {
            Some(t) if t < hi => {
                count += 1;
                last = Some(t);
            }
            _ => {
                return TickCount {
                    count,
                    exact: in_years,
                    steps,
                };
            }
        }
    }

    let first = last.map_or(lo, |t| t + 1);
    let end = hi.min(first.saturating_add(MAX_DAYS * DAY));
    let (rest, complete) = Calendar::new(spec).map_or((0, false), |c| c.count(first, end));
    TickCount {
        count: count + rest,
        exact: in_years && complete && end == hi,
        steps,
    }
}

/// The latest `n` ticks in `[from, to)`, ascending; see the module docs.
pub fn last_ticks_before(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    last_ticks_before_with_steps(window, from, to, n).0
}

/// [`last_ticks_before`], with the croner steps it spent.
pub fn last_ticks_before_with_steps(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    n: usize,
) -> (Vec<DateTime<Utc>>, usize) {
    let mut steps = 0;
    let Some((lo, hi)) = bounds(window, from, to) else {
        return (Vec::new(), steps);
    };
    if n == 0 {
        return (Vec::new(), steps);
    }
    let spec = &window.spec;
    // `found` holds every tick in `[upper, hi)`, ascending.
    let mut found: Vec<DateTime<Utc>> = Vec::new();
    let mut upper = hi;
    loop {
        // Step back far enough for the ticks still wanted, but never below `lo`.
        let mut start = upper;
        let mut at_lo = false;
        for _ in found.len()..n {
            steps += 1;
            match spec.prev(start, false) {
                Some(p) if p >= lo && p < start => start = p,
                _ => {
                    start = lo;
                    at_lo = true;
                    break;
                }
            }
        }
        // Walk forward as `ticks_from` does, from `start` up to the ticks already found.
        let mut cursor = (start, true);
        let mut chunk = Vec::new();
        loop {
            steps += 1;
            match spec.next(cursor.0, cursor.1) {
                Some(t) if t < upper => {
                    chunk.push(t);
                    cursor = (t, false);
                }
                _ => break,
            }
        }
        chunk.append(&mut found);
        found = chunk;
        if found.len() >= n || at_lo || start <= lo {
            break;
        }
        upper = start;
    }
    let skip = found.len().saturating_sub(n);
    found.drain(..skip);
    (found, steps)
}

/// `[max(from, start_at), min(to, end_at + ε))`, or `None` when empty. `end_at` is
/// inclusive and ticks are whole seconds, so the end is the second after `end_at`'s.
fn bounds(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let lo = window.start_at.map_or(from, |s| s.max(from));
    let hi = match window.end_at {
        Some(end) => at(end.timestamp().saturating_add(1)).min(to),
        None => to,
    };
    (lo < hi).then_some((lo, hi))
}

fn ceil_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

/// The instant `secs` after the Unix epoch (clamped to chrono's range).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// The times of day a pattern matches (seconds, minutes, hours), with prefix counts so
/// the matches in any part of a day are counted in O(1).
struct TimesOfDay {
    hours: [bool; 24],
    minutes: [bool; 60],
    hours_before: [u64; 25],
    minutes_before: [u64; 61],
    seconds_before: [u64; 61],
}

impl TimesOfDay {
    fn new(p: &CronPattern) -> Self {
        fn table<const N: usize, const M: usize>(values: Vec<u16>) -> ([bool; N], [u64; M]) {
            let mut set = [false; N];
            for v in values {
                if let Some(slot) = set.get_mut(usize::from(v)) {
                    *slot = true;
                }
            }
            let mut before = [0; M];
            for i in 0..N {
                before[i + 1] = before[i] + u64::from(set[i]);
            }
            (set, before)
        }
        let (hours, hours_before) = table::<24, 25>(p.hours.values());
        let (minutes, minutes_before) = table::<60, 61>(p.minutes.values());
        let (_, seconds_before) = table::<60, 61>(p.seconds.values());
        Self {
            hours,
            minutes,
            hours_before,
            minutes_before,
            seconds_before,
        }
    }

    /// Matching times of day in `[00:00:00, tod)`, `tod` in seconds (0..=86_400).
    fn below(&self, tod: i64) -> u64 {
        let per_minute = self.seconds_before[60];
        let per_hour = self.minutes_before[60] * per_minute;
        if tod >= DAY {
            return self.hours_before[24] * per_hour;
        }
        let tod = usize::try_from(tod.max(0)).unwrap_or(0);
        let (h, m, s) = (tod / 3600, tod % 3600 / 60, tod % 60);
        let mut n = self.hours_before[h] * per_hour;
        if self.hours[h] {
            n += self.minutes_before[m] * per_minute;
            if self.minutes[m] {
                n += self.seconds_before[s];
            }
        }
        n
    }
}

/// Calendar arithmetic over one spec; see the module docs.
struct Calendar<'a> {
    tz: Tz,
    pattern: &'a CronPattern,
    /// The time of day of a fixed-time expression, in seconds.
    fixed: Option<i64>,
    times: TimesOfDay,
    dst: DstPolicy,
}

/// A fixed-time tick that falls in a spring-forward gap.
enum GapTick {
    None,
    /// It fires at the first instant after the gap.
    Fires,
    /// croner gives up looking past the gap and the iteration ends there.
    EndsIteration,
}

impl<'a> Calendar<'a> {
    /// `None` for an interval rule (counted by division instead).
    fn new(spec: &'a CronSpec) -> Option<Self> {
        let pattern = spec.pattern()?;
        Some(Self {
            tz: spec.timezone(),
            pattern,
            fixed: spec.fixed_time_of_day().map(i64::from),
            times: TimesOfDay::new(pattern),
            dst: spec.dst(),
        })
    }

    /// Ticks in `[first, end)` (seconds); `false` when croner's iteration would end early
    /// in a way this arithmetic does not follow (the count then covers the part before,
    /// a lower bound).
    fn count(&self, first: i64, end: i64) -> (u64, bool) {
        let mut n = 0;
        // A fixed-time tick depends on the wall clock already reached before `first`
        // (fold: did it fire on the first pass? gap: which wall times were skipped?).
        // So does an interval tick under a DST policy (was the wall time reached, was a
        // gap skipped?).
        let mut a = if self.fixed.is_some() || self.dst != DstPolicy::default() {
            first - CONTEXT
        } else {
            first
        };
        let skip_gap = self.dst.gap == Some(DstGap::Skip);
        let shift_gap = self.dst.gap == Some(DstGap::Shift);
        // The highest wall clock time (local seconds, exclusive) reached so far.
        let mut wall_reached: Option<i64> = None;
        while a < end {
            let offset = self.offset(a);
            let b = self.segment_end(a, end, offset);
            // On [a, b) local time is UTC + offset.
            let (wall_a, wall_b) = (a + offset, b + offset);
            match self.fixed {
                None => {
                    // Under `shift`, the ticks of a gap are one tick at its end, unless
                    // the end is a tick already.
                    if let Some(gap_from) = wall_reached.filter(|w| *w < wall_a)
                        && a >= first
                        && shift_gap
                        && self.count_times(gap_from, wall_a) > 0
                        && self.count_times(wall_a, wall_a + 1) == 0
                    {
                        n += 1;
                    }
                    // Both passes of a fold fire, unless the policy says `once`.
                    let from = match self.dst.fold {
                        Some(DstFold::Once) => wall_a.max(wall_reached.unwrap_or(wall_a)),
                        _ => wall_a,
                    }
                    .max(first + offset);
                    if from < wall_b {
                        n += self.count_times(from, wall_b);
                    }
                }
                Some(tod) => {
                    if let Some(gap_from) = wall_reached.filter(|w| *w < wall_a)
                        && a >= first
                    {
                        match self.gap_tick(gap_from, wall_a, tod) {
                            GapTick::None => {}
                            GapTick::Fires if !skip_gap => n += 1,
                            GapTick::Fires => {}
                            GapTick::EndsIteration => return (n, false),
                        }
                    }
                    // Wall times already reached fired on the first pass, if at all
                    // (and fire again under `twice`).
                    let from = match self.dst.fold {
                        Some(DstFold::Twice) => wall_a,
                        _ => wall_a.max(wall_reached.unwrap_or(wall_a)),
                    }
                    .max(first + offset);
                    if from < wall_b {
                        n += self.count_fixed(from, wall_b, tod);
                    }
                }
            }
            wall_reached = Some(wall_reached.map_or(wall_b, |w| w.max(wall_b)));
            a = b;
        }
        (n, true)
    }

    /// Matching wall clock times in `[from, to)` (local seconds), both passes of a fold
    /// counted by the caller's segments.
    fn count_times(&self, from: i64, to: i64) -> u64 {
        let mut n = 0;
        for day in from.div_euclid(DAY)..=(to - 1).div_euclid(DAY) {
            if !self.day_matches(day) {
                continue;
            }
            let start = day * DAY;
            let lo = from.max(start) - start;
            let hi = to.min(start + DAY) - start;
            n += self.times.below(hi) - self.times.below(lo);
        }
        n
    }

    /// Days in `[from, to)` (local seconds) whose fixed time of day lies in the range.
    fn count_fixed(&self, from: i64, to: i64, tod: i64) -> u64 {
        let mut n = 0;
        for day in from.div_euclid(DAY)..=(to - 1).div_euclid(DAY) {
            let wall = day * DAY + tod;
            if (from..to).contains(&wall) && self.day_matches(day) {
                n += 1;
            }
        }
        n
    }

    /// What croner does with a fixed-time tick in the skipped wall times `[from, to)`:
    /// the first one on a matching day moves to the end of the gap, if that end is on a
    /// matching day too.
    fn gap_tick(&self, from: i64, to: i64, tod: i64) -> GapTick {
        for day in from.div_euclid(DAY)..=(to - 1).div_euclid(DAY) {
            let wall = day * DAY + tod;
            if !(from..to).contains(&wall) || !self.day_matches(day) {
                continue;
            }
            if to - wall > CRONER_GAP_SEARCH {
                return GapTick::EndsIteration;
            }
            return if self.day_matches(to.div_euclid(DAY)) {
                GapTick::Fires
            } else {
                GapTick::None
            };
        }
        GapTick::None
    }

    /// Whether the local day `day` (days since 1970-01-01) matches the pattern's day,
    /// month and year fields, as croner decides it.
    fn day_matches(&self, day: i64) -> bool {
        let Some(date) = i32::try_from(day + UNIX_EPOCH_DAY)
            .ok()
            .and_then(NaiveDate::from_num_days_from_ce_opt)
        else {
            return false;
        };
        let weekday = Weekday::from_days_from_sunday(date.weekday().num_days_from_sunday());
        let p = self.pattern;
        p.year_match(date.year()).unwrap_or(false)
            && p.month_match(date.month()).unwrap_or(false)
            && p.day_match(date.year(), date.month(), date.day(), weekday)
                .unwrap_or(false)
    }

    /// The zone's UTC offset at `t` (seconds since the epoch), in seconds.
    fn offset(&self, t: i64) -> i64 {
        let utc = at(t).naive_utc();
        i64::from(
            self.tz
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc(),
        )
    }

    /// The first second in `(a, end]` whose offset is not `offset`, or `end`.
    fn segment_end(&self, a: i64, end: i64, offset: i64) -> i64 {
        let mut p = a;
        while p < end {
            let q = (p + HOUR).min(end);
            if self.offset(q) != offset {
                // Transitions fall on whole seconds: bisect (p, q].
                let (mut same, mut changed) = (p, q);
                while changed - same > 1 {
                    let mid = same + (changed - same) / 2;
                    if self.offset(mid) == offset {
                        same = mid;
                    } else {
                        changed = mid;
                    }
                }
                return changed;
            }
            p = q;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(expr: &str) -> TimesOfDay {
        TimesOfDay::new(CronSpec::parse(expr, "UTC").unwrap().pattern().unwrap())
    }

    /// Brute force: every second of the day below `tod` that the pattern matches.
    fn brute_below(expr: &str, tod: i64) -> u64 {
        let spec = CronSpec::parse(expr, "UTC").unwrap();
        let p = spec.pattern().unwrap();
        (0..tod)
            .filter(|s| {
                let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
                p.hour_match(h as u32).unwrap()
                    && p.minute_match(m as u32).unwrap()
                    && p.second_match(sec as u32).unwrap()
            })
            .count() as u64
    }

    #[test]
    fn times_of_day_below_agrees_with_brute_force() {
        for expr in [
            "* * * * * *",
            "*/7 * * * *",
            "15,45 9-17 * * *",
            "0 30 2 * * *",
        ] {
            let t = times(expr);
            for tod in [
                0,
                1,
                59,
                60,
                3599,
                3600,
                9 * 3600 + 15 * 60,
                45_000,
                86_399,
                86_400,
            ] {
                assert_eq!(t.below(tod), brute_below(expr, tod), "{expr} below {tod}");
            }
        }
        assert_eq!(times("* * * * * *").below(DAY), 86_400);
        assert_eq!(times("*/15 * * * *").below(DAY), 96);
    }

    #[test]
    fn segment_end_finds_the_transition_to_the_second() {
        let spec = CronSpec::parse("* * * * *", "America/New_York").unwrap();
        let c = Calendar::new(&spec).unwrap();
        // 2026-03-08 07:00:00Z: EST -> EDT.
        let transition = 1_772_953_200;
        let a = transition - 5 * DAY - 17;
        let offset = c.offset(a);
        assert_eq!(offset, -5 * HOUR);
        assert_eq!(c.segment_end(a, transition + DAY, offset), transition);
        assert_eq!(c.offset(transition), -4 * HOUR);
        assert_eq!(c.segment_end(a, transition - 1, offset), transition - 1);
    }
}
