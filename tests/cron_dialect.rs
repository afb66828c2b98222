//! The cron dialect and its DST behaviour (DESIGN.md section 4), tested through
//! `cron_scheduler::schedules::{CronSpec, Window}` against hand-checked instants.
//!
//! Every expected value below is an RFC 3339 UTC literal worked out by hand from the
//! calendar and the zone's real UTC offsets; nothing here asks croner or chrono-tz
//! what the answer should be, so each test can fail.
//!
//! Calendar facts used (Gregorian): 2026-01-01 is a Thursday, 2026-08-01 and
//! 2028-01-01 are Saturdays, 2026-11-15 is a Sunday, 2028 is a leap year, 2027 is not.
//!
//! Offsets used (IANA 2025 rules):
//! - America/New_York: EST -05:00, EDT -04:00. 2026-03-08 02:00 EST -> 03:00 EDT
//!   (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z), so local 01:00-02:00 runs
//!   twice: 05:00Z-06:00Z (EDT) and 06:00Z-07:00Z (EST).
//! - Europe/London: GMT +00:00, BST +01:00. 2026-03-29 01:00Z forward (local
//!   01:00-02:00 missing); 2026-10-25 01:00Z back (local 01:00-02:00 runs as
//!   00:00Z-01:00Z BST, then 01:00Z-02:00Z GMT).
//! - Australia/Lord_Howe: standard +10:30, DST +11:00. DST ends 2026-04-05 02:00 +11:00
//!   (2026-04-04T15:00Z) -> 01:30 +10:30, so local 01:30-02:00 runs twice
//!   (14:30Z-15:00Z, then 15:00Z-15:30Z). DST starts 2026-10-04 02:00 +10:30
//!   (2026-10-03T15:30Z) -> 02:30 +11:00, so local 02:00-02:30 is missing.
//! - Asia/Tokyo +09:00 and America/Phoenix -07:00 all year.

use chrono::{DateTime, Utc};
use cron_scheduler::schedules::{CronSpec, Window};

/// An RFC 3339 literal as a UTC instant.
fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad RFC 3339 literal {s:?}: {e}"))
        .with_timezone(&Utc)
}

fn spec(expr: &str, tz: &str) -> CronSpec {
    CronSpec::parse(expr, tz).unwrap_or_else(|e| panic!("{expr:?} in {tz} should parse: {e}"))
}

/// Asserts the first `expected.len()` fire times at or after `from`.
fn assert_ticks(expr: &str, tz: &str, from: &str, expected: &[&str]) {
    let spec = spec(expr, tz);
    let got: Vec<DateTime<Utc>> = spec.iter_from(t(from)).take(expected.len()).collect();
    let want: Vec<DateTime<Utc>> = expected.iter().map(|s| t(s)).collect();
    assert_eq!(got, want, "{expr:?} in {tz} from {from}");
}

/// Asserts that `expr` in `tz` is refused, blaming `field`.
fn assert_rejected(expr: &str, tz: &str, field: &str) {
    match CronSpec::parse(expr, tz) {
        Ok(s) => panic!("{expr:?} in {tz:?} should be rejected, parsed as {s:?}"),
        Err(e) => {
            assert_eq!(e.field, field, "{expr:?} in {tz:?}: {e}");
            assert!(!e.message.is_empty(), "{expr:?}: empty error message");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5-field and 6-field forms
// ---------------------------------------------------------------------------------------

#[test]
fn five_field_daily_at_midnight() {
    assert_ticks(
        "0 0 * * *",
        "UTC",
        "2026-01-01T10:00:00Z",
        &[
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
        ],
    );
}

#[test]
fn five_field_minute_comes_first() {
    // `5 4 * * *` is 04:05, not 05:04.
    assert_ticks(
        "5 4 * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T04:05:00Z", "2026-01-02T04:05:00Z"],
    );
}

#[test]
fn five_field_quarter_hours_in_business_hours_on_weekdays() {
    // 2026-01-02 is a Friday; 17:45 is the last tick of the day (hour 17 is included);
    // Saturday and Sunday are skipped; Monday 2026-01-05 starts at 09:00.
    assert_ticks(
        "*/15 9-17 * * MON-FRI",
        "UTC",
        "2026-01-02T17:40:00Z",
        &[
            "2026-01-02T17:45:00Z",
            "2026-01-05T09:00:00Z",
            "2026-01-05T09:15:00Z",
            "2026-01-05T09:30:00Z",
        ],
    );
}

#[test]
fn six_field_every_five_minutes() {
    assert_ticks(
        "0 */5 * * * *",
        "UTC",
        "2026-01-01T00:00:01Z",
        &[
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:10:00Z",
            "2026-01-01T00:15:00Z",
        ],
    );
}

#[test]
fn six_field_second_thirty_of_every_minute() {
    assert_ticks(
        "30 * * * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-01T00:00:30Z",
            "2026-01-01T00:01:30Z",
            "2026-01-01T00:02:30Z",
        ],
    );
}

#[test]
fn next_inclusive_and_exclusive() {
    let s = spec("0 0 * * *", "UTC");
    let midnight = t("2026-01-02T00:00:00Z");
    assert_eq!(s.next(midnight, true), Some(midnight));
    assert_eq!(s.next(midnight, false), Some(t("2026-01-03T00:00:00Z")));
    assert_eq!(
        s.next(t("2026-01-01T23:59:59Z"), false),
        Some(t("2026-01-02T00:00:00Z"))
    );
    // iter_from is inclusive of its start.
    assert_eq!(s.iter_from(midnight).next(), Some(midnight));
}

// ---------------------------------------------------------------------------------------
// Aliases
// ---------------------------------------------------------------------------------------

// From Thursday 2026-01-01 10:20 UTC.
const ALIAS_FROM: &str = "2026-01-01T10:20:00Z";

#[test]
fn alias_hourly() {
    assert_ticks(
        "@hourly",
        "UTC",
        ALIAS_FROM,
        &["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"],
    );
}

#[test]
fn alias_daily() {
    assert_ticks(
        "@daily",
        "UTC",
        ALIAS_FROM,
        &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
    );
}

#[test]
fn alias_weekly_is_sunday_midnight() {
    // 2026-01-04 and 2026-01-11 are Sundays.
    assert_ticks(
        "@weekly",
        "UTC",
        ALIAS_FROM,
        &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
    );
}

#[test]
fn alias_monthly() {
    assert_ticks(
        "@monthly",
        "UTC",
        ALIAS_FROM,
        &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"],
    );
}

#[test]
fn alias_yearly_and_annually() {
    for alias in ["@yearly", "@annually"] {
        assert_ticks(
            alias,
            "UTC",
            ALIAS_FROM,
            &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
        );
    }
}

#[test]
fn aliases_are_case_insensitive_and_follow_the_timezone() {
    assert_ticks("@DAILY", "UTC", ALIAS_FROM, &["2026-01-02T00:00:00Z"]);
    // Midnight in New York in January is 05:00Z (EST).
    assert_ticks(
        "@daily",
        "America/New_York",
        ALIAS_FROM,
        &["2026-01-02T05:00:00Z", "2026-01-03T05:00:00Z"],
    );
}

#[test]
fn alias_midnight_is_rejected_by_croner() {
    // croner 4.0.3 knows @yearly, @annually, @monthly, @weekly, @daily and @hourly only;
    // `@midnight` (a Vixie extension) is refused as an invalid pattern.
    assert_rejected("@midnight", "UTC", "cron_expr");
    assert_rejected("@every_5m", "UTC", "cron_expr");
}

// ---------------------------------------------------------------------------------------
// L, W, #, names
// ---------------------------------------------------------------------------------------

#[test]
fn last_day_of_month() {
    assert_ticks(
        "0 0 L * *",
        "UTC",
        "2026-01-15T00:00:00Z",
        &[
            "2026-01-31T00:00:00Z",
            "2026-02-28T00:00:00Z",
            "2026-03-31T00:00:00Z",
            "2026-04-30T00:00:00Z",
        ],
    );
}

#[test]
fn last_day_of_february_in_leap_and_common_years() {
    // 2028 is a leap year.
    assert_ticks(
        "0 0 L 2 *",
        "UTC",
        "2028-01-01T00:00:00Z",
        &["2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"],
    );
    // 2027 is not.
    assert_ticks(
        "0 0 L * *",
        "UTC",
        "2027-02-01T00:00:00Z",
        &["2027-02-28T00:00:00Z", "2027-03-31T00:00:00Z"],
    );
    assert_ticks(
        "0 0 L * *",
        "UTC",
        "2028-02-01T00:00:00Z",
        &["2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"],
    );
}

#[test]
fn nearest_weekday_to_the_15th() {
    // 2026-08-15 is a Saturday -> Friday 08-14; 2026-09-15 is a Tuesday and 2026-10-15 a
    // Thursday (themselves); 2026-11-15 is a Sunday -> Monday 11-16.
    assert_ticks(
        "0 0 15W * *",
        "UTC",
        "2026-08-01T00:00:00Z",
        &[
            "2026-08-14T00:00:00Z",
            "2026-09-15T00:00:00Z",
            "2026-10-15T00:00:00Z",
            "2026-11-16T00:00:00Z",
        ],
    );
}

#[test]
fn nearest_weekday_to_the_1st_does_not_cross_into_the_previous_month() {
    // Vixie/Quartz: `1W` when the 1st is a Saturday is Monday the 3rd, not Friday the
    // last day of the previous month. 2026-08-01 and 2028-01-01 are Saturdays.
    assert_ticks(
        "0 0 1W * *",
        "UTC",
        "2026-07-15T00:00:00Z",
        &["2026-08-03T00:00:00Z"],
    );
    assert_ticks(
        "0 0 1W * *",
        "UTC",
        "2027-12-15T00:00:00Z",
        &["2028-01-03T00:00:00Z"],
    );
}

#[test]
fn nearest_weekday_to_the_31st_does_not_cross_into_the_next_month() {
    // 2026-05-31 is a Sunday: `31W` is Friday 05-29, not Monday 06-01.
    assert_ticks(
        "0 0 31W 5 *",
        "UTC",
        "2026-05-01T00:00:00Z",
        &["2026-05-29T00:00:00Z"],
    );
}

#[test]
fn last_weekday_of_month() {
    // 2026-01-31 is a Saturday -> Friday 01-30; 2026-02-28 is a Saturday -> Friday
    // 02-27; 2026-03-31 is a Tuesday.
    assert_ticks(
        "0 0 LW * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-30T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-03-31T00:00:00Z",
        ],
    );
}

#[test]
fn nth_weekday_second_friday() {
    // Fridays in January 2026: 2, 9, ...; in February: 6, 13, ...; in March: 6, 13.
    for expr in ["0 0 * * 5#2", "0 0 * * FRI#2"] {
        assert_ticks(
            expr,
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-09T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-03-13T00:00:00Z",
            ],
        );
    }
}

#[test]
fn nth_weekday_last_monday() {
    // Last Mondays: 2026-01-26, 2026-02-23, 2026-03-30.
    for expr in ["0 0 * * 1#L", "0 0 * * MON#L", "0 0 * * 1L"] {
        assert_ticks(
            expr,
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-26T00:00:00Z",
                "2026-02-23T00:00:00Z",
                "2026-03-30T00:00:00Z",
            ],
        );
    }
}

#[test]
fn month_and_weekday_names_are_case_insensitive() {
    for expr in ["0 0 1 JAN,JUL *", "0 0 1 jan,Jul *", "0 0 1 1,7 *"] {
        assert_ticks(
            expr,
            "UTC",
            "2026-01-02T00:00:00Z",
            &["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"],
        );
    }
    // Mondays of January 2026: 5, 12, 19.
    for expr in ["0 0 * * MON", "0 0 * * mon", "0 0 * * Mon", "0 0 * * 1"] {
        assert_ticks(
            expr,
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-05T00:00:00Z",
                "2026-01-12T00:00:00Z",
                "2026-01-19T00:00:00Z",
            ],
        );
    }
    // Sunday is 0, 7 or SUN.
    for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
        assert_ticks(
            expr,
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
        );
    }
}

// ---------------------------------------------------------------------------------------
// Day-of-month OR day-of-week
// ---------------------------------------------------------------------------------------

#[test]
fn dom_and_dow_both_restricted_fire_on_either() {
    // January 2026: Fridays are 2, 9, 16, 23, 30; the 13th is a Tuesday.
    // February 2026: the 13th is a Friday (fires once).
    assert_ticks(
        "0 0 13 * FRI",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-02T00:00:00Z",
            "2026-01-09T00:00:00Z",
            "2026-01-13T00:00:00Z",
            "2026-01-16T00:00:00Z",
            "2026-01-23T00:00:00Z",
            "2026-01-30T00:00:00Z",
            "2026-02-06T00:00:00Z",
            "2026-02-13T00:00:00Z",
            "2026-02-20T00:00:00Z",
        ],
    );
}

#[test]
fn dom_step_counts_as_restricted() {
    // `*/10` in day-of-month is 1, 11, 21, 31 and is not `*`, so it ORs with Monday
    // (January 2026 Mondays: 5, 12, 19, 26; February 2: Monday).
    assert_ticks(
        "0 0 */10 * MON",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-01T00:00:00Z",
            "2026-01-05T00:00:00Z",
            "2026-01-11T00:00:00Z",
            "2026-01-12T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-01-21T00:00:00Z",
            "2026-01-26T00:00:00Z",
            "2026-01-31T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-02T00:00:00Z",
        ],
    );
}

#[test]
fn plus_before_dow_asks_for_both() {
    // Friday the 13th: 2026-02-13, 2026-03-13, 2026-11-13, then 2027-08-13.
    assert_ticks(
        "0 0 13 * +FRI",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-02-13T00:00:00Z",
            "2026-03-13T00:00:00Z",
            "2026-11-13T00:00:00Z",
            "2027-08-13T00:00:00Z",
        ],
    );
}

#[test]
fn question_mark_acts_as_star() {
    // `?` in day-of-month: only the weekday restricts (Mondays 5, 12).
    assert_ticks(
        "0 0 ? * MON",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"],
    );
    // `?` in day-of-week: only the day of month restricts.
    assert_ticks(
        "0 0 13 * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"],
    );
    // `? ?` is every day.
    assert_ticks(
        "0 0 ? * ?",
        "UTC",
        "2026-01-01T00:00:01Z",
        &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
    );
}

// ---------------------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------------------

#[test]
fn rejects_four_and_seven_fields() {
    assert_rejected("* * * *", "UTC", "cron_expr");
    assert_rejected("0 0 0 * * * 2026", "UTC", "cron_expr");
    assert_rejected("0 0 0 * * * *", "UTC", "cron_expr");
    assert_rejected("0 0 0 0 * * * *", "UTC", "cron_expr");
}

#[test]
fn rejects_out_of_range_values() {
    for expr in [
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 0 *",
        "* * * 13 *",
        "* * * * 8",
        "60 * * * * *",
        "5-1 * * * *",
    ] {
        assert_rejected(expr, "UTC", "cron_expr");
    }
}

#[test]
fn rejects_garbage_and_empty() {
    for expr in [
        "",
        "   ",
        "garbage",
        "every day at noon",
        "a b c d e",
        "* * * * FOO",
        "* * * FOO *",
        "*/0 * * * *",
        "@",
        "@sometimes",
    ] {
        assert_rejected(expr, "UTC", "cron_expr");
    }
    // Longer than MAX_CRON_LEN.
    let long = format!("0 0 * * {}", "1,".repeat(200) + "1");
    assert_rejected(&long, "UTC", "cron_expr");
}

#[test]
fn rejects_unknown_timezone() {
    for tz in ["Mars/Olympus_Mons", "", "CEST", "UTC+2", "america/new york"] {
        assert_rejected("0 0 * * *", tz, "timezone");
    }
    // A valid zone is fine, and the timezone is checked even when the expression is bad.
    assert!(CronSpec::parse("0 0 * * *", "Europe/Berlin").is_ok());
    assert_rejected("garbage", "Nowhere/Land", "timezone");
}

#[test]
fn february_30th_parses_but_never_fires() {
    let s = spec("0 0 30 2 *", "UTC");
    // Must return (croner gives up at its year limit) rather than loop forever.
    assert_eq!(s.next(t("2026-01-01T00:00:00Z"), true), None);
    assert_eq!(s.iter_from(t("2026-01-01T00:00:00Z")).next(), None);
    let s = spec("0 0 31 4,6,9,11 *", "Europe/London");
    assert_eq!(s.next(t("2026-01-01T00:00:00Z"), false), None);
}

// ---------------------------------------------------------------------------------------
// DST: America/New_York
// ---------------------------------------------------------------------------------------

#[test]
fn new_york_fixed_tick_in_spring_forward_gap_fires_after_the_gap() {
    // 2026-03-07 02:30 EST = 07:30Z; 2026-03-08 02:30 does not exist -> 03:00 EDT =
    // 07:00Z; 2026-03-09 02:30 EDT = 06:30Z.
    assert_ticks(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        &[
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z",
        ],
    );
    // Same with the 6-field form and a tick at the very start of the gap (02:00).
    assert_ticks(
        "0 0 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"],
    );
}

#[test]
fn new_york_moved_tick_is_found_from_its_own_instant() {
    // The leader stores the next tick (07:00Z, moved past the gap) as `next_due_at` and
    // later asks for the ticks from there: the moved tick must still come first. croner
    // alone skips it from that instant (its walk meets 02:30 only from before the gap).
    assert_ticks(
        "30 2 * * *",
        "America/New_York",
        "2026-03-08T07:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    );
    let s = spec("30 2 * * *", "America/New_York");
    assert_eq!(
        s.next(t("2026-03-08T07:00:00Z"), false),
        Some(t("2026-03-09T06:30:00Z"))
    );
    assert_eq!(
        s.next(t("2026-03-08T06:59:59.5Z"), true),
        Some(t("2026-03-08T07:00:00Z"))
    );
    // London: 01:30 is skipped on 2026-03-29 and fires at 02:00 BST (01:00Z).
    assert_ticks(
        "30 1 * * *",
        "Europe/London",
        "2026-03-29T01:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    );
}

#[test]
fn new_york_interval_ticks_in_spring_forward_gap_are_skipped() {
    // 01:00 EST = 06:00Z, 01:30 EST = 06:30Z, then 02:00 and 02:30 do not exist,
    // 03:00 EDT = 07:00Z, 03:30 EDT = 07:30Z.
    assert_ticks(
        "*/30 * * * *",
        "America/New_York",
        "2026-03-08T06:00:00Z",
        &[
            "2026-03-08T06:00:00Z",
            "2026-03-08T06:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:30:00Z",
        ],
    );
    // 01:45 EST = 06:45Z; 02:15 and 02:45 are skipped (not moved to 03:00);
    // 03:15 EDT = 07:15Z.
    assert_ticks(
        "15,45 * * * *",
        "America/New_York",
        "2026-03-08T06:40:00Z",
        &[
            "2026-03-08T06:45:00Z",
            "2026-03-08T07:15:00Z",
            "2026-03-08T07:45:00Z",
        ],
    );
}

#[test]
fn new_york_fixed_tick_in_fall_back_fold_fires_once_on_first_pass() {
    // 2026-11-01 01:30 EDT = 05:30Z (first pass); 01:30 EST = 06:30Z is not a tick;
    // 2026-11-02 01:30 EST = 06:30Z.
    assert_ticks(
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00:00Z",
        &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    );
    let s = spec("30 1 * * *", "America/New_York");
    assert_eq!(
        s.next(t("2026-11-01T05:30:00Z"), false),
        Some(t("2026-11-02T06:30:00Z"))
    );
}

#[test]
fn new_york_fixed_tick_from_inside_second_pass_of_fold_waits_for_next_day() {
    // 06:10Z is 01:10 EST, during the second pass; the 01:30 tick already fired at
    // 05:30Z (first pass), so the next one is 2026-11-02 01:30 EST = 06:30Z.
    let s = spec("30 1 * * *", "America/New_York");
    assert_eq!(
        s.next(t("2026-11-01T06:10:00Z"), true),
        Some(t("2026-11-02T06:30:00Z"))
    );
}

#[test]
fn new_york_interval_ticks_fire_on_both_passes_of_fold() {
    // 01:00 EDT = 05:00Z, 01:30 EDT = 05:30Z, 01:00 EST = 06:00Z, 01:30 EST = 06:30Z,
    // 02:00 EST = 07:00Z.
    assert_ticks(
        "0,30 * * * *",
        "America/New_York",
        "2026-11-01T05:00:00Z",
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    );
    // Starting inside the second pass still sees the rest of it.
    assert_ticks(
        "0,30 * * * *",
        "America/New_York",
        "2026-11-01T06:10:00Z",
        &["2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"],
    );
}

#[test]
fn new_york_daily_tick_follows_offset_change() {
    // 09:00 EST = 14:00Z before 2026-03-08, 09:00 EDT = 13:00Z from it.
    assert_ticks(
        "0 9 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        &[
            "2026-03-07T14:00:00Z",
            "2026-03-08T13:00:00Z",
            "2026-03-09T13:00:00Z",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// DST: Europe/London
// ---------------------------------------------------------------------------------------

#[test]
fn london_spring_forward() {
    // 2026-03-28 01:30 GMT = 01:30Z; 2026-03-29 01:30 does not exist -> 02:00 BST =
    // 01:00Z; 2026-03-30 01:30 BST = 00:30Z.
    assert_ticks(
        "30 1 * * *",
        "Europe/London",
        "2026-03-28T00:00:00Z",
        &[
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
        ],
    );
    // Hourly: 00:00 GMT = 00:00Z, then 01:00 local is skipped, 02:00 BST = 01:00Z,
    // 03:00 BST = 02:00Z.
    assert_ticks(
        "0 * * * *",
        "Europe/London",
        "2026-03-28T23:00:00Z",
        &[
            "2026-03-28T23:00:00Z",
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z",
        ],
    );
    // 09:00 GMT = 09:00Z on 03-28, 09:00 BST = 08:00Z from 03-29.
    assert_ticks(
        "0 9 * * *",
        "Europe/London",
        "2026-03-28T00:00:00Z",
        &["2026-03-28T09:00:00Z", "2026-03-29T08:00:00Z"],
    );
}

#[test]
fn london_fall_back() {
    // 2026-10-25 01:30 BST = 00:30Z (first pass only); 2026-10-26 01:30 GMT = 01:30Z.
    assert_ticks(
        "30 1 * * *",
        "Europe/London",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    );
    // Hourly: 00:00 BST = 23:00Z, 01:00 BST = 00:00Z, 01:00 GMT = 01:00Z, 02:00 GMT =
    // 02:00Z.
    assert_ticks(
        "0 * * * *",
        "Europe/London",
        "2026-10-24T23:00:00Z",
        &[
            "2026-10-24T23:00:00Z",
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// DST: Australia/Lord_Howe (30-minute shift)
// ---------------------------------------------------------------------------------------

#[test]
fn lord_howe_fixed_tick_in_spring_forward_gap_fires_after_the_gap() {
    // 2026-10-03 02:15 +10:30 = 2026-10-02T15:45Z; 2026-10-04 02:15 does not exist
    // (02:00-02:30 is skipped) -> 02:30 +11:00 = 2026-10-03T15:30Z; 2026-10-05 02:15
    // +11:00 = 2026-10-04T15:15Z.
    assert_ticks(
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-02T00:00:00Z",
        &[
            "2026-10-02T15:45:00Z",
            "2026-10-03T15:30:00Z",
            "2026-10-04T15:15:00Z",
        ],
    );
}

#[test]
fn lord_howe_interval_ticks_in_spring_forward_gap_are_skipped() {
    // 01:30 +10:30 = 15:00Z, 01:45 = 15:15Z, 02:00 and 02:15 do not exist,
    // 02:30 +11:00 = 15:30Z, 02:45 = 15:45Z.
    assert_ticks(
        "*/15 * * * *",
        "Australia/Lord_Howe",
        "2026-10-03T15:00:00Z",
        &[
            "2026-10-03T15:00:00Z",
            "2026-10-03T15:15:00Z",
            "2026-10-03T15:30:00Z",
            "2026-10-03T15:45:00Z",
        ],
    );
    // 02:10 and 02:40 each hour: 01:40 +10:30 = 15:10Z; 02:10 is skipped;
    // 02:40 +11:00 = 15:40Z.
    assert_ticks(
        "10,40 * * * *",
        "Australia/Lord_Howe",
        "2026-10-03T15:00:00Z",
        &["2026-10-03T15:10:00Z", "2026-10-03T15:40:00Z"],
    );
}

#[test]
fn lord_howe_fall_back_fold() {
    // Fixed 01:45: first pass 01:45 +11:00 = 2026-04-04T14:45Z; 01:45 +10:30 (15:15Z)
    // is not a tick; 2026-04-06 01:45 +10:30 = 2026-04-05T15:15Z.
    assert_ticks(
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T12:00:00Z",
        &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
    );
    // Interval: 01:00, 01:15, 01:30, 01:45 at +11:00 (14:00Z..14:45Z), then 01:30 and
    // 01:45 again at +10:30 (15:00Z, 15:15Z), then 02:00 +10:30 = 15:30Z.
    assert_ticks(
        "*/15 * * * *",
        "Australia/Lord_Howe",
        "2026-04-04T14:00:00Z",
        &[
            "2026-04-04T14:00:00Z",
            "2026-04-04T14:15:00Z",
            "2026-04-04T14:30:00Z",
            "2026-04-04T14:45:00Z",
            "2026-04-04T15:00:00Z",
            "2026-04-04T15:15:00Z",
            "2026-04-04T15:30:00Z",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Zones without DST
// ---------------------------------------------------------------------------------------

#[test]
fn tokyo_has_no_dst() {
    // 09:00 JST = 00:00Z every day, including the US and EU switch days.
    assert_ticks(
        "0 9 * * *",
        "Asia/Tokyo",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"],
    );
    assert_ticks(
        "0 9 * * *",
        "Asia/Tokyo",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:00:00Z", "2026-10-26T00:00:00Z"],
    );
    // Midnight JST is 15:00Z the previous day.
    assert_ticks(
        "@daily",
        "Asia/Tokyo",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T15:00:00Z", "2026-01-02T15:00:00Z"],
    );
}

#[test]
fn phoenix_has_no_dst() {
    // 02:30 MST = 09:30Z on the US switch days too.
    assert_ticks(
        "30 2 * * *",
        "America/Phoenix",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T09:30:00Z", "2026-03-09T09:30:00Z"],
    );
    assert_ticks(
        "30 1 * * *",
        "America/Phoenix",
        "2026-10-31T12:00:00Z",
        &["2026-11-01T08:30:00Z", "2026-11-02T08:30:00Z"],
    );
}

// ---------------------------------------------------------------------------------------
// Window
// ---------------------------------------------------------------------------------------

fn hourly_window(start_at: Option<&str>, end_at: Option<&str>) -> Window {
    Window {
        spec: spec("0 * * * *", "UTC"),
        start_at: start_at.map(t),
        end_at: end_at.map(t),
    }
}

fn collect(w: &Window, from: &str) -> Vec<DateTime<Utc>> {
    w.ticks_from(t(from)).take(100).collect()
}

fn instants(v: &[&str]) -> Vec<DateTime<Utc>> {
    v.iter().map(|s| t(s)).collect()
}

#[test]
fn window_start_and_end_are_inclusive() {
    let w = hourly_window(Some("2026-01-01T10:00:00Z"), Some("2026-01-01T13:00:00Z"));
    assert_eq!(
        collect(&w, "2026-01-01T00:00:00Z"),
        instants(&[
            "2026-01-01T10:00:00Z",
            "2026-01-01T11:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-01T13:00:00Z",
        ])
    );
    assert_eq!(
        w.first_tick_from(t("2026-01-01T00:00:00Z")),
        Some(t("2026-01-01T10:00:00Z"))
    );
    assert_eq!(
        w.first_tick_from(t("2026-01-01T13:00:00Z")),
        Some(t("2026-01-01T13:00:00Z"))
    );
    assert_eq!(w.first_tick_from(t("2026-01-01T13:00:01Z")), None);
}

#[test]
fn window_from_inside_starts_at_from() {
    let w = hourly_window(Some("2026-01-01T10:00:00Z"), Some("2026-01-01T13:00:00Z"));
    assert_eq!(
        collect(&w, "2026-01-01T11:30:00Z"),
        instants(&["2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z"])
    );
    // `from` on a tick is inclusive too.
    assert_eq!(
        collect(&w, "2026-01-01T12:00:00Z"),
        instants(&["2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z"])
    );
}

#[test]
fn window_bounds_between_ticks() {
    let w = hourly_window(Some("2026-01-01T10:30:00Z"), Some("2026-01-01T12:59:59Z"));
    assert_eq!(
        collect(&w, "2026-01-01T00:00:00Z"),
        instants(&["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"])
    );
    // A window holding no tick at all.
    let w = hourly_window(Some("2026-01-01T10:00:01Z"), Some("2026-01-01T10:59:59Z"));
    assert_eq!(w.first_tick_from(t("2026-01-01T00:00:00Z")), None);
    assert!(collect(&w, "2026-01-01T00:00:00Z").is_empty());
}

#[test]
fn window_open_ended() {
    let w = hourly_window(None, Some("2026-01-01T02:00:00Z"));
    assert_eq!(
        collect(&w, "2026-01-01T00:30:00Z"),
        instants(&["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"])
    );
    let w = hourly_window(Some("2026-01-01T05:00:00Z"), None);
    assert_eq!(
        w.ticks_from(t("2026-01-01T00:00:00Z"))
            .take(3)
            .collect::<Vec<_>>(),
        instants(&[
            "2026-01-01T05:00:00Z",
            "2026-01-01T06:00:00Z",
            "2026-01-01T07:00:00Z",
        ])
    );
    let w = hourly_window(None, None);
    assert_eq!(
        w.first_tick_from(t("2026-01-01T00:00:01Z")),
        Some(t("2026-01-01T01:00:00Z"))
    );
}

#[test]
fn window_with_end_in_the_past_or_never_firing_spec_is_empty() {
    let w = hourly_window(Some("2026-01-01T00:00:00Z"), Some("2026-01-01T05:00:00Z"));
    assert_eq!(w.first_tick_from(t("2026-06-01T00:00:00Z")), None);
    let w = Window {
        spec: spec("0 0 30 2 *", "UTC"),
        start_at: None,
        end_at: None,
    };
    assert_eq!(w.first_tick_from(t("2026-01-01T00:00:00Z")), None);
}

#[test]
fn window_across_dst_fold_keeps_both_interval_passes() {
    // New York, 2026-11-01: window 05:00Z..06:30Z holds 01:00 EDT, 01:30 EDT, 01:00 EST,
    // 01:30 EST.
    let w = Window {
        spec: spec("0,30 * * * *", "America/New_York"),
        start_at: Some(t("2026-11-01T05:00:00Z")),
        end_at: Some(t("2026-11-01T06:30:00Z")),
    };
    assert_eq!(
        collect(&w, "2026-11-01T00:00:00Z"),
        instants(&[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Per-schedule DST policy (`dst_gap`, `dst_fold`)
// ---------------------------------------------------------------------------------------

use cron_scheduler::schedules::spec::{DstFold, DstGap, DstPolicy};

/// Asserts the fire times in `[from, to)` under the policy.
fn assert_policy_ticks(
    expr: &str,
    tz: &str,
    gap: Option<DstGap>,
    fold: Option<DstFold>,
    (from, to): (&str, &str),
    expected: &[&str],
) {
    let spec = spec(expr, tz).with_dst(DstPolicy { gap, fold });
    let got: Vec<DateTime<Utc>> = spec.iter_from(t(from)).take_while(|x| *x < t(to)).collect();
    let want: Vec<DateTime<Utc>> = expected.iter().map(|s| t(s)).collect();
    assert_eq!(got, want, "{expr:?} in {tz}, gap {gap:?}, fold {fold:?}");
}

#[test]
fn dst_gap_policy_for_a_fixed_time_tick() {
    let ny = ("2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z");
    // 02:30 does not exist in New York on 2026-03-08.
    for gap in [None, Some(DstGap::Shift)] {
        assert_policy_ticks(
            "30 2 * * *",
            "America/New_York",
            gap,
            None,
            ny,
            &[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ],
        );
    }
    assert_policy_ticks(
        "30 2 * * *",
        "America/New_York",
        Some(DstGap::Skip),
        None,
        ny,
        &["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"],
    );
    // Lord Howe: local 02:00-02:30 is missing on 2026-10-04 (a 30-minute shift).
    let lh = ("2026-10-02T00:00:00Z", "2026-10-05T00:00:00Z");
    assert_policy_ticks(
        "15 2 * * *",
        "Australia/Lord_Howe",
        None,
        None,
        lh,
        &[
            "2026-10-02T15:45:00Z",
            "2026-10-03T15:30:00Z",
            "2026-10-04T15:15:00Z",
        ],
    );
    assert_policy_ticks(
        "15 2 * * *",
        "Australia/Lord_Howe",
        Some(DstGap::Skip),
        None,
        lh,
        &["2026-10-02T15:45:00Z", "2026-10-04T15:15:00Z"],
    );
}

#[test]
fn dst_fold_policy_for_a_fixed_time_tick() {
    // 01:30 happens twice in New York on 2026-11-01: 05:30Z (EDT) and 06:30Z (EST).
    let ny = ("2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z");
    for fold in [None, Some(DstFold::Once)] {
        assert_policy_ticks(
            "30 1 * * *",
            "America/New_York",
            None,
            fold,
            ny,
            &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        );
    }
    assert_policy_ticks(
        "30 1 * * *",
        "America/New_York",
        None,
        Some(DstFold::Twice),
        ny,
        &[
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-02T06:30:00Z",
        ],
    );
    // Lord Howe: local 01:30-02:00 happens twice on 2026-04-05 (+11:00, then +10:30).
    assert_policy_ticks(
        "45 1 * * *",
        "Australia/Lord_Howe",
        None,
        Some(DstFold::Twice),
        ("2026-04-04T00:00:00Z", "2026-04-05T00:00:00Z"),
        &["2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z"],
    );
    assert_policy_ticks(
        "45 1 * * *",
        "Australia/Lord_Howe",
        None,
        None,
        ("2026-04-04T00:00:00Z", "2026-04-05T00:00:00Z"),
        &["2026-04-04T14:45:00Z"],
    );
}

#[test]
fn dst_policy_for_interval_ticks() {
    // Today's rules: both passes of a fold fire; `once` keeps the first pass only.
    let fold = ("2026-11-01T05:00:00Z", "2026-11-01T07:30:00Z");
    assert_policy_ticks(
        "*/30 * * * *",
        "America/New_York",
        None,
        None,
        fold,
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    );
    assert_policy_ticks(
        "*/30 * * * *",
        "America/New_York",
        None,
        Some(DstFold::Once),
        fold,
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    );
    // Lord Howe's 30-minute fold: 01:30, 01:40, 01:50 fire once under `once`.
    assert_policy_ticks(
        "*/10 1 * * *",
        "Australia/Lord_Howe",
        None,
        Some(DstFold::Once),
        ("2026-04-04T14:25:00Z", "2026-04-04T15:35:00Z"),
        &[
            "2026-04-04T14:30:00Z",
            "2026-04-04T14:40:00Z",
            "2026-04-04T14:50:00Z",
        ],
    );
    // Today's rules skip 02:15 and 02:45 in New York's gap; `shift` fires them once, at
    // the first instant after the gap (03:00 EDT, 07:00Z).
    let gap = ("2026-03-08T06:00:00Z", "2026-03-08T07:30:00Z");
    assert_policy_ticks(
        "15,45 * * * *",
        "America/New_York",
        None,
        None,
        gap,
        &[
            "2026-03-08T06:15:00Z",
            "2026-03-08T06:45:00Z",
            "2026-03-08T07:15:00Z",
        ],
    );
    assert_policy_ticks(
        "15,45 * * * *",
        "America/New_York",
        Some(DstGap::Shift),
        None,
        gap,
        &[
            "2026-03-08T06:15:00Z",
            "2026-03-08T06:45:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:15:00Z",
        ],
    );
    // A gap tick that lands on a tick already there is one tick.
    assert_policy_ticks(
        "*/30 * * * *",
        "America/New_York",
        Some(DstGap::Shift),
        None,
        gap,
        &[
            "2026-03-08T06:00:00Z",
            "2026-03-08T06:30:00Z",
            "2026-03-08T07:00:00Z",
        ],
    );
}

/// An interval schedule keeps its period in absolute time across DST changes: ticks are
/// `anchor + k × period` in UTC whatever the wall clock does; the local readings below
/// show a fold's wall time twice and a gap's never.
#[test]
fn interval_ticks_keep_their_period_across_dst() {
    use cron_scheduler::schedules::interval::{Interval, parse_period};
    let cases: [(&str, &str, &str, [&str; 4]); 4] = [
        // New York falls back at 06:00Z: hourly from local midnight reads 01:00 twice.
        (
            "America/New_York",
            "PT1H",
            "2026-11-01T04:00:00Z",
            [
                "2026-11-01T00:00:00-04:00",
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ],
        ),
        // New York springs forward at 07:00Z: every 90 minutes from 00:30 EST, 02:00 EST
        // does not exist, so the next tick reads 03:00 EDT, 5,400 s later.
        (
            "America/New_York",
            "PT90M",
            "2026-03-08T05:30:00Z",
            [
                "2026-03-08T00:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T04:30:00-04:00",
                "2026-03-08T06:00:00-04:00",
            ],
        ),
        // Lord Howe falls back 30 minutes at 2026-04-04T15:00Z: 01:30 read twice.
        (
            "Australia/Lord_Howe",
            "PT30M",
            "2026-04-04T14:00:00Z",
            [
                "2026-04-05T01:00:00+11:00",
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T02:00:00+10:30",
            ],
        ),
        // Lord Howe springs forward 30 minutes at 2026-10-03T15:30Z: 02:00 never read.
        (
            "Australia/Lord_Howe",
            "PT30M",
            "2026-10-03T14:30:00Z",
            [
                "2026-10-04T01:00:00+10:30",
                "2026-10-04T01:30:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T03:00:00+11:00",
            ],
        ),
    ];
    for (tz, period, anchor, local) in cases {
        let every = Interval::new(parse_period(period).unwrap(), Some(t(anchor))).unwrap();
        let spec = CronSpec::every(every, tz).unwrap();
        let ticks: Vec<DateTime<Utc>> = spec.iter_from(t(anchor)).take(4).collect();
        let expected: Vec<DateTime<Utc>> = local.iter().map(|l| t(l)).collect();
        assert_eq!(ticks, expected, "{period} in {tz}");
        let read: Vec<String> = ticks
            .iter()
            .map(|u| u.with_timezone(&spec.timezone()).to_rfc3339())
            .collect();
        assert_eq!(read, local, "{period} in {tz}: the wall clock");
        let seconds = parse_period(period).unwrap();
        for w in ticks.windows(2) {
            assert_eq!((w[1] - w[0]).num_seconds(), seconds, "{period} in {tz}");
        }
        // Backwards too, and from between ticks.
        assert_eq!(spec.prev(ticks[3], false), Some(ticks[2]));
        assert_eq!(
            spec.next(ticks[1] + chrono::TimeDelta::milliseconds(1), true),
            Some(ticks[2])
        );
    }
}
