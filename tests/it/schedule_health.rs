//! Per-schedule health (`health`, `last_fire_at`, `last_run_status`, `?health=`, and the
//! leader's `scheduler_schedules_unhealthy` gauge) against a real Executor stand-in.

use std::time::Duration;

use cron_scheduler::mock_executor::Behaviour;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    common::{TestApp, schedule_ids, wait_for},
    launcher::{Mock, launch_config},
};

async fn health(app: &TestApp, id: &str) -> Value {
    let (status, s) = app.get(&format!("/schedules/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    s
}

async fn listed(app: &TestApp, filter: &str) -> Vec<String> {
    let (status, body) = app.get(&format!("/schedules?health={filter}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    schedule_ids(&body)
}

/// The gauge's value for `reason` on `/metrics`.
async fn unhealthy(app: &TestApp, reason: &str) -> Option<f64> {
    let text = app.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("scheduler_schedules_unhealthy{"))
        .find(|l| l.contains(&format!("reason=\"{reason}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn rejected_runs_make_a_schedule_failing_and_stalled_ticks_make_one_late() {
    let mock = Mock::start(Behaviour {
        fail_status: Some(400),
        ..Behaviour::default()
    })
    .await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.misfire_grace = Duration::from_millis(2000);
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    assert_eq!(unhealthy(&app, "late").await, Some(0.0), "exported at 0");
    assert_eq!(unhealthy(&app, "failing").await, Some(0.0));

    // The Executor rejects every run: after 3 ended runs, all failed, the schedule fails.
    app.create_schedule(json!({"schedule_id": "bad", "cron_expr": "* * * * * *"}))
        .await;
    let fresh = health(&app, "bad").await;
    assert_eq!(fresh["health"], "ok", "{fresh}");
    assert_eq!(fresh["last_fire_at"], Value::Null);
    wait_for("bad is failing", Duration::from_secs(20), || async {
        health(&app, "bad").await["health"] == "failing"
    })
    .await;
    let bad = health(&app, "bad").await;
    assert_eq!(bad["last_run_status"], "failed_launch", "{bad}");
    assert_eq!(bad["last_fire_at"], Value::Null, "no launch was accepted");
    assert_eq!(listed(&app, "failing").await, ["bad"]);
    assert!(listed(&app, "late").await.is_empty());

    // Paused, it is not late, and its failures still show.
    let (status, _) = app
        .post("/schedules/bad/pause", json!({"paused": true}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The worker stops: a schedule created now gets no tick, and turns late once its first
    // tick is past due by more than the misfire grace.
    let (status, _) = app.post("/worker/stop", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    app.create_schedule(json!({"schedule_id": "stalled", "cron_expr": "* * * * * *"}))
        .await;
    app.create_schedule(json!({"schedule_id": "hourly", "cron_expr": "0 * * * *"}))
        .await;
    assert_eq!(health(&app, "stalled").await["health"], "ok");
    wait_for("stalled is late", Duration::from_secs(20), || async {
        health(&app, "stalled").await["health"] == "late"
    })
    .await;
    assert_eq!(health(&app, "hourly").await["health"], "ok", "not due yet");
    assert_eq!(health(&app, "bad").await["health"], "failing", "paused");
    assert_eq!(listed(&app, "late").await, ["stalled"]);
    assert_eq!(listed(&app, "failing").await, ["bad"]);
    assert_eq!(listed(&app, "ok").await, ["hourly"]);
    wait_for("the gauge counts both", Duration::from_secs(20), || async {
        unhealthy(&app, "late").await == Some(1.0) && unhealthy(&app, "failing").await == Some(1.0)
    })
    .await;

    // The Executor accepts again and reports completions: one succeeded run ends the
    // failing streak, and ticking again ends the lateness.
    mock.mock.set_behaviour(Behaviour::default());
    mock.call_back_to(&app, 50);
    let (status, _) = app
        .post("/schedules/bad/pause", json!({"paused": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post("/worker/start", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for("both recover", Duration::from_secs(20), || async {
        health(&app, "bad").await["health"] == "ok"
            && health(&app, "stalled").await["health"] == "ok"
    })
    .await;
    let bad = health(&app, "bad").await;
    assert!(bad["last_fire_at"].is_string(), "{bad}");
    assert!(listed(&app, "failing").await.is_empty());

    let (status, body) = app.get("/schedules?health=sick").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "health", "{body}");
    app.stop().await;
}

/// A health-filtered page examines a bounded number of schedules: with more schedules
/// than one page scans, it carries a cursor even when it found nothing, and following
/// the cursors finds every match.
#[tokio::test]
async fn a_health_filter_scans_in_bounded_pages() {
    use cron_scheduler::schedules::store::HEALTH_SCAN;
    let app = TestApp::spawn().await;
    // HEALTH_SCAN + 2 schedules straight into the table (the API would take minutes); the
    // last one is late: its next tick is an hour overdue.
    sqlx::query(
        "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, \
           timezone, overlap_policy, catchup_policy, next_due_at) \
         select 'h' || lpad(i::text, 6, '0'), 'wf', 1, 'alice', '0 * * * *', 'UTC', 'skip', \
           'none', case when i = $1 then now() - interval '1 hour' \
                        else now() + interval '1 hour' end \
         from generate_series(1, $1) i",
    )
    .bind(HEALTH_SCAN + 2)
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, first) = app.get("/schedules?health=late&limit=10").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        first["schedules"],
        json!([]),
        "the first page scans none that is late"
    );
    let cursor = first["next_cursor"].as_str().expect("a cursor to go on");
    let (_, second) = app
        .get(&format!("/schedules?health=late&limit=10&cursor={cursor}"))
        .await;
    assert_eq!(schedule_ids(&second), [format!("h{:06}", HEALTH_SCAN + 2)]);
    assert_eq!(second["next_cursor"], Value::Null);
    app.stop().await;
}

/// The leader's survey counts every schedule once per cycle, one bounded chunk a step,
/// and starts over when a cycle is complete.
#[tokio::test]
async fn the_health_survey_counts_every_schedule_in_bounded_chunks() {
    use cron_scheduler::fleet::health::{Counts, Survey};
    let app = TestApp::spawn().await;
    // 5 schedules: 2 late (next tick an hour overdue), 3 not due yet.
    sqlx::query(
        "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, \
           timezone, overlap_policy, catchup_policy, next_due_at) \
         select 's' || i, 'wf', 1, 'alice', '0 * * * *', 'UTC', 'skip', 'none', \
           case when i in (2, 5) then now() - interval '1 hour' \
                else now() + interval '1 hour' end \
         from generate_series(1, 5) i",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let grace = Duration::from_secs(7);
    let mut survey = Survey::default();
    let expected = Counts {
        late: 2,
        failing: 0,
    };
    for cycle in 0..2 {
        assert_eq!(survey.step(&app.pool, 2, grace).await.unwrap(), None);
        assert_eq!(survey.step(&app.pool, 2, grace).await.unwrap(), None);
        assert_eq!(
            survey.step(&app.pool, 2, grace).await.unwrap(),
            Some(expected),
            "cycle {cycle}: 3 chunks of at most 2 cover 5 schedules"
        );
    }
    app.stop().await;
}
