//! The fleet in one process: several replicas on one database, the ticker's SQL, the worker
//! switch, catch-up, and what pause, delete and upserts do to materialized ticks.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use cron_scheduler::fleet::{
    election_settings,
    ticker::{self, Deposed},
};
use cron_scheduler::telemetry::Metrics;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};

use crate::common::{
    TestApp, assert_every_second_once, fresh_database, leader, test_config, wait_for,
};

/// Settings for fleet tests: a short lease and lookahead, catch-up on, worker on.
fn fleet_config(c: &mut cron_scheduler::config::Config) {
    c.worker_autostart = true;
    c.leader_lease = Duration::from_millis(2000);
    c.lookahead = Duration::from_millis(1000);
    c.misfire_grace = Duration::from_millis(1000);
    c.max_catchup_runs = 1000;
    c.default_catchup_policy = cron_scheduler::schedules::CatchupPolicy::FireImmediately;
}

#[tokio::test]
async fn three_replicas_one_leader_graceful_handover_and_no_double_tick() {
    let (url, pool) = fresh_database().await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            TestApp::spawn_on(url.clone(), pool.clone(), |c| {
                fleet_config(c);
                c.node_id = format!("node-{i}");
            })
            .await,
        );
    }
    wait_for("a leader", Duration::from_secs(10), || async {
        leader(&pool).await.0.is_some()
    })
    .await;
    for i in 0..5 {
        nodes[0]
            .create_schedule(json!({"schedule_id": format!("s{i}"), "cron_expr": "* * * * * *"}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (status, body) = nodes[1].get("/worker/status").await;
    assert_eq!(status, StatusCode::OK);
    let (old_leader, old_epoch) = leader(&pool).await;
    let old_leader = old_leader.unwrap();
    assert_eq!(body["leader"]["node_id"], old_leader);
    assert_eq!(body["nodes"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(
        nodes.iter().filter(|n| n.is_leader()).count(),
        1,
        "exactly one node leads"
    );

    // Graceful shutdown of the leader: it unlocks, a follower takes over at once.
    let idx = nodes.iter().position(|n| n.is_leader()).unwrap();
    let leaving = nodes.remove(idx);
    let started = Instant::now();
    leaving.stop().await;
    wait_for("a new leader", Duration::from_secs(10), || async {
        let (node, epoch) = leader(&pool).await;
        epoch > old_epoch && node.is_some_and(|n| n != old_leader)
    })
    .await;
    let takeover = started.elapsed();
    println!("graceful takeover took {takeover:?}");
    assert!(
        takeover < Duration::from_millis(1500),
        "a released lock is taken at once, not after the lease: {takeover:?}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let until: DateTime<Utc> = sqlx::query_scalar("select now() - interval '1 second'")
        .fetch_one(&pool)
        .await
        .unwrap();
    for i in 0..5 {
        let n = assert_every_second_once(&pool, &format!("s{i}"), until).await;
        assert!(n >= 5, "s{i} has {n} ticks");
    }
    let epochs: Vec<i64> = sqlx::query_scalar("select distinct leader_epoch from runs order by 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        epochs.len() >= 2,
        "runs were written by both leaders: {epochs:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
async fn a_stale_leader_is_fenced_and_two_believers_never_double_a_tick() {
    let (_url, pool) = fresh_database().await;
    let app = TestApp::spawn_on(_url.clone(), pool.clone(), |c| c.worker_autostart = false).await;
    for i in 0..20 {
        app.create_schedule(json!({"schedule_id": format!("b{i}"), "cron_expr": "* * * * * *"}))
            .await;
    }
    app.stop().await;
    sqlx::query(
        "insert into fleet_state (cluster_name, worker_enabled, leader_epoch, leader_node) \
         values ('default', true, 7, 'b') on conflict (cluster_name) do update set \
         worker_enabled = true, leader_epoch = 7, leader_node = 'b'",
    )
    .execute(&pool)
    .await
    .unwrap();

    let mut cfg = test_config();
    fleet_config(&mut cfg);
    let settings = election_settings(&cfg).tick;

    // A deposed leader (epoch 6) writes nothing and learns it is deposed.
    let mut stale = PgConnection::connect(&_url).await.unwrap();
    let err = ticker::tick_once(
        &mut stale,
        &settings,
        "default",
        "a",
        6,
        &Metrics::detached(),
    )
    .await
    .unwrap_err();
    assert!(err.downcast_ref::<Deposed>().is_some(), "{err:#}");
    let written: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, 0);

    // Two nodes that both pass the fence (as if it were broken) tick concurrently for a
    // few seconds: the claim and the unique key still give one run per tick.
    // Who wins a due schedule depends on timing; run until both have written (at least
    // 3 s, at most 20 s) so the test always exercises two writers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = |name: &'static str, pause_ms: u64| {
        let url = _url.clone();
        let settings = settings.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let mut passes = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                ticker::tick_once(
                    &mut conn,
                    &settings,
                    "default",
                    name,
                    7,
                    &Metrics::detached(),
                )
                .await
                .unwrap();
                passes += 1;
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            passes
        })
    };
    let (a, b) = (run("a", 30), run("b", 17));
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let writers: i64 = sqlx::query_scalar("select count(distinct created_by) from runs")
            .fetch_one(&pool)
            .await
            .unwrap();
        if (writers == 2 && started.elapsed() >= Duration::from_secs(3))
            || started.elapsed() >= Duration::from_secs(20)
        {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a > 10 && b > 10, "both ticked: {a} {b}");
    let until: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&pool)
        .await
        .unwrap();
    for i in 0..20 {
        assert_every_second_once(&pool, &format!("b{i}"), until).await;
    }
    let creators: Vec<String> =
        sqlx::query_scalar("select distinct created_by from runs order by 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(creators, ["a", "b"], "both wrote, neither doubled");

    // And the key itself refuses a second row for a tick.
    let dup = sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, workflow_id, version, user_id, idempotency_key) \
         select gen_random_uuid(), schedule_id, scheduled_for, fire_at, 'pending', 'schedule', workflow_id, version, user_id, gen_random_uuid()::text \
         from runs limit 1",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(
        dup.as_database_error().unwrap().code().as_deref(),
        Some("23505")
    );
}

#[tokio::test]
async fn worker_switch_stops_and_resumes_ticking() {
    let app = TestApp::spawn_with(fleet_config).await;
    app.create_schedule(
        json!({"schedule_id": "w", "cron_expr": "* * * * * *", "catchup_policy": "none"}),
    )
    .await;
    let count = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from runs where schedule_id = 'w' and status = 'pending'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    wait_for("runs", Duration::from_secs(10), || async {
        count(app.pool.clone()).await >= 2
    })
    .await;

    let (status, body) = app.post("/worker/stop", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["worker_enabled"], false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = count(app.pool.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(app.pool.clone()).await,
        stopped_at,
        "no ticks while stopped"
    );

    let (status, body) = app.post("/worker/start", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["worker_enabled"], true);
    assert_eq!(body["is_leader"], true);
    assert_eq!(body["leader"]["node_id"], "test-node");
    wait_for("ticking again", Duration::from_secs(10), || async {
        count(app.pool.clone()).await > stopped_at + 1
    })
    .await;
    // Ticks that fell due while stopped are missed under `none`, with a reason.
    let missed: i64 = sqlx::query_scalar(
        "select count(*) from runs where schedule_id = 'w' and status = 'missed' and reason = 'catchup_none'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        missed >= 1,
        "ticks during the stop are accounted for as missed"
    );
    let (_, status_body) = app.get("/worker/status").await;
    assert!(status_body["last_tick_at"].is_string());
    assert!(status_body["pending_runs"].as_i64().unwrap() >= 1);
    app.stop().await;
}

#[tokio::test]
async fn catchup_policies_after_downtime() {
    let app = TestApp::spawn_with(|c| {
        fleet_config(c);
        c.worker_autostart = false;
        c.max_catchup_runs = 10;
        c.catchup_spread = Duration::from_secs(60);
    })
    .await;
    for policy in ["none", "fire_immediately", "spread"] {
        app.create_schedule(
            json!({"schedule_id": policy, "cron_expr": "* * * * *", "catchup_policy": policy}),
        )
        .await;
    }
    // 100 minutes of downtime: the next due tick is 100 minutes ago.
    sqlx::query(
        "update schedules set next_due_at = date_trunc('minute', now()) - interval '100 minutes'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, _) = app.post("/worker/start", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for("catch-up", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("select count(distinct schedule_id) from runs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        n == 3
    })
    .await;
    let counts = |policy: &'static str| {
        let pool = app.pool.clone();
        async move {
            let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
                "select status, trigger, reason, count(*) from runs where schedule_id = $1 \
                 and scheduled_for < date_trunc('minute', now()) - interval '1 minute' \
                 group by 1, 2, 3 order by 1, 2, 3",
            )
            .bind(policy)
            .fetch_all(&pool)
            .await
            .unwrap();
            rows
        }
    };
    // Each catch-up writes at most `max_catchup_runs` rows (the latest missed ticks) and
    // counts the rest: rows plus count are every missed tick, whatever the policy.
    let none = counts("none").await;
    assert_eq!(none.len(), 1, "{none:?}");
    assert_eq!(
        (none[0].0.as_str(), none[0].2.as_deref()),
        ("missed", Some("catchup_none"))
    );
    let missed_rows: i64 = sqlx::query_scalar(
        "select count(*) from runs where schedule_id = 'none' and status = 'missed'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(missed_rows, 10, "the latest 10 missed ticks get rows");
    let fire = counts("fire_immediately").await;
    let pending: i64 = fire.iter().filter(|r| r.0 == "pending").map(|r| r.3).sum();
    assert!((8..=10).contains(&pending), "{fire:?}");
    assert!(
        fire.iter().all(|r| r.0 == "pending" && r.1 == "catchup"),
        "no missed rows: the rest is counted {fire:?}"
    );
    let uncounted: Vec<(String, i64, bool)> = sqlx::query_as(
        "select schedule_id, missed_uncounted, missed_uncounted_exact from schedules order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for (policy, rows) in [("none", 10), ("fire_immediately", 10), ("spread", 10)] {
        let u = uncounted.iter().find(|u| u.0 == policy).unwrap();
        assert!(u.2, "{policy}: an exact count");
        // From 100 minutes back to now − 5 s: 100 or 101 missed ticks (by where in the
        // minute the test runs).
        assert!(
            (100..=101).contains(&(u.1 + rows)),
            "{policy}: {} counted + {rows} rows",
            u.1
        );
    }
    let spread: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "select fire_at from runs where schedule_id = 'spread' and trigger = 'catchup' and status = 'pending' order by scheduled_for",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(spread.len(), 10);
    for pair in spread.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TimeDelta::seconds(6),
            "spread evenly over 60 s: {spread:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn pause_delete_and_spec_changes_act_on_materialized_ticks() {
    let app = TestApp::spawn_with(|c| {
        fleet_config(c);
        c.lookahead = Duration::from_secs(30);
    })
    .await;
    let s = app
        .create_schedule(json!({"schedule_id": "p", "cron_expr": "*/5 * * * * *"}))
        .await;
    let pending = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from runs where schedule_id = 'p' and status = 'pending'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    wait_for("materialized ticks", Duration::from_secs(10), || async {
        pending(app.pool.clone()).await >= 5
    })
    .await;

    app.post("/schedules/p/pause", json!({"paused": true}))
        .await;
    assert_eq!(
        pending(app.pool.clone()).await,
        0,
        "pause cancels every pending run at once"
    );
    app.post("/schedules/p/pause", json!({"paused": false}))
        .await;
    wait_for("resumed ticks", Duration::from_secs(10), || async {
        pending(app.pool.clone()).await >= 5
    })
    .await;
    let revived: i64 = sqlx::query_scalar(
        "select count(*) from runs where schedule_id = 'p' and status = 'pending' and updated_at > created_at",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        revived >= 1,
        "future ticks cancelled by the pause are revived, not duplicated"
    );

    let mut changed = s.clone();
    changed["cron_expr"] = json!("*/7 * * * * *");
    app.post("/schedules/upsert", changed).await;
    let old_pending: i64 = sqlx::query_scalar(
        "select count(*) from runs where schedule_id = 'p' and status = 'pending' \
         and extract(second from scheduled_for)::int % 7 <> 0",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(old_pending, 0, "no pending run of the old spec survives");
    wait_for("new spec ticks", Duration::from_secs(10), || async {
        pending(app.pool.clone()).await >= 2
    })
    .await;

    assert_eq!(app.delete("/schedules/p").await.0, StatusCode::NO_CONTENT);
    assert_eq!(pending(app.pool.clone()).await, 0, "delete cancels at once");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        pending(app.pool.clone()).await,
        0,
        "and nothing fires afterwards"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_schedule_stops_at_its_end_and_completes() {
    let app = TestApp::spawn_with(fleet_config).await;
    let now = Utc::now();
    let end = (now + TimeDelta::seconds(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    app.create_schedule(json!({"schedule_id": "e", "cron_expr": "* * * * * *", "end_at": end}))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("select max(scheduled_for) from runs where schedule_id = 'e'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        last.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        Some(end.clone())
    );
    let (_, s) = app.get("/schedules/e").await;
    assert_eq!(s["status"], "completed");
    let next_due: Option<DateTime<Utc>> =
        sqlx::query_scalar("select next_due_at from schedules where schedule_id = 'e'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(next_due, None);
    app.stop().await;
}

/// The leader's claim transactions so far with `claimed="none"` or `"some"`, from
/// `/metrics`.
async fn tick_batches(app: &TestApp, claimed: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .filter(|l| {
            l.starts_with("scheduler_tick_batches_total{")
                && l.contains(&format!("claimed=\"{claimed}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A due schedule whose row an API call (here: a transaction that does not end) holds
/// locked cannot be claimed: the leader backs off (20 ms doubling to 1 s) instead of
/// retrying every 20 ms, and claims it as soon as the lock is gone.
#[tokio::test]
async fn the_leader_backs_off_while_every_due_schedule_is_locked() {
    let app = TestApp::spawn_with(fleet_config).await;
    app.create_schedule(json!({"schedule_id": "held", "cron_expr": "* * * * * *"}))
        .await;
    wait_for("the first ticks", Duration::from_secs(10), || async {
        tick_batches(&app, "some").await >= 1.0
    })
    .await;
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from schedules where schedule_id = 'held' for update")
        .execute(&mut *holder)
        .await
        .unwrap();
    // Let the leader use up the ticks it wrote ahead, so the schedule is due and locked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = tick_batches(&app, "none").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let empty = tick_batches(&app, "none").await - before;
    // Retrying every 20 ms would be about 200 empty passes in 4 s; the backoff makes it
    // a handful (at 1 s apart once backed off, plus heartbeats).
    assert!(
        (1.0..=15.0).contains(&empty),
        "{empty} empty claim passes in 4 s while the schedule was locked"
    );
    let claimed = tick_batches(&app, "some").await;
    holder.rollback().await.unwrap();
    wait_for("claimed once unlocked", Duration::from_secs(5), || async {
        tick_batches(&app, "some").await > claimed
    })
    .await;
    app.stop().await;
}

/// The backlog: runs due and not launched yet, and the age of the oldest. With no
/// Executor configured nothing launches, so a run due 30 s ago shows up in the leader's
/// gauges (launch lag, recorded only on success, would show nothing).
#[tokio::test]
async fn the_leader_reports_the_backlog_of_due_unlaunched_runs() {
    let app = TestApp::spawn_with(fleet_config).await;
    let (count, oldest) = cron_scheduler::fleet::backlog::measure(&app.pool)
        .await
        .unwrap();
    assert_eq!((count, oldest), (0, 0.0), "nothing due yet");
    let due = (Utc::now() - TimeDelta::seconds(30)).to_rfc3339();
    let future = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    crate::common::insert_pending_run(&app.pool, "s1", &due).await;
    crate::common::insert_pending_run(&app.pool, "s2", &due).await;
    crate::common::insert_pending_run(&app.pool, "s3", &future).await;
    let (count, oldest) = cron_scheduler::fleet::backlog::measure(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 2, "the future run is not due");
    assert!((29.0..120.0).contains(&oldest), "{oldest}");
    wait_for(
        "the gauges on /metrics",
        Duration::from_secs(20),
        || async {
            let text = app.metrics().await;
            let value = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(name) && !l.starts_with('#'))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            value("scheduler_backlog_runs") == 2.0
                && value("scheduler_backlog_oldest_seconds") >= 29.0
        },
    )
    .await;
    app.stop().await;
}
