//! The launcher end to end over real HTTP: a real Executor stand-in, real replicas, a real
//! database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cron_scheduler::mock_executor::{Behaviour, MockExecutor};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{TestApp, fresh_database, wait_for};

/// A mock Executor on a local port.
pub struct Mock {
    pub mock: MockExecutor,
    pub url: url::Url,
    shutdown: CancellationToken,
}

impl Mock {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, behaviour)
    }

    pub fn on(listener: tokio::net::TcpListener, behaviour: Behaviour) -> Self {
        let url = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let mock = MockExecutor::new(behaviour);
        let shutdown = CancellationToken::new();
        mock.clone().spawn(listener, shutdown.clone());
        Self {
            mock,
            url,
            shutdown,
        }
    }

    /// Reports completions to `app` after `after_ms`.
    pub fn call_back_to(&self, app: &TestApp, after_ms: u64) {
        let mut b = self.mock.behaviour();
        b.callback_url = Some(app.url("/").parse().unwrap());
        b.callback_after_ms = after_ms;
        self.mock.set_behaviour(b);
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Replica settings for launcher tests: worker on, fast retries.
pub fn launch_config(c: &mut cron_scheduler::config::Config, executor: &url::Url) {
    c.worker_autostart = true;
    c.executor_url = Some(executor.clone());
    c.leader_lease = Duration::from_millis(2000);
    c.lookahead = Duration::from_millis(1000);
    c.launch_backoff = Duration::from_millis(100);
    c.launch_backoff_max = Duration::from_millis(500);
    c.executor_timeout = Duration::from_millis(2000);
}

async fn statuses(pool: &PgPool, schedule_id: &str) -> Vec<(String, i64)> {
    sqlx::query_as("select status, count(*) from runs where schedule_id = $1 group by 1 order by 1")
        .bind(schedule_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_tick_reaches_the_executor_with_its_dag_and_ends_succeeded() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.executor_token = Some(cron_scheduler::config::Secret::new("exec-token"));
    })
    .await;
    mock.call_back_to(&app, 50);
    let dag = json!({"tasks": [{"id": "a"}, {"id": "b", "after": ["a"]}]});
    app.put("/workflows/wf/versions/1", dag.clone()).await;
    app.create_schedule(json!({"schedule_id": "e2e", "cron_expr": "* * * * * *"}))
        .await;

    wait_for("a succeeded run", Duration::from_secs(15), || async {
        count(
            &app.pool,
            "select count(*) from runs where schedule_id = 'e2e' and status = 'succeeded'",
        )
        .await
            >= 2
    })
    .await;
    let (run_id, key): (Uuid, String) = sqlx::query_as(
        "select run_id, idempotency_key from runs where schedule_id = 'e2e' and status = 'succeeded' limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let got: Vec<_> = mock
        .mock
        .received()
        .into_iter()
        .filter(|r| r.run_id == run_id)
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].idempotency_key, key);
    assert!(got[0].authorization, "the bearer token is sent");
    let tp = got[0].traceparent.as_deref().unwrap();
    assert!(
        tp.contains(&run_id.simple().to_string()),
        "traceparent {tp} carries the run id as trace id"
    );
    let body = mock.mock.last_body().unwrap();
    assert_eq!(body["dag"], dag);
    for field in [
        "run_id",
        "schedule_id",
        "workflow_id",
        "version",
        "user_id",
        "scheduled_for",
        "fire_at",
        "attempt",
        "trigger",
    ] {
        assert!(body.get(field).is_some(), "{field} missing from {body}");
    }
    assert_eq!(body["schedule_id"], "e2e");
    assert_eq!(body["trigger"], "schedule");

    let (status, run) = app.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempt"], 1);
    assert!(run["launched_at"].is_string() && run["finished_at"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn executor_down_then_up_every_run_arrives_with_one_key() {
    // The Executor's port is reserved but nobody listens yet: connection refused.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    drop(std_listener);
    let executor_url: url::Url = format!("http://{addr}/").parse().unwrap();
    let app = TestApp::spawn_with(|c| launch_config(c, &executor_url)).await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    // At least three ticks whatever the phase of the clock: `end_at` is truncated to its
    // second and the first tick is the next whole second after the schedule is created.
    let end = (Utc::now() + chrono::TimeDelta::seconds(4))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    app.create_schedule(json!({"schedule_id": "down", "cron_expr": "* * * * * *", "end_at": end, "overlap_policy": "allow"})).await;

    wait_for("failed attempts", Duration::from_secs(10), || async {
        count(
            &app.pool,
            "select count(*) from runs where schedule_id = 'down' and attempt >= 2",
        )
        .await
            >= 2
    })
    .await;
    let error: Option<String> = sqlx::query_scalar(
        "select last_error from runs where schedule_id = 'down' and attempt >= 2 limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        error.unwrap().contains("connection"),
        "the last error is kept on the run"
    );

    // Then it answers 503 for a while, with Retry-After: 1.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let mock = Mock::on(
        listener,
        Behaviour {
            fail_status: Some(503),
            retry_after_secs: Some(1),
            ..Behaviour::default()
        },
    );
    mock.call_back_to(&app, 10);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut b = mock.mock.behaviour();
    b.fail_status = None;
    mock.mock.set_behaviour(b);

    wait_for("every run delivered", Duration::from_secs(30), || async {
        let s = statuses(&app.pool, "down").await;
        s.len() == 1 && s[0].0 == "succeeded"
    })
    .await;
    let runs: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "select run_id, idempotency_key, attempt from runs where schedule_id = 'down'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(runs.len() >= 3, "{runs:?}");
    let received = mock.mock.received();
    for (run_id, key, attempt) in &runs {
        let mine: Vec<_> = received.iter().filter(|r| r.run_id == *run_id).collect();
        assert!(!mine.is_empty(), "{run_id} never arrived");
        assert!(
            mine.iter().all(|r| r.idempotency_key == *key),
            "every attempt carries the same key"
        );
        assert_eq!(
            mine.iter().filter(|r| r.status == 202).count(),
            1,
            "accepted exactly once"
        );
        assert!(*attempt >= 2);
        // Retry-After: 1 was honoured between 503 answers.
        let fails: Vec<DateTime<Utc>> = mine
            .iter()
            .filter(|r| r.status == 503)
            .map(|r| r.received_at)
            .collect();
        for pair in fails.windows(2) {
            assert!(
                pair[1] - pair[0] >= chrono::TimeDelta::milliseconds(950),
                "retried before Retry-After: {fails:?}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn permanent_rejections_and_missing_dags_end_failed_launch() {
    let mock = Mock::start(Behaviour {
        fail_status: Some(400),
        ..Behaviour::default()
    })
    .await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    let (status, run) = app
        .post(
            "/run-launcher/start?workflow_id=wf&version=1&user_id=u",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["run_id"].as_str().unwrap().to_owned();
    let (status, missing) = app
        .post(
            "/run-launcher/start?workflow_id=nope&version=3&user_id=u",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let missing_id = missing["run_id"].as_str().unwrap().to_owned();

    wait_for("failed launches", Duration::from_secs(10), || async {
        count(
            &app.pool,
            "select count(*) from runs where status = 'failed_launch'",
        )
        .await
            == 2
    })
    .await;
    let (_, run) = app.get(&format!("/runs/{id}")).await;
    assert_eq!(run["status"], "failed_launch");
    assert_eq!(run["reason"], "rejected");
    assert_eq!(run["attempt"], 1, "a 4xx is not retried");
    assert!(run["last_error"].as_str().unwrap().contains("400"), "{run}");
    let (_, run) = app.get(&format!("/runs/{missing_id}")).await;
    assert_eq!(run["reason"], "workflow_not_found");
    assert_eq!(
        mock.mock.stats().requests,
        1,
        "a run with no DAG is never sent"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dead_replicas_launching_runs_are_reclaimed_and_delivered() {
    let mock = Mock::start(Behaviour::default()).await;
    let (url, pool) = fresh_database().await;
    // A replica claimed these runs, then died: `launching`, lease over, attempt 1.
    sqlx::query("insert into workflow_versions (workflow_id, version, dag) values ('wf', 1, '{}')")
        .execute(&pool)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into runs (run_id, scheduled_for, fire_at, status, trigger, workflow_id, version, user_id, \
               idempotency_key, attempt, launched_by, lease_until) \
             values ($1, now(), now(), 'launching', 'manual', 'wf', 1, 'u', $2, 1, 'dead-node', now() - interval '1 second')",
        )
        .bind(id)
        .bind(format!("key-{i}"))
        .execute(&pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let app = TestApp::spawn_on(url, pool.clone(), |c| launch_config(c, &mock.url)).await;
    wait_for("reclaimed", Duration::from_secs(10), || async {
        count(&pool, "select count(*) from runs where status = 'running'").await == 5
    })
    .await;
    let rows: Vec<(String, i32, String)> = sqlx::query_as(
        "select launched_by, attempt, idempotency_key from runs order by idempotency_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (i, (by, attempt, key)) in rows.iter().enumerate() {
        assert_eq!(by, "test-node");
        assert_eq!(*attempt, 2);
        assert_eq!(key, &format!("key-{i}"));
    }
    let keys: Vec<String> = mock
        .mock
        .received()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    for i in 0..5 {
        assert!(
            keys.contains(&format!("key-{i}")),
            "key-{i} delivered with its original key"
        );
    }
    app.stop().await;
}

/// Launch and finish intervals of a schedule's runs that ran.
async fn intervals(
    pool: &PgPool,
    schedule_id: &str,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> {
    sqlx::query_as(
        "select scheduled_for, launched_at, finished_at from runs where schedule_id = $1 \
         and status = 'succeeded' order by launched_at",
    )
    .bind(schedule_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn overlap_policies_hold_across_three_dispatching_replicas() {
    // Each run stays in flight ~1.5 s, ticks come every second.
    let mock = Mock::start(Behaviour::default()).await;
    let (url, pool) = fresh_database().await;
    let mut apps = Vec::new();
    for i in 0..3 {
        apps.push(
            TestApp::spawn_on(url.clone(), pool.clone(), |c| {
                launch_config(c, &mock.url);
                c.node_id = format!("r{i}");
            })
            .await,
        );
    }
    mock.call_back_to(&apps[0], 1500);
    apps[0].put("/workflows/wf/versions/1", json!({})).await;
    let end = (Utc::now() + chrono::TimeDelta::seconds(7))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for policy in ["skip", "queue", "allow"] {
        apps[1]
            .create_schedule(json!({"schedule_id": policy, "cron_expr": "* * * * * *", "overlap_policy": policy, "end_at": end}))
            .await;
    }
    wait_for("all runs settled", Duration::from_secs(40), || async {
        count(
            &pool,
            "select count(*) from runs where status in ('pending', 'launching', 'running')",
        )
        .await
            == 0
            && count(
                &pool,
                "select count(*) from schedules where next_due_at is not null",
            )
            .await
                == 0
    })
    .await;

    for policy in ["skip", "queue"] {
        let runs = intervals(&pool, policy).await;
        assert!(runs.len() >= 2, "{policy}: {runs:?}");
        for pair in runs.windows(2) {
            assert!(
                pair[1].1 >= pair[0].2,
                "{policy}: two runs in flight at once: {pair:?}"
            );
        }
        if policy == "queue" {
            for pair in runs.windows(2) {
                assert!(
                    pair[1].0 > pair[0].0,
                    "queue launches in tick order: {pair:?}"
                );
            }
            assert_eq!(
                statuses(&pool, "queue").await,
                vec![("succeeded".to_owned(), runs.len() as i64)],
                "queue skips nothing"
            );
        }
    }
    let skipped = count(&pool, "select count(*) from runs where schedule_id = 'skip' and status = 'skipped' and reason = 'overlap'").await;
    assert!(
        skipped >= 2,
        "skip drops ticks that come while one is in flight"
    );
    let allow = intervals(&pool, "allow").await;
    assert!(
        allow.windows(2).any(|p| p[1].1 < p[0].2),
        "allow overlaps runs: {allow:?}"
    );
    let launchers = count(
        &pool,
        "select count(distinct launched_by) from runs where launched_by is not null",
    )
    .await;
    assert!(launchers >= 2, "launches spread across replicas");

    // The database itself refuses a second exclusive slot for a schedule.
    let err = sqlx::query("update runs set exclusive_slot = true where schedule_id = 'queue'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("23505")
    );
    for a in apps {
        a.stop().await;
    }
}

#[tokio::test]
async fn manual_launch_is_idempotent_on_its_key() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/2", json!({"tasks": []}))
        .await;
    let path = "/run-launcher/start?workflow_id=wf&version=2&user_id=u&idempotency_key=once&scheduled_for=2030-01-01T00:00:00Z";
    let (s1, first) = app.post(path, json!({})).await;
    let (s2, second) = app.post(path, json!({})).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::CREATED, StatusCode::OK),
        "{first} {second}"
    );
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(first["scheduled_for"], "2030-01-01T00:00:00Z");
    assert_eq!(first["trigger"], "manual");
    wait_for("delivered", Duration::from_secs(10), || async {
        mock.mock.stats().accepted == 1
    })
    .await;
    let (s3, _) = app.post(path, json!({})).await;
    assert_eq!(s3, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stats = mock.mock.stats();
    assert_eq!(
        (stats.requests, stats.unique_runs),
        (1, 1),
        "one run, one delivery: {stats:?}"
    );
    assert_eq!(count(&app.pool, "select count(*) from runs").await, 1);

    let (status, body) = app
        .post(
            "/run-launcher/start?workflow_id=other&version=2&user_id=u&idempotency_key=once",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for (bad, field) in [
        ("/run-launcher/start?version=2&user_id=u", "workflow_id"),
        (
            "/run-launcher/start?workflow_id=wf&version=0&user_id=u",
            "version",
        ),
        (
            "/run-launcher/start?workflow_id=wf&version=x&user_id=u",
            "version",
        ),
        ("/run-launcher/start?workflow_id=wf&version=1", "user_id"),
        (
            "/run-launcher/start?workflow_id=wf&version=1&user_id=u&scheduled_for=soon",
            "scheduled_for",
        ),
    ] {
        let (status, body) = app.post(bad, json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["field"], field, "{bad}");
    }
    assert_eq!(
        count(&app.pool, "select count(*) from runs").await,
        1,
        "bad requests create nothing"
    );
    app.stop().await;
}

/// A client that retries a trigger (a timeout, a proxy's replay) with the same
/// `Idempotency-Key` gets the same run back, not a second run; a new key is a new run; the
/// key of a manual launch of another workflow is a conflict; a malformed key is refused.
#[tokio::test]
async fn a_repeated_trigger_with_one_key_is_one_run() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/1", json!({})).await;
    app.create_schedule(
        json!({"schedule_id": "t", "cron_expr": "0 0 1 1 *", "overlap_policy": "allow"}),
    )
    .await;
    let trigger = |key: &'static str| {
        let req = app
            .http
            .post(app.url("/schedules/t/trigger"))
            .header("Idempotency-Key", key);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s1, first) = trigger("retry-me").await;
    let (s2, again) = trigger("retry-me").await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK), "{again}");
    assert_eq!(first["run_id"], again["run_id"]);
    let (s3, other) = trigger("another").await;
    assert_eq!(s3, StatusCode::CREATED);
    assert_ne!(first["run_id"], other["run_id"]);
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from runs where schedule_id = 't'"
        )
        .await,
        2,
        "two keys, two runs"
    );
    let (status, body) = app
        .post(
            "/run-launcher/start?workflow_id=elsewhere&version=1&user_id=alice&idempotency_key=retry-me",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let resp = app
        .http
        .post(app.url("/schedules/t/trigger"))
        .header("Idempotency-Key", "")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "Idempotency-Key");
    wait_for("both delivered", Duration::from_secs(10), || async {
        mock.mock.stats().unique_runs == 2
    })
    .await;
    assert_eq!(
        count(&app.pool, "select count(*) from runs").await,
        2,
        "refused requests create nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn trigger_backfill_and_completion_reports() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.run_timeout = Duration::from_millis(1500);
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({})).await;
    app.create_schedule(
        json!({"schedule_id": "t", "cron_expr": "0 0 1 1 *", "overlap_policy": "allow"}),
    )
    .await;

    let (status, run) = app.post("/schedules/t/trigger", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["trigger"], "manual");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    wait_for("running", Duration::from_secs(10), || async {
        app.get(&format!("/runs/{run_id}")).await.1["status"] == "running"
    })
    .await;
    let complete = format!("/runs/{run_id}/complete");
    let (status, body) = app
        .post(&complete, json!({"status": "failed", "error": "boom"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["last_error"].as_str()),
        (Some("failed"), Some("boom"))
    );
    assert_eq!(
        app.post(&complete, json!({"status": "failed"})).await.0,
        StatusCode::OK,
        "the same report again is a no-op"
    );
    assert_eq!(
        app.post(&complete, json!({"status": "succeeded"})).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(&complete, json!({"status": "done"})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.post(&complete, json!({})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.post(
            &format!("/runs/{}/complete", Uuid::now_v7()),
            json!({"status": "failed"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/runs/not-a-uuid/complete", json!({"status": "failed"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // A run with no report ends timed_out after the run timeout.
    let (_, second) = app.post("/schedules/t/trigger", json!({})).await;
    let second_id = second["run_id"].as_str().unwrap().to_owned();
    wait_for("timed out", Duration::from_secs(15), || async {
        app.get(&format!("/runs/{second_id}")).await.1["status"] == "timed_out"
    })
    .await;

    // Backfill: the yearly ticks of 2020..=2024 (five), then again (no new run).
    let range = json!({"from": "2020-01-01T00:00:00Z", "to": "2024-06-01T00:00:00Z"});
    let (status, body) = app.post("/schedules/t/backfill", range.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["ticks"].as_u64(),
            body["created"].as_u64(),
            body["existing"].as_u64()
        ),
        (Some(5), Some(5), Some(0))
    );
    let (_, again) = app.post("/schedules/t/backfill", range).await;
    assert_eq!(
        (again["created"].as_u64(), again["existing"].as_u64()),
        (Some(0), Some(5))
    );
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from runs where trigger = 'backfill'"
        )
        .await,
        5
    );
    wait_for("backfill delivered", Duration::from_secs(10), || async {
        count(
            &app.pool,
            "select count(*) from runs where trigger = 'backfill' and status = 'running'",
        )
        .await
            == 5
    })
    .await;

    let every_second = json!({"schedule_id": "s", "cron_expr": "* * * * * *"});
    app.create_schedule(every_second).await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}),
            "to",
        ),
        (
            json!({"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"}),
            "to",
        ),
        (
            json!({"from": "2020-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}),
            "to",
        ),
        (json!({"to": "2020-01-01T00:00:00Z"}), "from"),
        (
            json!({"from": "yesterday", "to": "2020-01-01T00:00:00Z"}),
            "from",
        ),
    ];
    let before = count(
        &app.pool,
        "select count(*) from runs where trigger = 'backfill'",
    )
    .await;
    for (body, field) in cases {
        let (status, err) = app.post("/schedules/s/backfill", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}");
    }
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from runs where trigger = 'backfill'"
        )
        .await,
        before
    );
    assert_eq!(
        app.post(
            "/schedules/nope/backfill",
            json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/schedules/nope/trigger", json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

/// The columns of a run that a backfill resets or keeps.
#[derive(sqlx::FromRow)]
struct RunRow {
    status: String,
    trigger: String,
    idempotency_key: String,
    attempt: i32,
    reason: Option<String>,
    last_error: Option<String>,
    leader_epoch: Option<i64>,
    created_by: Option<String>,
}

impl RunRow {
    async fn get(pool: &PgPool, run_id: Uuid) -> Self {
        sqlx::query_as(
            "select status, trigger, idempotency_key, attempt, reason, last_error, \
               leader_epoch, created_by from runs where run_id = $1",
        )
        .bind(run_id)
        .fetch_one(pool)
        .await
        .unwrap()
    }
}

/// Inserts a finished run of `schedule_id` at `scheduled_for` directly, as an old leader
/// and launcher would have left it; returns its id and key.
async fn insert_finished_run(
    pool: &PgPool,
    schedule_id: &str,
    scheduled_for: &str,
    status: &str,
    reason: Option<&str>,
) -> (Uuid, String) {
    let run_id = Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, reason, \
           workflow_id, version, user_id, idempotency_key, attempt, last_error, leader_epoch, \
           created_by, launched_by, launched_at, finished_at) \
         values ($1, $2, $3::timestamptz, $3::timestamptz, $4, 'schedule', $5, 'wf', 1, 'alice', \
           $1::text, 3, 'boom', 7, 'old-node', 'old-node', now(), now())",
    )
    .bind(run_id)
    .bind(schedule_id)
    .bind(scheduled_for)
    .bind(status)
    .bind(reason)
    .execute(pool)
    .await
    .expect("insert finished run");
    (run_id, run_id.to_string())
}

#[tokio::test]
async fn backfill_revives_lost_ticks_with_a_new_key_and_leaves_the_rest() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/1", json!({})).await;
    app.create_schedule(
        json!({"schedule_id": "r", "cron_expr": "0 0 1 * *", "overlap_policy": "allow"}),
    )
    .await;
    // Monthly ticks 2020-01..=2020-06: four lost, two finished for good, one with no run.
    let pool = &app.pool;
    let missed = insert_finished_run(
        pool,
        "r",
        "2020-01-01T00:00:00Z",
        "missed",
        Some("catchup_none"),
    )
    .await;
    let failed_launch = insert_finished_run(
        pool,
        "r",
        "2020-02-01T00:00:00Z",
        "failed_launch",
        Some("attempts_exhausted"),
    )
    .await;
    let succeeded = insert_finished_run(pool, "r", "2020-03-01T00:00:00Z", "succeeded", None).await;
    let skipped = insert_finished_run(
        pool,
        "r",
        "2020-04-01T00:00:00Z",
        "skipped",
        Some("overlap"),
    )
    .await;
    let failed = insert_finished_run(pool, "r", "2020-05-01T00:00:00Z", "failed", None).await;
    let cancelled = insert_finished_run(
        pool,
        "r",
        "2020-06-01T00:00:00Z",
        "cancelled",
        Some("paused"),
    )
    .await;
    let revived = [
        missed.clone(),
        failed_launch.clone(),
        skipped.clone(),
        cancelled.clone(),
    ];
    // The Executor had accepted the lost launch attempt of the failed_launch tick (say the
    // answer was lost): the same key again would be deduplicated.
    let seeded = reqwest::Client::new()
        .post(mock.url.join("runs").unwrap())
        .header("idempotency-key", &failed_launch.1)
        .json(&json!({"run_id": failed_launch.0, "attempt": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::ACCEPTED);

    let range = json!({"from": "2020-01-01T00:00:00Z", "to": "2020-07-15T00:00:00Z"});
    let (status, body) = app.post("/schedules/r/backfill", range.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"ticks": 7, "created": 1, "revived": 4, "existing": 2})
    );

    wait_for(
        "revived and new runs delivered",
        Duration::from_secs(10),
        || async {
            count(
                pool,
                "select count(*) from runs where schedule_id = 'r' and trigger = 'backfill' \
             and status = 'running'",
            )
            .await
                == 5
        },
    )
    .await;
    let received = mock.mock.received();
    for (run_id, old_key) in &revived {
        let run = RunRow::get(pool, *run_id).await;
        let (status, trigger, key) = (run.status, run.trigger, run.idempotency_key);
        assert_eq!((status.as_str(), trigger.as_str()), ("running", "backfill"));
        assert_ne!(&key, old_key, "a revived attempt carries a new key");
        assert!(Uuid::parse_str(&key).is_ok(), "{key}");
        assert_eq!(run.attempt, 1, "attempts count afresh");
        assert_eq!(
            (run.reason, run.last_error),
            (None, None),
            "the lost attempt's end is cleared"
        );
        assert_eq!(run.leader_epoch, Some(7), "the tick's leadership is kept");
        assert_eq!(run.created_by.as_deref(), Some("test-node"));
        let deliveries: Vec<_> = received
            .iter()
            .filter(|r| r.run_id == *run_id && r.idempotency_key == key)
            .collect();
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        assert_eq!(
            deliveries[0].status, 202,
            "not deduplicated against the lost attempt"
        );
    }
    for (run_id, key) in [&succeeded, &failed] {
        let (status, trigger, stored_key): (String, String, String) =
            sqlx::query_as("select status, trigger, idempotency_key from runs where run_id = $1")
                .bind(run_id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(status == "succeeded" || status == "failed", "{status}");
        assert_eq!(
            (trigger.as_str(), &stored_key),
            ("schedule", key),
            "left alone"
        );
        assert!(
            !received.iter().any(|r| r.run_id == *run_id),
            "never launched"
        );
    }
    // Still one row per tick.
    let per_tick: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "select scheduled_for, count(*) from runs where schedule_id = 'r' \
         and scheduled_for < '2021-01-01' group by 1 order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(per_tick.len(), 7, "{per_tick:?}");
    assert!(per_tick.iter().all(|(_, n)| *n == 1), "{per_tick:?}");

    // Again: every tick now has a run that is in flight or finished.
    let (_, again) = app.post("/schedules/r/backfill", range).await;
    assert_eq!(
        again,
        json!({"ticks": 7, "created": 0, "revived": 0, "existing": 7})
    );
    app.stop().await;
}

/// Many distinct workflow versions in flight at once, with a DAG cache far smaller than
/// their DAGs: entries are evicted between a batch's claim and its sends, and every run
/// still reaches the Executor with its own DAG (a miss reads the database again), none
/// ends `workflow_not_found`. (Before, the cache was cleared wholesale past 10,000 entries
/// and the claimed runs whose DAGs went with it failed at once.)
#[tokio::test]
async fn twenty_thousand_workflow_versions_in_flight_lose_no_run_to_a_missing_dag() {
    const N: i64 = 20_000;
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.dag_cache_bytes = 64 << 10;
    })
    .await;
    sqlx::query(
        "insert into workflow_versions (workflow_id, version, dag) \
         select 'wf-' || i, 1, jsonb_build_object('n', i, 'pad', repeat('x', 200)) \
         from generate_series(1, $1) i",
    )
    .bind(N)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key) \
         select k.id, null, now(), now(), 'pending', 'manual', 'wf-' || k.i, 1, 'u', k.id::text \
         from (select gen_random_uuid() as id, i from generate_series(1, $1) i) k",
    )
    .bind(N)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("select pg_notify('scheduler_runs', '')")
        .execute(&app.pool)
        .await
        .unwrap();
    wait_for(
        "every run launched or failed",
        Duration::from_secs(120),
        || async {
            count(
                &app.pool,
                "select count(*) from runs where status not in ('pending', 'launching')",
            )
            .await
                == N
        },
    )
    .await;
    let failed = count(
        &app.pool,
        "select count(*) from runs where status = 'failed_launch'",
    )
    .await;
    assert_eq!(failed, 0, "no run failed for want of its DAG");
    let received = mock.mock.received();
    assert_eq!(received.len(), usize::try_from(N).unwrap());
    for r in &received {
        let workflow = r.workflow_id.as_deref().unwrap();
        let n: i64 = workflow.trim_start_matches("wf-").parse().unwrap();
        let stored = json!({"n": n, "pad": "x".repeat(200)});
        assert_eq!(
            r.dag_digest.as_deref(),
            Some(cron_scheduler::mock_executor::dag_digest(&stored).as_str()),
            "run {} got the DAG of {workflow}",
            r.run_id
        );
    }
    app.stop().await;
}
