//! Interval schedules (`interval` + `anchor` instead of `cron_expr`): stored and returned,
//! fired by a real leader to a real Executor stand-in at whole periods from the anchor,
//! the same in absolute time across a DST change, and refused with a 422 naming the field
//! when malformed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use cron_scheduler::mock_executor::Behaviour;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    common::{TestApp, wait_for},
    launcher::{Mock, launch_config},
};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn times(schedule: &Value) -> Vec<DateTime<Utc>> {
    schedule["next_fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect()
}

/// A schedule body with an interval instead of the default `cron_expr`.
fn every(id: &str, interval: &str, extra: Value) -> Value {
    let mut body = json!({"schedule_id": id, "workflow_id": "wf", "version": 1,
                          "user_id": "alice", "interval": interval});
    if let Value::Object(extra) = extra {
        body.as_object_mut().unwrap().extend(extra);
    }
    body
}

#[tokio::test]
async fn an_interval_schedule_fires_whole_periods_from_its_anchor() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    // Every 2 s counted from an odd second: every tick falls on an odd second.
    let (status, s) = app
        .post(
            "/schedules/upsert",
            every(
                "odd",
                "PT2S",
                json!({"anchor": "2026-01-01T00:00:01Z", "overlap_policy": "allow"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["interval"], "PT2S");
    assert_eq!(s["anchor"], "2026-01-01T00:00:01Z");
    assert_eq!(s["cron_expr"], Value::Null);
    let next = times(&s);
    assert_eq!(next.len(), 5);
    for w in next.windows(2) {
        assert_eq!(w[1] - w[0], TimeDelta::seconds(2), "{next:?}");
    }
    assert!(next.iter().all(|t| t.timestamp() % 2 == 1), "{next:?}");

    wait_for("5 accepted launches", Duration::from_secs(30), || async {
        mock.mock.stats().accepted >= 5
    })
    .await;
    let ticks: Vec<(DateTime<Utc>, String)> = sqlx::query_as(
        "select scheduled_for, status from runs where schedule_id = 'odd' \
         order by scheduled_for",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(ticks.len() >= 5, "{ticks:?}");
    for w in ticks.windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            TimeDelta::seconds(2),
            "one row per tick, none missing: {ticks:?}"
        );
    }
    assert!(
        ticks.iter().all(|(t, _)| t.timestamp() % 2 == 1),
        "{ticks:?}"
    );
    assert_eq!(mock.mock.stats().duplicate_deliveries, 0);

    // From cron to interval and back: what a tick is changes, nothing else is needed.
    let (status, s) = app
        .post(
            "/schedules/upsert",
            json!({"schedule_id": "odd", "workflow_id": "wf", "version": 1,
                   "user_id": "alice", "cron_expr": "0 0 * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!((&s["interval"], &s["anchor"]), (&Value::Null, &Value::Null));
    let stored: (Option<String>, Option<i64>, Option<DateTime<Utc>>) = sqlx::query_as(
        "select cron_expr, interval_seconds, anchor from schedules where schedule_id = 'odd'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, (Some("0 0 * * *".into()), None, None));
    app.stop().await;
}

#[tokio::test]
async fn an_interval_keeps_its_period_in_absolute_time_across_dst() {
    let app = TestApp::spawn().await;
    // New York falls back on 2027-11-07 at 06:00Z (02:00 EDT → 01:00 EST): hourly from
    // local midnight, the wall clock reads 00:00, 01:00 EDT, 01:00 EST, 02:00, 03:00.
    let s = app
        .create_schedule(every(
            "ny-fall",
            "PT1H",
            json!({"cron_expr": null, "timezone": "America/New_York",
                   "anchor": "2027-11-07T04:00:00Z", "start_at": "2027-11-07T04:00:00Z"}),
        ))
        .await;
    assert_eq!(
        times(&s),
        [
            t("2027-11-07T04:00:00Z"),
            t("2027-11-07T05:00:00Z"),
            t("2027-11-07T06:00:00Z"),
            t("2027-11-07T07:00:00Z"),
            t("2027-11-07T08:00:00Z"),
        ]
    );
    // Springing forward on 2027-03-14 (02:00 EST → 03:00 EDT), every 90 minutes from
    // 00:30 local: 00:30 EST, 02:00 EST does not exist, so the tick 90 minutes later is
    // 03:00 EDT... in absolute time each is 5,400 s after the last.
    let (status, p) = app
        .post(
            "/cron/preview",
            json!({"interval": "PT90M", "anchor": "2027-03-14T05:30:00Z",
                   "timezone": "America/New_York", "from": "2027-03-14T05:30:00Z",
                   "count": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["interval"], "PT1H30M");
    assert_eq!(p["cron_expr"], Value::Null);
    let local: Vec<&str> = p["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["local"].as_str().unwrap())
        .collect();
    assert_eq!(
        local,
        [
            "2027-03-14T00:30:00-05:00",
            "2027-03-14T03:00:00-04:00",
            "2027-03-14T04:30:00-04:00"
        ]
    );
    assert!(
        p["description"].as_str().unwrap().contains("90 minutes"),
        "{p}"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_intervals_are_refused_naming_the_field_and_store_nothing() {
    let app = TestApp::spawn().await;
    let kept = app
        .create_schedule(every("kept", "PT90M", json!({"cron_expr": null})))
        .await;
    for (body, field) in [
        (every("new", "PT0S", json!({})), "interval"),
        (every("new", "P0D", json!({})), "interval"),
        (every("new", "P367D", json!({})), "interval"),
        (every("new", "PT31622401S", json!({})), "interval"),
        (every("new", "90m", json!({})), "interval"),
        (every("new", "P1M", json!({})), "interval"),
        (every("new", "PT1.5H", json!({})), "interval"),
        (every("new", "", json!({})), "interval"),
        (
            every("new", "PT1H", json!({"cron_expr": "0 * * * *"})),
            "interval",
        ),
        (
            every("new", "PT1H", json!({"anchor": "2026-01-01T00:00:00.5Z"})),
            "anchor",
        ),
        (
            every("new", "PT1H", json!({"anchor": "10000-01-01T00:00:00Z"})),
            "anchor",
        ),
        (every("new", "PT1H", json!({"dst_gap": "skip"})), "dst_gap"),
        (
            every("new", "P1D", json!({"on_excluded": "next_business_day"})),
            "on_excluded",
        ),
        (
            every("new", "PT1H", json!({"dst_fold": "once"})),
            "dst_fold",
        ),
        (
            every("new", "PT1H", json!({"timezone": "Mars/Base"})),
            "timezone",
        ),
        (
            json!({"schedule_id": "new", "workflow_id": "wf", "version": 1, "user_id": "alice",
                   "cron_expr": "0 * * * *", "anchor": "2026-01-01T00:00:00Z"}),
            "anchor",
        ),
        (
            json!({"schedule_id": "new", "workflow_id": "wf", "version": 1, "user_id": "alice"}),
            "cron_expr",
        ),
        // A change of an existing schedule refused: it stays as it was.
        (every("kept", "PT0S", json!({})), "interval"),
        (
            every("kept", "PT2H", json!({"cron_expr": "@daily"})),
            "interval",
        ),
    ] {
        let (status, err) = app.post("/schedules/upsert", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    let (status, _) = app.get("/schedules/new").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");
    let (_, still) = app.get("/schedules/kept").await;
    assert_eq!(still["interval"], "PT1H30M");
    assert_eq!(still["updated_at"], kept["updated_at"], "kept unchanged");
    // A move needs a fixed time of day, which an interval has not: said in words.
    let (_, err) = app
        .post(
            "/schedules/upsert",
            every(
                "new",
                "P1D",
                json!({"on_excluded": "previous_business_day"}),
            ),
        )
        .await;
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("an interval schedule"), "{message}");
    // A bad `anchor` type is a 4xx naming it too (not a 500).
    let (status, err) = app
        .post(
            "/schedules/upsert",
            every("new", "PT1H", json!({"anchor": 5})),
        )
        .await;
    assert!(status.is_client_error(), "{err}");
    let (status, err) = app.post("/cron/preview", json!({"interval": "P1Y"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "interval");
    app.stop().await;
}
