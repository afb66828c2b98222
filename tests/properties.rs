//! Property tests over everything a client can send that is parsed before it touches the
//! database: cron expressions with timezones (parsed, then asked for fire times at any
//! instant chrono can hold, far past and far future included), request bodies (arbitrary
//! JSON and arbitrary bytes through `parse_json` and validation), and credential lists.
//!
//! The properties: nothing panics; fire times never go backwards (`next(t)` is at or
//! after `t`, strictly after when exclusive, and an iterator is strictly increasing); a
//! body is accepted or refused with a 4xx (a schedule refusal names its field); a token
//! list yields one token per entry, or an error that names the entry but not its token.
//! Case counts are bounded so the file runs in a few seconds in the normal test suite,
//! and printed (`cargo nextest run --no-capture --test properties`). `PROPTEST_CASES`
//! overrides them for a longer hunt.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU32, Ordering},
};

use chrono::{DateTime, TimeDelta, Utc};
use cron_scheduler::{
    api::{
        auth::TokenSet,
        error::ApiError,
        extract::parse_json,
        launch::{BackfillRequest, CompleteRequest},
        preview::{self, PreviewRequest},
        schedules::PauseRequest,
    },
    schedules::{
        CatchupPolicy, CronSpec, OverlapPolicy, Window,
        model::{Defaults, ScheduleRequest, check_fires_after},
        spec::{DstFold, DstGap, DstPolicy},
    },
};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config as RunnerConfig, TestCaseError, TestRunner},
};
use serde_json::{Value, json};

/// The share of generated cron cases that must parse (and so reach the fire-time
/// properties); measured about 0.07 (see the printed counts), checked at under half.
const MIN_PARSED: f64 = 0.03;
/// The share of valid expressions whose generated timezone is valid (nine tenths).
const MIN_VALID_ZONE: f64 = 0.7;
/// The share of preview requests answered with fire times; measured about 0.055.
const MIN_PREVIEWED: f64 = 0.02;
/// The share of schedule-shaped bodies that are valid schedules; measured about 0.23,
/// checked at about half.
const MIN_VALID_SHAPED: f64 = 0.12;

/// Runs `test` over `cases` values of `strategy` (or `PROPTEST_CASES`), prints the count.
/// `test` answers whether the case reached the properties it checks (a case whose input
/// does not parse may check nothing): at least `min_reached` of the cases must, so a
/// generator that drifted to inputs that never parse fails instead of passing vacuously.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    min_reached: f64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let ran = AtomicU32::new(0);
    let reached = AtomicU32::new(0);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        if test(value)? {
            reached.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    let (ran, reached) = (ran.load(Ordering::Relaxed), reached.load(Ordering::Relaxed));
    println!(
        "{name}: {ran} cases in {:?}, {reached} reached the properties",
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    assert!(
        f64::from(reached) >= min_reached * f64::from(ran),
        "{name}: only {reached} of {ran} cases reached the properties (at least {min_reached} expected)"
    );
}

/// Any instant chrono can represent, weighted towards the interesting parts: around now,
/// the far past and future, and the very ends of the range.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp();
    let now = Utc::now().timestamp();
    prop_oneof![
        3 => now - 400 * 86_400..now + 400 * 86_400,
        2 => min..=max,
        1 => max - 400 * 86_400..=max,
        1 => min..=min + 400 * 86_400,
        // The last and first day: local time there overflows in zones off UTC.
        1 => max - 86_400..=max,
        1 => min..=min + 86_400,
        1 => -62_135_596_800_i64..253_402_300_799, // years 1..=9999
    ]
    .prop_flat_map(|secs| (Just(secs), 0..1_000_000_000u32))
    .prop_map(|(secs, nanos)| {
        DateTime::from_timestamp(secs, nanos).unwrap_or(DateTime::<Utc>::MAX_UTC)
    })
}

/// One cron field: the dialect's pieces, combined, plus the odd wrong one.
fn field() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        Just("L".to_owned()),
        (0u32..70).prop_map(|n| n.to_string()),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..70).prop_map(|n| format!("*/{n}")),
        (0u32..70, 0u32..70).prop_map(|(a, n)| format!("{a}/{n}")),
        (0u32..9, 0u32..7).prop_map(|(d, n)| format!("{d}#{n}")),
        (0u32..9).prop_map(|d| format!("{d}L")),
        (0u32..40).prop_map(|d| format!("{d}W")),
        prop::sample::select(vec![
            "MON",
            "fri",
            "SUN-SAT",
            "JAN",
            "dec",
            "FEB-MAR",
            "LW",
            "5#L",
            "+FRI",
            "W",
            "#",
            "-",
            "/",
            ",",
            "99999999999999999999",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(atom, 1..4).prop_map(|parts| parts.join(","))
}

fn cron_expr() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(field(), 4..8).prop_map(|f| f.join(" ")),
        1 => prop::sample::select(vec![
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly", "@midnight",
            "@reboot", "@", "0 0 29 2 *", "* * * * * *",
            "59 23 31 12 *", "0 0 L 2 *", "0 0 1W * *", "0 0 13 * +FRI",
        ])
        .prop_map(str::to_owned),
        2 => "[0-9*/,LW#?A-Za-z@+ -]{0,40}",
        1 => any::<String>(),
    ]
}

fn timezone() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    prop_oneof![
        8 => prop::sample::select(names).prop_map(str::to_owned),
        1 => any::<String>(),
        1 => Just("UTC".to_owned()),
    ]
}

/// The fire-time properties of one window from `t`.
fn fire_times_are_ordered(
    spec: CronSpec,
    t: DateTime<Utc>,
    bounds: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> Result<(), TestCaseError> {
    if let Some(n) = spec.next(t, true) {
        prop_assert!(n >= t, "inclusive next {n} before {t}");
    }
    if let Some(n) = spec.next(t, false) {
        prop_assert!(n > t, "exclusive next {n} not after {t}");
    }
    let ticks: Vec<_> = spec.iter_from(t).take(4).collect();
    prop_assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    let _ = spec.describe();
    let window = Window {
        spec,
        start_at: bounds.0,
        end_at: bounds.1,
    };
    let in_window: Vec<_> = window.ticks_from(t).take(3).collect();
    for tick in &in_window {
        prop_assert!(*tick >= t);
        prop_assert!(bounds.0.is_none_or(|s| *tick >= s));
        prop_assert!(bounds.1.is_none_or(|e| *tick <= e));
    }
    let _ = check_fires_after(&window, t);
    Ok(())
}

#[test]
fn cron_parsing_and_fire_times_never_panic_nor_go_backwards() {
    let bounds = (prop::option::of(instant()), prop::option::of(instant()));
    check(
        "cron_expr x timezone x instant",
        3000,
        MIN_PARSED,
        (cron_expr(), timezone(), instant(), bounds),
        |(expr, tz, t, bounds)| {
            let Ok(spec) = CronSpec::parse(&expr, &tz) else {
                return Ok(false);
            };
            fire_times_are_ordered(spec, t, bounds)?;
            Ok(true)
        },
    );
}

#[test]
fn valid_expressions_at_any_instant_never_panic() {
    // Expressions that parse, so every case reaches the fire-time search.
    let valid = prop::sample::select(vec![
        "* * * * *",
        "0 0 * * *",
        "*/7 * * * * *",
        "0 0 29 2 *",
        "0 0 L * *",
        "0 0 LW * *",
        "0 0 * * 5L",
        "0 0 * * 5#3",
        "0 0 13 * +FRI",
        "30 2 * * *",
        "0 0 1 1 *",
        "@yearly",
        "59 59 23 31 12 *",
        "15,45 1 * * SUN",
        "0 0 1-7 * MON",
    ]);
    check(
        "valid cron_expr x timezone x instant",
        3000,
        MIN_VALID_ZONE,
        (valid, timezone(), instant(), (0..3usize, 0..3usize)),
        |(expr, tz, t, (gap, fold))| {
            // Only the timezone may be invalid here (a random string, a tenth of cases).
            let Ok(spec) = CronSpec::parse(expr, &tz) else {
                return Ok(false);
            };
            // Under any DST policy, too.
            let spec = spec.with_dst(DstPolicy {
                gap: [None, Some(DstGap::Shift), Some(DstGap::Skip)][gap],
                fold: [None, Some(DstFold::Once), Some(DstFold::Twice)][fold],
            });
            fire_times_are_ordered(spec, t, (None, None))?;
            Ok(true)
        },
    );
}

#[test]
fn expressions_that_never_fire_answer_none_from_any_instant() {
    // croner searches up to year 5000 before it gives up: ~0.1 s per search in a debug
    // build, so few cases.
    let never = prop::sample::select(vec!["0 0 30 2 *", "0 0 31 4 *", "0 0 31 11 *"]);
    check(
        "never-firing cron_expr x timezone x instant",
        12,
        0.5,
        (never, timezone(), instant()),
        |(expr, tz, t)| {
            let Ok(spec) = CronSpec::parse(expr, &tz) else {
                return Ok(false);
            };
            prop_assert_eq!(spec.next(t, true), None);
            let window = Window {
                spec,
                start_at: None,
                end_at: None,
            };
            let refused = check_fires_after(&window, t).unwrap_err();
            prop_assert_eq!(refused.field, "cron_expr");
            Ok(true)
        },
    );
}

/// JSON with the schedule's field names as likely keys, and anything as values.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            any::<String>(),
            "[0-9*/ @A-Za-z_:.-]{0,30}",
            prop::sample::select(vec![
                "0 * * * *",
                "UTC",
                "Europe/London",
                "skip",
                "queue",
                "spread",
                "none",
                "2026-03-08T07:00:00Z",
                "9999-12-31T23:59:59Z",
                "0000-01-01T00:00:00Z",
                "-262143-01-01T00:00:00Z",
                "+262142-12-31T23:59:59Z",
                "succeeded",
            ])
            .prop_map(str::to_owned),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "schedule_id", "workflow_id", "version", "user_id", "cron_expr", "timezone",
            "interval", "anchor", "start_at", "end_at", "jitter_ms", "overlap_policy", "catchup_policy", "paused",
            "status", "next_fire_times", "created_at", "count", "from", "to", "error",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A body that is mostly a plausible schedule, with some fields replaced by anything.
fn schedule_body() -> impl Strategy<Value = Value> {
    let base = serde_json::json!({
        "workflow_id": "wf", "version": 1, "user_id": "alice", "cron_expr": "0 * * * *",
    });
    prop::collection::vec((key(), json_value()), 0..5).prop_map(move |fields| {
        let mut body = base.clone();
        for (k, v) in fields {
            body[k] = v;
        }
        body
    })
}

fn defaults() -> Defaults {
    Defaults {
        overlap_policy: OverlapPolicy::Skip,
        catchup_policy: CatchupPolicy::FireImmediately,
    }
}

/// A refusal the client can act on: a 4xx status (a client's mistake is never a 5xx).
fn refused_as_client_error(e: ApiError) -> Result<(), TestCaseError> {
    let status = axum::response::IntoResponse::into_response(e).status();
    prop_assert!(status.is_client_error(), "refused with {status}");
    Ok(())
}

/// Every body type the API parses, from `bytes`. Each is accepted or refused with a 4xx;
/// an accepted schedule is refused with a named field or fires at or after `now` in
/// increasing ticks; a preview answers increasing instants. `true` when the body is a
/// valid schedule.
fn parse_everything(bytes: &[u8], now: DateTime<Utc>) -> Result<bool, TestCaseError> {
    let mut valid_schedule = false;
    match parse_json::<ScheduleRequest>(bytes) {
        Ok(request) => match request.validate(defaults()) {
            Ok(spec) => {
                valid_schedule = true;
                if let Err(e) = check_fires_after(&spec.window, now) {
                    prop_assert!(!e.field.is_empty() && !e.message.is_empty());
                }
                let ticks: Vec<_> = spec.window.ticks_from(now).take(5).collect();
                prop_assert!(ticks.iter().all(|t| *t >= now), "{ticks:?} before {now}");
                prop_assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
            }
            Err(e) => prop_assert!(
                !e.field.is_empty() && !e.message.is_empty(),
                "a refusal names no field: {e:?}"
            ),
        },
        Err(e) => refused_as_client_error(e)?,
    }
    match parse_json::<PreviewRequest>(bytes) {
        Ok(req) => match preview::answer(req, &HashMap::new()) {
            Ok(resp) => {
                prop_assert!(resp.next.windows(2).all(|w| w[0].utc < w[1].utc));
            }
            Err(e) => refused_as_client_error(e)?,
        },
        Err(e) => refused_as_client_error(e)?,
    }
    for parsed in [
        parse_json::<BackfillRequest>(bytes).map(drop),
        parse_json::<CompleteRequest>(bytes).map(drop),
        parse_json::<PauseRequest>(bytes).map(drop),
    ] {
        if let Err(e) = parsed {
            refused_as_client_error(e)?;
        }
    }
    // A body is accepted as JSON exactly when it is a JSON object.
    prop_assert_eq!(
        parse_json::<Value>(bytes).is_ok(),
        serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v.is_object())
    );
    Ok(valid_schedule)
}

#[test]
fn request_bodies_are_accepted_or_refused_with_a_4xx() {
    // Anchors for what follows: the schedule-shaped bodies' base is a valid schedule, and a
    // body that breaks one field is refused naming it.
    let verdict = |body: Value| -> Result<(), String> {
        let request: ScheduleRequest =
            parse_json(body.to_string().as_bytes()).map_err(|_| "json".to_owned())?;
        request
            .validate(defaults())
            .map(drop)
            .map_err(|e| e.field.to_string())
    };
    let base =
        json!({"workflow_id": "wf", "version": 1, "user_id": "alice", "cron_expr": "0 * * * *"});
    assert_eq!(verdict(base.clone()), Ok(()));
    for (key, value, field) in [
        ("cron_expr", json!("0 * * *"), "cron_expr"),
        ("interval", json!("PT90M"), "interval"),
        ("timezone", json!("Mars/Olympus"), "timezone"),
        ("jitter_ms", json!(-1), "jitter_ms"),
        ("on_excluded", json!("never"), "on_excluded"),
    ] {
        let mut body = base.clone();
        body[key] = value;
        assert_eq!(verdict(body.clone()), Err(field.to_owned()), "{body}");
    }
    assert!(parse_everything(base.to_string().as_bytes(), Utc::now()).unwrap());
    assert!(!parse_everything(b"[]", Utc::now()).unwrap());

    // Most schedule-shaped bodies keep enough of the base to be valid schedules: the
    // properties of accepted schedules are exercised, not only refusals.
    check(
        "schedule-shaped JSON bodies",
        1500,
        MIN_VALID_SHAPED,
        (schedule_body(), instant()),
        |(body, now)| parse_everything(body.to_string().as_bytes(), now),
    );
    // Anything else: accepted or refused with a 4xx, never a panic.
    check("arbitrary JSON values", 1000, 1.0, json_value(), |value| {
        parse_everything(value.to_string().as_bytes(), Utc::now()).map(|_| true)
    });
    check(
        "arbitrary bytes",
        1000,
        1.0,
        prop::collection::vec(any::<u8>(), 0..256),
        |bytes| parse_everything(&bytes, Utc::now()).map(|_| true),
    );
}

/// ISO 8601 durations, mostly valid, some out of bounds or malformed.
fn interval() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1..=600_i64, prop::sample::select(vec!["S", "M", "H"]))
            .prop_map(|(n, u)| format!("PT{n}{u}")),
        2 => (1..=400_i64).prop_map(|n| format!("P{n}D")),
        1 => "P[0-9WDTHMS.-]{0,12}",
        1 => any::<String>(),
    ]
}

#[test]
fn preview_counts_and_instants_never_panic() {
    let request = (
        cron_expr(),
        prop::option::of(timezone()),
        // Mostly counts in range, so most cases with a valid expression get an answer.
        prop::option::of(prop_oneof![3 => 1..=100_i64, 1 => any::<i64>()]),
        prop::option::of(instant()),
        // One case in five an interval (with an anchor anywhere) instead of the expression.
        prop_oneof![4 => Just(None), 1 => (interval(), prop::option::of(instant())).prop_map(Some)],
    );
    check(
        "cron preview requests",
        800,
        MIN_PREVIEWED,
        request,
        |(cron_expr, timezone, count, from, every)| {
            let (cron_expr, interval, anchor) = match every {
                Some((interval, anchor)) => (None, Some(interval), anchor),
                None => (Some(cron_expr), None, None),
            };
            let req = PreviewRequest {
                cron_expr,
                interval,
                anchor,
                timezone,
                count,
                from,
                dst_gap: None,
                dst_fold: None,
                exclude_calendars: None,
                on_excluded: None,
            };
            let Ok(resp) = preview::answer(req, &HashMap::new()) else {
                return Ok(false);
            };
            prop_assert!(resp.next.len() <= 100);
            prop_assert!(resp.next.windows(2).all(|w| w[0].utc < w[1].utc));
            if let (Some(from), Some(first)) = (from, resp.next.first()) {
                prop_assert!(first.utc >= from);
            }
            Ok(true)
        },
    );
}

#[test]
fn credential_lists_parse_every_entry_or_name_one_without_its_token() {
    let entry = prop_oneof![
        any::<String>(),
        "(admin|user|executor|root)(:[a-z:]{0,6})?:[A-Za-z0-9+/=:-]{0,30}",
    ];
    check(
        "token lists",
        1000,
        1.0,
        prop::collection::vec(entry, 0..6),
        |entries| {
            let text = entries.join(",");
            let parsed = TokenSet::parse(&text);
            // Commas and newlines separate entries alike.
            let by_line = TokenSet::parse(&entries.join("\n"));
            prop_assert_eq!(
                parsed.as_ref().map(TokenSet::len).map_err(Clone::clone),
                by_line.as_ref().map(TokenSet::len).map_err(Clone::clone)
            );
            match parsed {
                // Every entry that is not blank or a comment is one token.
                Ok(set) => {
                    let listed = text
                        .split([',', '\n'])
                        .map(str::trim)
                        .filter(|e| !e.is_empty() && !e.starts_with('#'))
                        .count();
                    prop_assert_eq!(set.len(), listed);
                }
                // An error names the entry by position, never by its secret.
                Err(message) => {
                    prop_assert!(message.starts_with("entry "), "{message}");
                    for secret in entries.iter().filter_map(|e| e.rsplit(':').next()) {
                        prop_assert!(
                            secret.chars().count() < 12 || !message.contains(secret),
                            "the error shows a token: {message}"
                        );
                    }
                }
            }
            Ok(true)
        },
    );
}

#[test]
fn the_instant_strategy_reaches_the_ends_of_time() {
    // Guards the generator itself: a strategy that never left the present would make the
    // far-future properties above pass vacuously.
    let mut runner = TestRunner::deterministic();
    let strategy = instant();
    let (mut far_past, mut far_future) = (false, false);
    for _ in 0..500 {
        let t = strategy.new_tree(&mut runner).unwrap().current();
        far_past |= t < DateTime::<Utc>::MIN_UTC + TimeDelta::days(400);
        far_future |= t > DateTime::<Utc>::MAX_UTC - TimeDelta::days(400);
    }
    assert!(far_past && far_future);
}

/// Calendars and business-day moves, for random daily schedules and calendars in zones
/// with DST gaps and folds (New York, Lord Howe's 30 minutes, Chatham) and without: a tick
/// fires only when no calendar excludes it; a moved run lands, in the promised direction,
/// on an instant no calendar excludes, at the schedule's wall time (or the first instant
/// after a gap); and the runs' fire times stay in tick order (why moves are limited to
/// fixed-time schedules).
#[test]
fn calendar_moves_land_on_business_days_in_tick_order() {
    use chrono::{LocalResult, NaiveDate, TimeZone, Timelike};
    use cron_scheduler::schedules::{
        calendar::Weekday,
        exclusions::{CalendarRules, Exclusions, OnExcluded, TickFate},
    };
    const ZONES: [&str; 6] = [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kolkata",
    ];
    let calendar = (
        0..ZONES.len(),
        prop::collection::vec(0..120_i64, 0..40),
        prop::collection::vec((0..120_i64, 0..10_i64), 0..4),
        0..127_u8,
    );
    let case = (
        0..ZONES.len(),
        0..24_u32,
        prop_oneof![Just(0_u32), Just(30), 0..60_u32],
        0..365_i64,
        prop::collection::vec(calendar, 1..3),
        any::<bool>(),
    );
    check(
        "calendar moves",
        300,
        1.0,
        case,
        |(zone, hour, minute, start, calendars, forward)| {
            let base = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            let rules: Vec<CalendarRules> = calendars
                .iter()
                .enumerate()
                .map(|(i, (z, dates, ranges, off))| {
                    let day = |n: i64| base + TimeDelta::days(start + n);
                    let weekly: Vec<Weekday> = Weekday::ALL
                        .iter()
                        .copied()
                        .filter(|d| off & (1 << d.days_from_monday()) != 0)
                        .collect();
                    CalendarRules::new(
                        &format!("c{i}"),
                        ZONES[*z].parse().unwrap(),
                        dates.iter().map(|n| day(*n)).collect(),
                        ranges
                            .iter()
                            .map(|(a, len)| (day(*a), day(a + len)))
                            .collect(),
                        &weekly,
                    )
                })
                .collect();
            let exclusions = Exclusions {
                calendars: rules.iter().collect(),
                on_excluded: if forward {
                    OnExcluded::NextBusinessDay
                } else {
                    OnExcluded::PreviousBusinessDay
                },
            };
            let spec = CronSpec::parse(&format!("{minute} {hour} * * *"), ZONES[zone]).unwrap();
            let tz = spec.timezone();
            let from = (base + TimeDelta::days(start))
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc();
            let mut last_fire: Option<DateTime<Utc>> = None;
            for t in spec.iter_from(from).take(60) {
                let fate = exclusions.fate(t, &spec);
                let fire = match fate {
                    TickFate::Fire => {
                        prop_assert!(exclusions.excluded_by(t).is_none(), "{t} fires excluded");
                        t
                    }
                    TickFate::Skipped { .. } => {
                        prop_assert!(exclusions.excluded_by(t).is_some(), "{t} skipped");
                        continue;
                    }
                    TickFate::Moved { to, .. } => {
                        prop_assert!(exclusions.excluded_by(t).is_some(), "{t} moved");
                        prop_assert!(exclusions.excluded_by(to).is_none(), "{t} -> {to}");
                        prop_assert!(if forward { to > t } else { to < t }, "{t} -> {to}");
                        let local = to.with_timezone(&tz);
                        let wall = local.date_naive().and_hms_opt(hour, minute, 0).unwrap();
                        let in_gap = matches!(tz.from_local_datetime(&wall), LocalResult::None);
                        prop_assert!(
                            in_gap || (local.hour(), local.minute()) == (hour, minute),
                            "{t} -> {to} ({local}) is not at {hour}:{minute}"
                        );
                        to
                    }
                };
                if let Some(last) = last_fire {
                    prop_assert!(
                        fire >= last,
                        "fire times out of tick order: {last} then {fire}"
                    );
                }
                last_fire = Some(fire);
            }
            Ok(true)
        },
    );
}
