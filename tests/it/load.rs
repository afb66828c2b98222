//! Behaviour under load and failure that must hold whatever the size: a tick pass longer
//! than the lease, the queue bound, retries bounded by time and cancelled by a pause, runs
//! waiting for a launch slot, runs armed before they are due, `skip` at the due instant,
//! completion reports written in batches, and cohorts written before they are due.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cron_scheduler::mock_executor::Behaviour;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    common::{TestApp, fresh_database, leader, wait_for},
    launcher::{Mock, launch_config},
};

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Inserts `n` schedules straight into the database (as many as a test needs, fast).
async fn insert_schedules(
    pool: &PgPool,
    prefix: &str,
    n: i64,
    cron: &str,
    overlap: &str,
    catchup: &str,
    next_due_sql: &str,
) {
    sqlx::query(&format!(
        "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, timezone, \
           overlap_policy, catchup_policy, next_due_at) \
         select $1 || g, 'wf', 1, 'alice', $2, 'UTC', $3, $4, {next_due_sql} \
         from generate_series(1, $5) g"
    ))
    .bind(prefix)
    .bind(cron)
    .bind(overlap)
    .bind(catchup)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_tick_pass_longer_than_the_lease_keeps_the_leadership() {
    let app = TestApp::spawn_with(|c| {
        c.worker_autostart = false;
        c.leader_lease = Duration::from_millis(1000);
        c.lookahead = Duration::from_millis(500);
        c.max_catchup_runs = 10;
    })
    .await;
    wait_for("a leader", Duration::from_secs(10), || async {
        app.is_leader()
    })
    .await;
    let (_, epoch) = leader(&app.pool).await;
    // A day-long outage of 8,000 minutely schedules: 10 catch-up runs each, 80,000 rows
    // and 8,000 schedule updates: many batches, far longer than the 1 s lease.
    insert_schedules(
        &app.pool,
        "s",
        8000,
        "0 * * * * *",
        "allow",
        "fire_immediately",
        "date_trunc('minute', now()) - interval '1 day'",
    )
    .await;
    let started = Instant::now();
    let (status, _) = app.post("/worker/start", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for(
        "every schedule caught up",
        Duration::from_secs(120),
        || async {
            count(
                &app.pool,
                "select count(*) from schedules where next_due_at <= now()",
            )
            .await
                == 0
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(2),
        "the pass must outlast the lease for this test to mean anything (took {took:?})"
    );
    assert_eq!(app.elections(), 1, "the leader never stepped down");
    assert_eq!(leader(&app.pool).await.1, epoch, "no other leader since");
    let catchup: (i64, i64) = sqlx::query_as(
        "select min(n), max(n) from (select count(*) filter (where trigger = 'catchup') n \
           from runs group by schedule_id) c",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(catchup, (10, 10), "catch-up writes its bound, per schedule");
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from runs r join schedules s using (schedule_id) \
             where r.trigger = 'schedule' and r.scheduled_for < s.created_at - interval '1 minute'",
        )
        .await,
        0,
        "no tick of the outage is written outside the catch-up bound"
    );
    let counted: i64 = count(
        &app.pool,
        "select min(missed_uncounted) from schedules where missed_uncounted_exact",
    )
    .await;
    assert!(
        (1420..=1431).contains(&counted),
        "a day of missed ticks is counted, less the 10 with rows: {counted}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_schedule_the_leader_cannot_claim_yet_costs_no_leadership() {
    let app = TestApp::spawn_with(|c| {
        c.worker_autostart = true;
        c.leader_lease = Duration::from_millis(1000);
    })
    .await;
    wait_for("a leader", Duration::from_secs(10), || async {
        app.is_leader()
    })
    .await;
    // Registered a moment ago (claim_at '-infinity': look at it at once), and locked by an
    // API call still in progress, so the leader skips it and then computes its sleep with
    // it in view.
    insert_schedules(
        &app.pool,
        "new",
        1,
        "0 0 * * *",
        "skip",
        "none",
        "now() + interval '1 hour'",
    )
    .await;
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from schedules where schedule_id = 'new1' for update")
        .execute(&mut *tx)
        .await
        .unwrap();
    let (_, epoch) = leader(&app.pool).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tx.rollback().await.unwrap();
    wait_for(
        "the schedule looked at",
        Duration::from_secs(10),
        || async {
            count(
                &app.pool,
                "select count(*) from schedules where claim_at > '-infinity'",
            )
            .await
                == 1
        },
    )
    .await;
    assert_eq!(app.elections(), 1, "the leader never stepped down");
    assert_eq!(leader(&app.pool).await.1, epoch);
    app.stop().await;
}

#[tokio::test]
async fn a_queue_schedule_holds_at_most_max_queued_waiting_runs() {
    // The Executor accepts and never reports an end: the first run stays in flight.
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.max_queued = 3;
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    app.create_schedule(
        json!({"schedule_id": "q", "cron_expr": "* * * * * *", "overlap_policy": "queue"}),
    )
    .await;
    let until = Instant::now() + Duration::from_secs(7);
    let mut most = 0;
    while Instant::now() < until {
        most = most.max(
            count(
                &app.pool,
                "select count(*) from runs where status = 'pending'",
            )
            .await,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most <= 3, "at most 3 runs wait, saw {most}");
    let full = count(
        &app.pool,
        "select count(*) from runs where status = 'skipped' and reason = 'queue_full'",
    )
    .await;
    assert!(full >= 2, "later ticks end skipped (queue_full): {full}");
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from runs where status = 'running'"
        )
        .await,
        1
    );
    assert_eq!(mock.mock.stats().requests, 1, "only the first run was sent");
    app.stop().await;
}

#[tokio::test]
async fn a_pause_cancels_a_run_waiting_to_retry() {
    let mock = Mock::start(Behaviour {
        fail_status: Some(503),
        ..Behaviour::default()
    })
    .await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.launch_backoff = Duration::from_secs(3);
        c.launch_backoff_max = Duration::from_secs(3);
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    app.create_schedule(
        json!({"schedule_id": "yearly", "cron_expr": "0 0 1 1 *", "overlap_policy": "skip"}),
    )
    .await;
    let (status, run) = app.post("/schedules/yearly/trigger", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id: Uuid = run["run_id"].as_str().unwrap().parse().unwrap();
    wait_for("a failed attempt", Duration::from_secs(10), || async {
        let (status, attempt, retry): (String, i32, Option<DateTime<Utc>>) =
            sqlx::query_as("select status, attempt, retry_at from runs where run_id = $1")
                .bind(run_id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        status == "pending" && attempt == 1 && retry.is_some()
    })
    .await;
    let (status, _) = app
        .post("/schedules/yearly/pause", json!({"paused": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reason, slot): (String, Option<String>, bool) =
        sqlx::query_as("select status, reason, exclusive_slot from runs where run_id = $1")
            .bind(run_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("cancelled", Some("paused"))
    );
    assert!(!slot, "the cancelled run gives its slot back");
    let sent = mock.mock.stats().requests;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        mock.mock.stats().requests,
        sent,
        "a cancelled retry is never sent"
    );
    app.stop().await;
}

#[tokio::test]
async fn retries_end_once_the_retry_time_is_over() {
    let mock = Mock::start(Behaviour {
        fail_status: Some(503),
        ..Behaviour::default()
    })
    .await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.launch_backoff = Duration::from_millis(200);
        c.launch_backoff_max = Duration::from_millis(400);
        c.launch_retry_for = Duration::from_secs(3);
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    let (status, run) = app
        .post(
            "/run-launcher/start?workflow_id=wf&version=1&user_id=u",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let run_id: Uuid = run["run_id"].as_str().unwrap().parse().unwrap();
    wait_for("the run to fail", Duration::from_secs(20), || async {
        count(
            &app.pool,
            "select count(*) from runs where status = 'failed_launch'",
        )
        .await
            == 1
    })
    .await;
    let (reason, attempt, fire_at, finished_at): (String, i32, DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("select reason, attempt, fire_at, finished_at from runs where run_id = $1")
            .bind(run_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reason, "attempts_exhausted");
    assert!(
        attempt >= 4,
        "retried until the time was over: {attempt} attempts"
    );
    assert!(
        finished_at - fire_at >= chrono::TimeDelta::seconds(3),
        "not before SCHEDULER_LAUNCH_RETRY_FOR: {}",
        finished_at - fire_at
    );
    let last_sent = mock
        .mock
        .received()
        .iter()
        .map(|r| r.received_at)
        .max()
        .unwrap();
    assert!(
        last_sent <= fire_at + chrono::TimeDelta::milliseconds(4000),
        "no attempt long after the retry time: last at {}",
        last_sent - fire_at
    );
    app.stop().await;
}

#[tokio::test]
async fn a_run_waiting_for_a_launch_slot_is_not_reclaimed() {
    // One launch slot, a slow Executor: the last of 20 runs waits ~10 s for its slot,
    // longer than the 8 s lease it was claimed with (3 s Executor timeout + 5 s).
    let mock = Mock::start(Behaviour {
        delay_ms: 500,
        ..Behaviour::default()
    })
    .await;
    let (url, pool) = fresh_database().await;
    let a = TestApp::spawn_on(url.clone(), pool.clone(), |c| {
        launch_config(c, &mock.url);
        c.node_id = "a".into();
        c.launch_concurrency = 1;
        c.executor_timeout = Duration::from_millis(3000);
    })
    .await;
    a.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    for i in 0..20 {
        let (status, _) = a
            .post(
                &format!(
                    "/run-launcher/start?workflow_id=wf&version=1&user_id=u&idempotency_key=k{i}"
                ),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    wait_for("all claimed by a", Duration::from_secs(10), || async {
        count(
            &pool,
            "select count(*) from runs where launched_by = 'a' and status in ('launching', 'running')",
        )
        .await
            == 20
    })
    .await;
    // Another replica, eager to reclaim any lease that runs out.
    let b = TestApp::spawn_on(url, pool.clone(), |c| {
        launch_config(c, &mock.url);
        c.node_id = "b".into();
    })
    .await;
    wait_for("all delivered", Duration::from_secs(30), || async {
        count(&pool, "select count(*) from runs where status = 'running'").await == 20
    })
    .await;
    let stats = mock.mock.stats();
    assert_eq!(stats.requests, 20, "each run sent once: {stats:?}");
    assert_eq!(stats.duplicate_deliveries, 0);
    assert_eq!(
        count(
            &pool,
            "select count(*) from runs where launched_by = 'a' and attempt = 1"
        )
        .await,
        20
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn an_armed_run_is_claimed_early_and_sent_no_earlier_than_its_fire_at() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.arm_window = Duration::from_millis(2000);
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    app.create_schedule(json!({"schedule_id": "armed", "cron_expr": "*/2 * * * * *",
        "overlap_policy": "allow", "jitter_ms": 700}))
        .await;
    // Armed: claimed (`launching`) while its fire_at is still ahead.
    wait_for("a run armed before its time", Duration::from_secs(10), || async {
        count(
            &app.pool,
            "select count(*) from runs where status = 'launching' and fire_at > now() + interval '200 ms'",
        )
        .await
            > 0
    })
    .await;
    wait_for("a few runs launched", Duration::from_secs(15), || async {
        count(
            &app.pool,
            "select count(*) from runs where status = 'running'",
        )
        .await
            >= 4
    })
    .await;
    let fire: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("select run_id, fire_at from runs where status = 'running'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let received = mock.mock.received();
    assert!(fire.len() >= 4);
    for (id, fire_at) in fire {
        let r = received.iter().find(|r| r.run_id == id).unwrap();
        assert!(
            r.received_at >= fire_at,
            "{id} arrived {} before its fire_at",
            fire_at - r.received_at
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn skip_still_skips_when_the_previous_run_is_in_flight_at_the_due_instant() {
    // Each run is in flight ~1.5 s; ticks come every second, and runs are armed 1 s ahead.
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    mock.call_back_to(&app, 1500);
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    app.create_schedule(
        json!({"schedule_id": "skip", "cron_expr": "* * * * * *", "overlap_policy": "skip"}),
    )
    .await;
    wait_for("a few runs", Duration::from_secs(20), || async {
        count(
            &app.pool,
            "select count(*) from runs where status = 'succeeded'",
        )
        .await
            >= 3
    })
    .await;
    let arm = chrono::TimeDelta::seconds(1);
    // (claimed no earlier than, finished) of the runs that ran; (skipped at) of the others.
    let ran: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "select fire_at, finished_at from runs where status = 'succeeded' order by fire_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let skipped: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "select fire_at, finished_at from runs where status = 'skipped' and reason = 'overlap'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!skipped.is_empty(), "some ticks were skipped");
    for pair in ran.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1 - arm,
            "two runs in flight at once: {pair:?}"
        );
    }
    for (fire_at, decided) in &skipped {
        assert!(decided >= fire_at, "skipped before its due instant");
        assert!(
            ran.iter()
                .any(|(f, end)| *f - arm <= *decided && decided <= end),
            "skipped at {decided} with nothing in flight"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn completion_reports_written_together_each_end_their_own_run() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..300 {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into runs (run_id, scheduled_for, fire_at, status, trigger, workflow_id, \
               version, user_id, idempotency_key, attempt, launched_at) \
             values ($1, now(), now(), 'running', 'manual', 'wf', 1, 'u', $2, 1, now())",
        )
        .bind(id)
        .bind(format!("c{i}"))
        .execute(&app.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let report = |i: usize, id: Uuid| {
        let app = &app;
        async move {
            let body = if i % 2 == 0 {
                json!({"status": "succeeded"})
            } else {
                json!({"status": "failed", "error": format!("task {i} broke")})
            };
            app.post(&format!("/runs/{id}/complete"), body).await
        }
    };
    let answers =
        futures::future::join_all(ids.iter().enumerate().map(|(i, id)| report(i, *id))).await;
    for (i, (status, run)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "{run}");
        assert_eq!(run["run_id"], ids[i].to_string());
    }
    // Repeats of the same end (200) and contradictions (409), all at once.
    let original = |i: usize| if i % 2 == 0 { "succeeded" } else { "failed" };
    let opposite = |i: usize| if i % 2 == 0 { "failed" } else { "succeeded" };
    let again = futures::future::join_all(ids.iter().take(40).enumerate().map(|(i, id)| {
        let app = &app;
        let status = if i % 4 == 0 { opposite(i) } else { original(i) };
        async move {
            let (code, _) = app
                .post(&format!("/runs/{id}/complete"), json!({"status": status}))
                .await;
            (i, code)
        }
    }))
    .await;
    for (i, code) in again {
        let expected = if i % 4 == 0 {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        };
        assert_eq!(code, expected, "report {i}");
    }
    let rows: Vec<(Uuid, String, Option<String>, bool)> =
        sqlx::query_as("select run_id, status, last_error, finished_at is not null from runs")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    for (id, status, error, finished) in rows {
        let i = ids.iter().position(|x| *x == id).unwrap();
        if i % 2 == 0 {
            assert_eq!((status.as_str(), error), ("succeeded", None));
        } else {
            assert_eq!(status, "failed");
            assert_eq!(error, Some(format!("task {i} broke")));
        }
        assert!(finished);
    }
    app.stop().await;
}

/// The first 10-second boundary at least 8 s from now.
const FIRST_COHORT: &str = "to_timestamp(ceil((extract(epoch from now()) + 8) / 10) * 10)";

#[tokio::test]
async fn a_cohort_is_written_before_it_is_due_and_delivered() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    // 1,000 schedules every 10 s, all due at the same instants: with 10 s between ticks,
    // each tick is written 5 s (half the gap) before it is due.
    insert_schedules(
        &app.pool,
        "c",
        1000,
        "*/10 * * * * *",
        "allow",
        "none",
        FIRST_COHORT,
    )
    .await;
    let first: DateTime<Utc> = sqlx::query_scalar("select min(next_due_at) from schedules")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // Registered with their first tick at least 8 s ahead; the leader looks at them at
    // once and writes the tick 5 s before it.
    wait_for(
        "the first cohort delivered",
        Duration::from_secs(90),
        || async {
            count(
                &app.pool,
                &format!(
                    "select count(*) from runs where status = 'running' and scheduled_for = '{}'",
                    first.to_rfc3339()
                ),
            )
            .await
                == 1000
        },
    )
    .await;
    let (earliest, latest): (f64, f64) = sqlx::query_as(
        "select extract(epoch from min(scheduled_for - created_at))::float8, \
                extract(epoch from max(scheduled_for - created_at))::float8 \
         from runs where scheduled_for = $1",
    )
    .bind(first)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        earliest >= 3.0,
        "every tick of the cohort was written well before it was due (latest write {earliest:.2} s ahead)"
    );
    assert!(latest <= 6.0, "not earlier than its lead: {latest:.2} s");
    assert_eq!(mock.mock.stats().duplicate_deliveries, 0);
    app.stop().await;
}
