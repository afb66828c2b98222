//! Interval schedules: ticks at `anchor + k × period` for every integer `k`, in absolute
//! time (a daylight-saving change does not move them: `PT1H` fires every 3,600 seconds
//! across a fall-back night, 25 ticks that local day). The period is an ISO 8601 duration
//! of whole seconds, minutes, hours, days or weeks (a day is 24 hours here), from 1 second
//! to 366 days; months and years are refused (they have no fixed length). The anchor is
//! any instant (default the Unix epoch, 1970-01-01T00:00:00Z), so `PT90M` with no anchor
//! fires at 00:00, 01:30, 03:00 UTC...
//!
//! Pure arithmetic: the next and previous tick and the count of ticks in a range cost
//! the same whatever the distance.

use chrono::{DateTime, Utc};

/// Shortest period: one second.
pub const MIN_PERIOD_SECONDS: i64 = 1;
/// Longest period: 366 days.
pub const MAX_PERIOD_SECONDS: i64 = 366 * DAY;
/// Longest `interval` text accepted; longer input is refused before parsing.
pub const MAX_INTERVAL_LEN: usize = 64;

const DAY: i64 = 86_400;

/// What a valid interval looks like, for error messages.
const EXPECTED: &str = "expected an ISO 8601 duration of whole units such as \"PT90M\", \
     \"PT36H\", \"P1DT12H\" or \"P2W\" (W weeks, D days of 24 hours, H hours, M minutes, \
     S seconds), from PT1S to P366D";

/// A period and the instant it counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Seconds between ticks, `MIN_PERIOD_SECONDS..=MAX_PERIOD_SECONDS`.
    period: i64,
    /// One tick (every other tick is a whole number of periods away), a whole second.
    anchor: DateTime<Utc>,
}

impl Interval {
    /// `period_seconds` must be in bounds (see [`parse_period`]).
    pub fn new(period_seconds: i64, anchor: Option<DateTime<Utc>>) -> Result<Self, String> {
        if !(MIN_PERIOD_SECONDS..=MAX_PERIOD_SECONDS).contains(&period_seconds) {
            return Err(format!(
                "interval of {period_seconds} s is out of bounds: it must be from 1 second \
                 to 366 days"
            ));
        }
        let anchor = anchor.unwrap_or(DateTime::UNIX_EPOCH);
        if anchor.timestamp_subsec_nanos() != 0 {
            return Err("anchor must be a whole second (ticks are whole seconds)".into());
        }
        Ok(Self {
            period: period_seconds,
            anchor,
        })
    }

    pub fn period_seconds(&self) -> i64 {
        self.period
    }

    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor
    }

    /// The period as ISO 8601 text, in the largest whole units (`PT90M` reads back as
    /// `PT1H30M`, `PT36H` as `P1DT12H`).
    pub fn text(&self) -> String {
        format_period(self.period)
    }

    /// The first tick `>= t` (`inclusive`) or `> t`. `None` beyond chrono's range.
    pub fn next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        // The smallest whole second the tick may be.
        let whole = t.timestamp();
        let min = if t.timestamp_subsec_nanos() > 0 || !inclusive {
            whole.checked_add(1)?
        } else {
            whole
        };
        let k = div_ceil(min.checked_sub(self.anchor.timestamp())?, self.period);
        self.at(k)
    }

    /// The last tick `<= t` (`inclusive`) or `< t`.
    pub fn prev(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let whole = t.timestamp();
        // The largest whole second the tick may be.
        let max = if t.timestamp_subsec_nanos() > 0 || inclusive {
            whole
        } else {
            whole.checked_sub(1)?
        };
        let k = max
            .checked_sub(self.anchor.timestamp())?
            .div_euclid(self.period);
        self.at(k)
    }

    /// Ticks in `[lo, hi)` (Unix seconds).
    pub fn count(&self, lo: i64, hi: i64) -> u64 {
        if hi <= lo {
            return 0;
        }
        let anchor = self.anchor.timestamp();
        let first = div_ceil(lo - anchor, self.period);
        let end = div_ceil(hi - anchor, self.period);
        u64::try_from(end - first).unwrap_or(0)
    }

    fn at(&self, k: i64) -> Option<DateTime<Utc>> {
        let s = k
            .checked_mul(self.period)?
            .checked_add(self.anchor.timestamp())?;
        DateTime::from_timestamp(s, 0)
    }

    /// In words, for previews and the console.
    pub fn describe(&self) -> String {
        format!(
            "Every {}, counted from {}",
            describe_period(self.period),
            self.anchor
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

fn div_ceil(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

/// Parses an ISO 8601 duration of whole weeks, days, hours, minutes and seconds into
/// seconds, within the bounds. The message names what is wrong; the caller names the field.
pub fn parse_period(text: &str) -> Result<i64, String> {
    let refuse = |why: &str| format!("interval {} {why}: {EXPECTED}", crate::text::quoted(text));
    if text.len() > MAX_INTERVAL_LEN {
        return Err(format!(
            "interval is longer than {MAX_INTERVAL_LEN} characters: {EXPECTED}"
        ));
    }
    let Some(rest) = text.strip_prefix('P') else {
        return Err(refuse("does not start with P"));
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(refuse("has a T with no hours, minutes or seconds after it"));
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(refuse("has no length"));
    }
    let mut total: i64 = 0;
    for (in_date, part, units) in [
        (true, date, &[('W', 7 * DAY), ('D', DAY)][..]),
        (
            false,
            time.unwrap_or(""),
            &[('H', 3_600), ('M', 60), ('S', 1)][..],
        ),
    ] {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                let c = rest.chars().next().unwrap_or(' ');
                return Err(match c {
                    '.' | ',' => refuse("has a fraction; use a smaller unit (PT90M, not PT1.5H)"),
                    '-' => refuse("is negative"),
                    _ => refuse(&format!("has {c:?} where a number belongs")),
                });
            }
            let (number, after) = rest.split_at(digits);
            let Some(unit) = after.chars().next() else {
                return Err(refuse("ends with a number and no unit"));
            };
            if matches!(unit, '.' | ',') {
                return Err(refuse(
                    "has a fraction; use a smaller unit (PT90M, not PT1.5H)",
                ));
            }
            let Some(pos) = allowed.iter().position(|(u, _)| *u == unit) else {
                let why = match unit {
                    'Y' => {
                        "counts years, which have no fixed length (use days, e.g. P365D)".to_owned()
                    }
                    'M' if in_date => {
                        "counts months, which have no fixed length (use days, e.g. P30D); \
                         minutes go after the T (PT30M)"
                            .to_owned()
                    }
                    u if units.iter().any(|(x, _)| *x == u) => {
                        format!("repeats {u} or gives it out of order")
                    }
                    'H' | 'S' if in_date => {
                        format!(
                            "has {unit} before the T (hours, minutes and seconds go after it: PT{number}{unit})"
                        )
                    }
                    u => format!("has the unit {u:?} where it does not belong"),
                };
                return Err(refuse(&why));
            };
            let n: i64 = number
                .parse()
                .map_err(|_| refuse("is longer than 366 days"))?;
            total = n
                .checked_mul(allowed[pos].1)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| refuse("is longer than 366 days"))?;
            allowed = &allowed[pos + 1..];
            rest = &after[unit.len_utf8()..];
        }
    }
    if total < MIN_PERIOD_SECONDS {
        return Err(refuse("is 0; the shortest interval is PT1S"));
    }
    if total > MAX_PERIOD_SECONDS {
        return Err(refuse("is longer than 366 days"));
    }
    Ok(total)
}

/// Seconds as ISO 8601 in the largest whole units (weeks only when nothing else is left).
pub fn format_period(seconds: i64) -> String {
    let (days, rest) = (seconds / DAY, seconds % DAY);
    if rest == 0 && days % 7 == 0 && days > 0 {
        return format!("P{}W", days / 7);
    }
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if rest > 0 {
        out.push('T');
        for (n, unit) in [
            (rest / 3_600, 'H'),
            (rest % 3_600 / 60, 'M'),
            (rest % 60, 'S'),
        ] {
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
    }
    out
}

fn describe_period(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    for (size, unit) in [(DAY, "day"), (3_600, "hour"), (60, "minute")] {
        if seconds % size == 0 {
            return plural(seconds / size, unit);
        }
    }
    plural(seconds, "second")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn periods_parse_in_whole_units() {
        for (text, secs) in [
            ("PT1S", 1),
            ("PT90M", 5_400),
            ("PT36H", 129_600),
            ("P1DT12H", 129_600),
            ("P2W", 1_209_600),
            ("P1W2D", 777_600),
            ("PT1H30M15S", 5_415),
            ("P366D", 31_622_400),
            ("PT0H1S", 1),
        ] {
            assert_eq!(parse_period(text), Ok(secs), "{text}");
        }
        for (text, why) in [
            ("", "does not start with P"),
            ("P", "has no length"),
            ("PT", "no hours"),
            ("PT0S", "is 0"),
            ("P0D", "is 0"),
            ("P367D", "longer than 366 days"),
            ("PT99999999999999999999S", "longer than 366 days"),
            ("P1M", "months"),
            ("P1Y", "years"),
            ("PT1.5H", "fraction"),
            ("PT1,5H", "fraction"),
            ("PT-5M", "negative"),
            ("PT5", "no unit"),
            ("PT5M5H", "out of order"),
            ("P1H", "before the T"),
            ("PT1D", "does not belong"),
            ("pt5m", "does not start with P"),
            ("PT5MX", "where a number belongs"),
            ("90 minutes", "does not start with P"),
        ] {
            let e = parse_period(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn periods_format_in_the_largest_units() {
        for (secs, text) in [
            (1, "PT1S"),
            (5_400, "PT1H30M"),
            (129_600, "P1DT12H"),
            (1_209_600, "P2W"),
            (777_600, "P9D"),
            (86_400, "P1D"),
            (3_661, "PT1H1M1S"),
            (31_622_400, "P366D"),
        ] {
            assert_eq!(format_period(secs), text);
            assert_eq!(parse_period(text), Ok(secs), "{text} reads back");
        }
    }

    #[test]
    fn ticks_are_whole_periods_from_the_anchor() {
        let every = Interval::new(5_400, Some(t("2026-11-30T00:10:00Z"))).unwrap();
        assert_eq!(
            every.next(t("2026-11-30T00:10:00Z"), true),
            Some(t("2026-11-30T00:10:00Z"))
        );
        assert_eq!(
            every.next(t("2026-11-30T00:10:00Z"), false),
            Some(t("2026-11-30T01:40:00Z"))
        );
        assert_eq!(
            every.next(t("2026-11-30T00:09:59.5Z"), false),
            Some(t("2026-11-30T00:10:00Z"))
        );
        // Before the anchor too: ticks run both ways.
        assert_eq!(
            every.next(t("2026-11-29T20:00:00Z"), true),
            Some(t("2026-11-29T21:10:00Z"))
        );
        assert_eq!(
            every.prev(t("2026-11-30T01:40:00Z"), false),
            Some(t("2026-11-30T00:10:00Z"))
        );
        assert_eq!(
            every.prev(t("2026-11-30T01:40:00Z"), true),
            Some(t("2026-11-30T01:40:00Z"))
        );
        assert_eq!(
            every.prev(t("2026-11-30T01:40:00.2Z"), false),
            Some(t("2026-11-30T01:40:00Z"))
        );
        // Default anchor: the Unix epoch.
        let hourly = Interval::new(3_600, None).unwrap();
        assert_eq!(
            hourly.next(t("2026-11-30T10:00:01Z"), true),
            Some(t("2026-11-30T11:00:00Z"))
        );
        assert!(Interval::new(0, None).is_err());
        assert!(Interval::new(MAX_PERIOD_SECONDS + 1, None).is_err());
        assert!(Interval::new(60, Some(t("2026-11-30T00:00:00.5Z"))).is_err());
    }

    #[test]
    fn counts_agree_with_stepping() {
        let every = Interval::new(7, Some(t("2026-01-01T00:00:03Z"))).unwrap();
        let base = t("2026-01-01T00:00:00Z").timestamp();
        for lo in base - 20..base + 20 {
            for hi in lo - 2..lo + 30 {
                let mut n = 0;
                let mut c = every.next(DateTime::from_timestamp(lo, 0).unwrap(), true);
                while let Some(x) = c.filter(|x| x.timestamp() < hi) {
                    n += 1;
                    c = every.next(x, false);
                }
                assert_eq!(every.count(lo, hi), n, "[{lo}, {hi})");
            }
        }
    }

    #[test]
    fn extreme_instants_answer_none_not_panic() {
        let every = Interval::new(MAX_PERIOD_SECONDS, Some(t("2026-01-01T00:00:00Z"))).unwrap();
        assert_eq!(every.next(DateTime::<Utc>::MAX_UTC, false), None);
        assert_eq!(every.prev(DateTime::<Utc>::MIN_UTC, false), None);
        assert!(every.next(DateTime::<Utc>::MIN_UTC, true).is_some());
    }
}
