//! Counting and locating missed ticks (`schedules::count`): hand-checked counts, the cost
//! bound, and a property test against brute force (walking `Window::ticks_from`).
//!
//! Hand-checked values are worked out from the calendar and the zones' real UTC offsets
//! (the facts are listed in `tests/cron_dialect.rs`), not asked of croner or chrono-tz:
//! - 2026-06-01 is a Monday; June has 30 days, so 22 weekdays.
//! - America/New_York: the local day 2026-03-08 lasts 23 h (05:00Z to 04:00Z next day),
//!   2026-11-01 lasts 25 h (04:00Z to 05:00Z next day).
//! - Europe/London: 2026-03-29 lasts 23 h (00:00Z to 23:00Z), 2026-10-25 lasts 25 h
//!   (2026-10-24T23:00Z to 2026-10-26T00:00Z).
//! - Australia/Lord_Howe: 2026-04-05 lasts 24.5 h (2026-04-04T13:00Z to 13:30Z the next
//!   day, local 01:30-02:00 twice); 2026-10-04 lasts 23.5 h (2026-10-03T13:30Z to
//!   2026-10-04T13:00Z, local 02:00-02:30 missing).
//! - Every UTC second is a tick of `* * * * * *` in any zone: a skipped local second is
//!   no instant, and a repeated one fires on both passes.

use chrono::{DateTime, TimeDelta, Utc};
use cron_scheduler::schedules::{
    CronSpec, TickCount, Window,
    count::{MAX_DAYS, count_ticks, last_ticks_before, last_ticks_before_with_steps},
    interval::Interval,
    spec::{DstFold, DstGap, DstPolicy},
};
use proptest::{
    prelude::*,
    test_runner::{Config as RunnerConfig, TestCaseError, TestRunner},
};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad RFC 3339 literal {s:?}: {e}"))
        .with_timezone(&Utc)
}

fn window(expr: &str, tz: &str) -> Window {
    Window {
        spec: CronSpec::parse(expr, tz).unwrap_or_else(|e| panic!("{expr:?} in {tz}: {e}")),
        start_at: None,
        end_at: None,
    }
}

/// The count with no croner walk (all arithmetic) and with a walk that covers it all;
/// both must be the exact `expected`.
fn assert_count(expr: &str, tz: &str, from: &str, to: &str, expected: u64) {
    let w = window(expr, tz);
    for budget in [0, 3, 1_000_000] {
        let c = count_ticks(&w, t(from), t(to), budget);
        assert_eq!(
            (c.count, c.exact),
            (expected, true),
            "{expr:?} in {tz} over [{from}, {to}) with budget {budget}: {c:?}"
        );
        assert!(c.steps <= budget + 1, "{c:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Hand-checked counts
// ---------------------------------------------------------------------------------------

#[test]
fn every_second_over_seven_days() {
    let w = window("* * * * * *", "UTC");
    let c = count_ticks(&w, t("2026-01-05T00:00:00Z"), t("2026-01-12T00:00:00Z"), 10);
    assert_eq!(
        c,
        TickCount {
            count: 604_800,
            exact: true,
            steps: 10
        }
    );
    // The same week around New York's spring-forward: still every UTC second.
    let w = window("* * * * * *", "America/New_York");
    let c = count_ticks(&w, t("2026-03-05T00:00:00Z"), t("2026-03-12T00:00:00Z"), 10);
    assert_eq!((c.count, c.exact), (604_800, true), "{c:?}");
}

#[test]
fn weekdays_at_nine_over_a_month() {
    // June 2026 in London (BST): 22 weekdays, local month bounds.
    assert_count(
        "0 9 * * MON-FRI",
        "Europe/London",
        "2026-05-31T23:00:00Z",
        "2026-06-30T23:00:00Z",
        22,
    );
    // The end is exclusive: up to Tuesday 30th 08:00Z (09:00 BST) leaves it out.
    assert_count(
        "0 9 * * MON-FRI",
        "Europe/London",
        "2026-05-31T23:00:00Z",
        "2026-06-30T08:00:00Z",
        21,
    );
}

#[test]
fn last_day_of_month() {
    assert_count(
        "0 0 L * *",
        "UTC",
        "2028-01-01T00:00:00Z",
        "2029-01-01T00:00:00Z",
        12,
    );
    let w = window("0 0 L * *", "UTC");
    assert_eq!(
        last_ticks_before(&w, t("2028-01-01T00:00:00Z"), t("2028-03-31T00:00:00Z"), 2),
        vec![t("2028-01-31T00:00:00Z"), t("2028-02-29T00:00:00Z")],
        "2028 is a leap year; the end is exclusive"
    );
    // Two years of month ends in Sydney (+10/+11).
    assert_count(
        "0 0 L * *",
        "Australia/Sydney",
        "2025-12-31T13:00:00Z",
        "2027-12-31T13:00:00Z",
        24,
    );
}

#[test]
fn new_york_dst_days() {
    // Spring forward, 2026-03-08 (23 h): 02:30 is skipped and fires at 03:00 EDT.
    let (from, to) = ("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z");
    assert_count("30 2 * * *", "America/New_York", from, to, 1);
    assert_count("*/15 * * * *", "America/New_York", from, to, 92);
    assert_count("* * * * * *", "America/New_York", from, to, 82_800);
    // From the moved tick's own instant (a leader's `next_due_at`), it is counted.
    assert_count(
        "30 2 * * *",
        "America/New_York",
        "2026-03-08T07:00:00Z",
        "2026-03-08T07:00:01Z",
        1,
    );
    // Three days around it: the 7th, the moved 8th and the 9th.
    assert_count(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T05:00:00Z",
        "2026-03-10T04:00:00Z",
        3,
    );
    // Fall back, 2026-11-01 (25 h): 01:30 fires once, intervals fire on both passes.
    let (from, to) = ("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z");
    assert_count("30 2 * * *", "America/New_York", from, to, 1);
    assert_count("30 1 * * *", "America/New_York", from, to, 1);
    assert_count("*/15 * * * *", "America/New_York", from, to, 100);
    assert_count("* * * * * *", "America/New_York", from, to, 90_000);
    // From inside the second pass (06:10Z = 01:10 EST): the fixed tick fired before.
    assert_count(
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T06:10:00Z",
        "2026-11-01T12:00:00Z",
        0,
    );
    assert_count(
        "*/15 * * * *",
        "America/New_York",
        "2026-11-01T06:10:00Z",
        "2026-11-01T07:00:00Z",
        3,
    );
}

#[test]
fn london_dst_days() {
    let (from, to) = ("2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z");
    assert_count("30 2 * * *", "Europe/London", from, to, 1);
    assert_count("30 1 * * *", "Europe/London", from, to, 1);
    assert_count("*/15 * * * *", "Europe/London", from, to, 92);
    assert_count("* * * * * *", "Europe/London", from, to, 82_800);
    let w = window("30 1 * * *", "Europe/London");
    assert_eq!(
        last_ticks_before(&w, t(from), t(to), 5),
        vec![t("2026-03-29T01:00:00Z")],
        "01:30 is skipped: it fires at 02:00 BST"
    );
    let (from, to) = ("2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z");
    assert_count("30 2 * * *", "Europe/London", from, to, 1);
    assert_count("30 1 * * *", "Europe/London", from, to, 1);
    assert_count("*/15 * * * *", "Europe/London", from, to, 100);
    assert_count("* * * * * *", "Europe/London", from, to, 90_000);
}

#[test]
fn lord_howe_half_hour_dst_days() {
    // DST ends 2026-04-05 (24.5 h): local 01:30-02:00 twice.
    let (from, to) = ("2026-04-04T13:00:00Z", "2026-04-05T13:30:00Z");
    assert_count("30 2 * * *", "Australia/Lord_Howe", from, to, 1);
    assert_count("45 1 * * *", "Australia/Lord_Howe", from, to, 1);
    assert_count("*/15 * * * *", "Australia/Lord_Howe", from, to, 98);
    assert_count("* * * * * *", "Australia/Lord_Howe", from, to, 88_200);
    let w = window("*/15 * * * *", "Australia/Lord_Howe");
    // Local 01:30 and 01:45 on the first pass (+11:00), then again (+10:30).
    assert_eq!(
        last_ticks_before(&w, t(from), t("2026-04-04T15:20:00Z"), 4),
        vec![
            t("2026-04-04T14:30:00Z"),
            t("2026-04-04T14:45:00Z"),
            t("2026-04-04T15:00:00Z"),
            t("2026-04-04T15:15:00Z"),
        ]
    );
    // DST starts 2026-10-04 (23.5 h): local 02:00-02:30 missing.
    let (from, to) = ("2026-10-03T13:30:00Z", "2026-10-04T13:00:00Z");
    assert_count("30 2 * * *", "Australia/Lord_Howe", from, to, 1);
    assert_count("15 2 * * *", "Australia/Lord_Howe", from, to, 1);
    assert_count("*/15 * * * *", "Australia/Lord_Howe", from, to, 94);
    assert_count("* * * * * *", "Australia/Lord_Howe", from, to, 84_600);
}

#[test]
fn start_and_end_bounds_clip_the_count() {
    let mut w = window("0 * * * *", "UTC");
    let (from, to) = (t("2026-01-01T00:00:00Z"), t("2026-01-02T00:00:00Z"));
    assert_eq!(count_ticks(&w, from, to, 0).count, 24);
    w.start_at = Some(t("2026-01-01T05:00:00Z"));
    w.end_at = Some(t("2026-01-01T10:00:00Z"));
    for budget in [0, 2, 100] {
        let c = count_ticks(&w, from, to, budget);
        assert_eq!(
            (c.count, c.exact),
            (6, true),
            "05:00..=10:00, both inclusive"
        );
    }
    assert_eq!(
        last_ticks_before(&w, from, to, 2),
        vec![t("2026-01-01T09:00:00Z"), t("2026-01-01T10:00:00Z")]
    );
    w.end_at = Some(t("2026-01-01T09:59:59.999Z"));
    assert_eq!(count_ticks(&w, from, to, 0).count, 5);
    w.end_at = Some(t("2026-01-01T10:00:00.5Z"));
    assert_eq!(count_ticks(&w, from, to, 0).count, 6);
    // A start after the range, an empty range, a range before the start.
    assert_eq!(count_ticks(&w, to, to, 0).count, 0);
    assert_eq!(count_ticks(&w, to, from, 0).count, 0);
    assert_eq!(count_ticks(&w, from, t("2026-01-01T05:00:00Z"), 0).count, 0);
    assert!(last_ticks_before(&w, to, from, 3).is_empty());
    assert!(last_ticks_before(&w, from, to, 0).is_empty());
}

// ---------------------------------------------------------------------------------------
// Cost bound
// ---------------------------------------------------------------------------------------

const BUDGET: usize = 100;

#[test]
fn a_year_and_a_century_cost_a_bounded_number_of_steps() {
    let start = t("2026-01-01T05:00:00Z"); // local midnight in New York
    let year_end = t("2027-01-01T05:00:00Z");
    let secs = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_seconds() as u64;

    let every_second = window("* * * * * *", "America/New_York");
    let c = count_ticks(&every_second, start, year_end, BUDGET);
    assert_eq!((c.count, c.exact), (secs(start, year_end), true), "{c:?}");
    assert!(c.steps <= BUDGET, "{c:?}");

    // 9 per hour, 216 per local day, 365 days; the lost and the doubled hour cancel.
    let seventh = window("*/7 * * * *", "America/New_York");
    let c = count_ticks(&seventh, start, year_end, BUDGET);
    assert_eq!((c.count, c.exact), (78_840, true), "{c:?}");
    assert!(c.steps <= BUDGET, "{c:?}");

    // A century: past the day cap, so a lower bound, at the same cost.
    let century_end = t("2126-01-01T05:00:00Z");
    let c = count_ticks(&every_second, start, century_end, BUDGET);
    assert!(!c.exact && c.steps <= BUDGET, "{c:?}");
    assert!(c.count <= secs(start, century_end), "{c:?}");
    assert!(c.count >= MAX_DAYS as u64 * 86_400 - 3_600, "{c:?}");
    let c = count_ticks(&seventh, start, century_end, BUDGET);
    assert!(!c.exact && c.steps <= BUDGET, "{c:?}");
    assert!(c.count <= secs(start, century_end) / 3_600 * 9 + 9, "{c:?}");
    assert!(c.count >= MAX_DAYS as u64 * 216 - 9, "{c:?}");

    // The latest ticks of a year (and a century) back cost O(n) steps.
    for to in [year_end, century_end] {
        let (last, steps) = last_ticks_before_with_steps(&seventh, start, to, 10);
        assert_eq!(last.len(), 10);
        assert!(steps <= 2 * 10 + 2, "{steps} steps");
        assert!(last.windows(2).all(|p| p[0] < p[1]));
        assert!(*last.last().unwrap() < to);
    }
}

// ---------------------------------------------------------------------------------------
// Against brute force
// ---------------------------------------------------------------------------------------

/// Ticks a brute-force case may walk; a range holding more is cut at that tick.
const BRUTE_LIMIT: usize = 4_000;

/// One of `choices`, each `(weight, text)`.
fn pick(choices: &[(u32, &'static str)]) -> impl Strategy<Value = &'static str> + use<> {
    let all: Vec<&'static str> = choices
        .iter()
        .flat_map(|(w, c)| std::iter::repeat_n(*c, *w as usize))
        .collect();
    prop::sample::select(all)
}

/// Expressions mostly dense enough to fire in a few days, fixed-time and interval ones,
/// with `L`, `W`, `#`, the day-of-month / day-of-week OR rule and `+`.
fn expr() -> impl Strategy<Value = String> {
    let seconds = pick(&[
        (4, ""),
        (1, "0 "),
        (1, "* "),
        (1, "*/20 "),
        (1, "30 "),
        (1, "0,30 "),
        (1, "10-12 "),
    ]);
    let minutes = pick(&[
        (2, "*"),
        (3, "0"),
        (2, "30"),
        (2, "*/7"),
        (2, "*/15"),
        (1, "5,35"),
        (1, "59"),
    ]);
    let hours = pick(&[
        (8, "*"),
        (2, "0"),
        (2, "1"),
        (3, "2"),
        (1, "3"),
        (1, "23"),
        (1, "1-3"),
        (1, "*/5"),
        (1, "2,14"),
    ]);
    let dom = pick(&[
        (16, "*"),
        (1, "?"),
        (1, "L"),
        (1, "15W"),
        (1, "1"),
        (1, "*/10"),
        (1, "LW"),
        (1, "1-7"),
        (1, "31"),
    ]);
    let month = pick(&[
        (16, "*"),
        (1, "*/2"),
        (1, "MAR"),
        (1, "OCT-NOV"),
        (1, "1,4,10"),
    ]);
    let dow = pick(&[
        (16, "*"),
        (1, "?"),
        (1, "MON-FRI"),
        (1, "5#L"),
        (1, "SUN"),
        (1, "0#1"),
        (1, "+FRI"),
        (1, "6L"),
        (1, "1#2"),
    ]);
    (seconds, minutes, hours, dom, month, dow)
        .prop_map(|(s, mi, h, d, mo, w)| format!("{s}{mi} {h} {d} {mo} {w}"))
}

/// Zones with gaps and folds of every shape: an hour, half an hour (Lord Howe), two hours
/// (Troll), at midnight (Santiago, Havana), 45-minute offsets (Chatham), Ramadan breaks
/// (Casablanca), none at all.
fn zone() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "America/New_York",
        "Europe/London",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Antarctica/Troll",
        "America/Santiago",
        "America/Havana",
        "Pacific/Chatham",
        "Africa/Casablanca",
        "Asia/Kolkata",
        "UTC",
    ])
}

/// A zone's next UTC offset change after `t` (within a year), to put ranges around.
fn next_transition(tz: chrono_tz::Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::{Offset, TimeZone};
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let here = offset(t);
    (1..=366 * 24)
        .map(|h| t + TimeDelta::hours(h))
        .find(|p| offset(*p) != here)
}

#[derive(Debug, Clone)]
struct Case {
    expr: String,
    tz: &'static str,
    /// Seconds from 2020-01-01 to look for a transition from.
    seed: i64,
    /// Range start, relative to that transition, in milliseconds.
    from_ms: i64,
    len_s: i64,
    bounds: (Option<i64>, Option<i64>),
    budget: usize,
    n: usize,
    /// `dst_gap` and `dst_fold`: 0 unset, 1 `shift` / `once`, 2 `skip` / `twice`.
    dst: (u8, u8),
    /// Instead of `expr`: an interval (seconds) and its anchor (seconds from the seed).
    every: Option<(i64, i64)>,
}

fn policy(dst: (u8, u8)) -> DstPolicy {
    DstPolicy {
        gap: [None, Some(DstGap::Shift), Some(DstGap::Skip)][usize::from(dst.0)],
        fold: [None, Some(DstFold::Once), Some(DstFold::Twice)][usize::from(dst.1)],
    }
}

fn case() -> impl Strategy<Value = Case> {
    let range = (
        0..10 * 365 * 86_400i64,
        prop_oneof![
            3 => (-2 * 86_400i64..86_400).prop_map(|s| s * 1000),
            1 => -2 * 86_400_000i64..86_400_000,
            // At the transition itself, where a moved fixed-time tick lands.
            1 => prop::sample::select(vec![-1000i64, -500, 0, 500, 1000]),
        ],
        prop_oneof![1 => 0..3_600i64, 6 => 0..3 * 86_400i64, 3 => 0..90 * 86_400i64],
    );
    let start_at = prop::option::weighted(0.2, -86_400i64..86_400);
    let end_at = prop::option::weighted(0.2, 0..3 * 86_400i64);
    (
        expr(),
        zone(),
        range,
        (start_at, end_at),
        prop::sample::select(vec![0, 0, 1, 7, 60, 10_000]),
        0..12usize,
        prop_oneof![2 => Just((0u8, 0u8)), 3 => (0..3u8, 0..3u8)],
        prop_oneof![
            5 => Just(None),
            1 => (
                prop_oneof![3 => 1..7_200i64, 1 => 1..=31_622_400i64],
                -400 * 86_400i64..400 * 86_400,
            )
                .prop_map(Some),
        ],
    )
        .prop_map(
            |(expr, tz, (seed, from_ms, len_s), bounds, budget, n, dst, every)| Case {
                expr,
                tz,
                seed,
                from_ms,
                len_s,
                bounds,
                budget,
                n,
                dst,
                every,
            },
        )
}

fn check_case(c: &Case) -> Result<(), TestCaseError> {
    let seed = t("2020-01-01T00:00:00Z") + TimeDelta::seconds(c.seed);
    let spec = match c.every {
        Some((period, anchor)) => {
            let anchor = Some(seed + TimeDelta::seconds(anchor));
            CronSpec::every(Interval::new(period, anchor).unwrap(), c.tz).unwrap()
        }
        None => match CronSpec::parse(&c.expr, c.tz) {
            Ok(spec) => spec.with_dst(policy(c.dst)),
            Err(_) => return Ok(()),
        },
    };
    let anchor = next_transition(spec.timezone(), seed).unwrap_or(seed);
    let from = anchor + TimeDelta::milliseconds(c.from_ms);
    let mut to = from + TimeDelta::seconds(c.len_s);
    let bound = |s: Option<i64>| s.map(|s| from + TimeDelta::seconds(s));
    let mut window = Window {
        spec,
        start_at: bound(c.bounds.0),
        end_at: bound(c.bounds.1),
    };
    if let (Some(s), Some(e)) = (window.start_at, window.end_at)
        && e <= s
    {
        window.end_at = None;
    }
    let mut brute: Vec<DateTime<Utc>> = window
        .ticks_from(from)
        .take_while(|t| *t < to)
        .take(BRUTE_LIMIT + 1)
        .collect();
    if brute.len() > BRUTE_LIMIT {
        to = brute.pop().unwrap();
    }

    let counted = count_ticks(&window, from, to, c.budget);
    if counted.exact {
        prop_assert_eq!(counted.count, brute.len() as u64, "{:?}", counted);
    } else {
        prop_assert!(counted.count <= brute.len() as u64, "{:?}", counted);
    }
    prop_assert!(counted.steps <= c.budget, "{:?}", counted);

    let (last, steps) = last_ticks_before_with_steps(&window, from, to, c.n);
    let want = &brute[brute.len().saturating_sub(c.n)..];
    prop_assert_eq!(&last[..], want, "from {} to {}", from, to);
    prop_assert!(steps <= 4 * c.n + 4, "{} steps for n = {}", steps, c.n);
    Ok(())
}

#[test]
fn counts_and_last_ticks_agree_with_brute_force() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |c| check_case(&c));
    println!(
        "count vs brute force: {cases} cases in {:?}",
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
