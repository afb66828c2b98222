//! Failover drills with real processes: three `cron-scheduler serve` replicas on one
//! database; the leader is killed (SIGKILL), frozen (SIGSTOP, later SIGCONT) and shut down
//! (SIGTERM) in turn. Afterwards every tick of every schedule has exactly one run row and
//! none is missing, a frozen leader wrote nothing after it was replaced, and each takeover
//! time is printed.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::common::{assert_every_second_once, fresh_database, leader, wait_for};

const LEASE_MS: u64 = 2000;

/// One `cron-scheduler serve` process on a database (also used by `otlp.rs`); killed,
/// with its log printed, if the test fails while it runs.
pub struct Node {
    pub id: String,
    pub port: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Node {
    pub fn start(db_url: &str, id: &str, dir: &std::path::Path) -> Self {
        Self::start_with(db_url, id, dir, &[])
    }

    pub fn start_with(
        db_url: &str,
        id: &str,
        dir: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("{id}-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SCHEDULER_DATABASE_URL", db_url)
            // A database URL with no API token refuses to start unless auth is off.
            .env("SCHEDULER_AUTH", "off")
            .env("SCHEDULER_NODE_ID", id)
            .env("SCHEDULER_HOST", "127.0.0.1")
            .env("SCHEDULER_PORT", port.to_string())
            .env("SCHEDULER_LEADER_LEASE_MS", LEASE_MS.to_string())
            .env("SCHEDULER_LOOKAHEAD_MS", "1000")
            .env("SCHEDULER_MAX_CATCHUP_RUNS", "1000")
            .env("SCHEDULER_DEFAULT_CATCHUP_POLICY", "fire_immediately")
            .env("SCHEDULER_WORKER_AUTOSTART", "true")
            .env("RUST_LOG", "info")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start a replica");
        Node {
            id: id.to_owned(),
            port,
            child: Some(child),
            log,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.as_ref().unwrap().id()).unwrap())
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    pub async fn ready(&self, http: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/health/ready", self.port);
        wait_for(
            &format!("{} ready", self.id),
            Duration::from_secs(30),
            || async {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            },
        )
        .await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(
                Pid::from_raw(i32::try_from(c.id()).unwrap()),
                Signal::SIGCONT,
            );
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- log of {} ---\n{}",
                    self.id,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
    }
}

async fn db_now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("select now()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Freeze,
    Terminate,
}

#[tokio::test]
async fn leader_kill_freeze_and_shutdown_leave_one_run_per_tick() {
    let (url, pool) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&url, &format!("n{i}"), dir.path()))
        .collect();
    for n in &nodes {
        n.ready(&http).await;
    }
    for i in 0..5 {
        let r = http
            .post(format!("http://127.0.0.1:{}/schedules/upsert", nodes[i % 3].port))
            .json(&json!({"schedule_id": format!("f{i}"), "workflow_id": "wf", "version": 1, "user_id": "u", "cron_expr": "* * * * * *"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    wait_for("a leader", Duration::from_secs(10), || async {
        leader(&pool).await.0.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut report = Vec::new();
    for fault in [
        Fault::Kill,
        Fault::Freeze,
        Fault::Terminate,
        Fault::Kill,
        Fault::Freeze,
    ] {
        let (Some(old), old_epoch) = leader(&pool).await else {
            panic!("no leader")
        };
        let idx = nodes
            .iter()
            .position(|n| n.id == old)
            .expect("leader is one of ours");
        let started = Instant::now();
        match fault {
            Fault::Kill => nodes[idx].signal(Signal::SIGKILL),
            Fault::Freeze => nodes[idx].signal(Signal::SIGSTOP),
            Fault::Terminate => nodes[idx].signal(Signal::SIGTERM),
        }
        wait_for("a new leader", Duration::from_secs(20), || async {
            let (node, epoch) = leader(&pool).await;
            epoch > old_epoch && node.is_some_and(|n| n != old)
        })
        .await;
        let took = started.elapsed();
        let replaced_at = db_now(&pool).await;
        report.push((fault, old.clone(), took));
        match fault {
            Fault::Kill | Fault::Terminate => {
                nodes[idx].reap();
                let id = nodes[idx].id.clone();
                nodes[idx] = Node::start(&url, &id, dir.path());
                nodes[idx].ready(&http).await;
            }
            Fault::Freeze => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                nodes[idx].signal(Signal::SIGCONT);
                // The resumed node must notice it lost the lead and write nothing more.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let late: i64 = sqlx::query_scalar(
                    "select count(*) from runs where leader_epoch = $1 and created_at > $2",
                )
                .bind(old_epoch)
                .bind(replaced_at)
                .fetch_one(&pool)
                .await
                .unwrap();
                assert_eq!(
                    late, 0,
                    "the frozen leader wrote runs after it was replaced"
                );
                nodes[idx].ready(&http).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let until = db_now(&pool).await - chrono::TimeDelta::seconds(1);
    for n in &nodes {
        n.signal(Signal::SIGTERM);
    }
    for n in &mut nodes {
        n.reap();
    }

    let mut ticks = 0;
    for i in 0..5 {
        ticks += assert_every_second_once(&pool, &format!("f{i}"), until).await;
    }
    let missed: i64 = sqlx::query_scalar("select count(*) from runs where status = 'missed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        missed, 0,
        "fire_immediately with a high bound misses nothing"
    );
    let catchup: i64 = sqlx::query_scalar("select count(*) from runs where trigger = 'catchup'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let epochs: i64 = sqlx::query_scalar("select count(distinct leader_epoch) from runs")
        .fetch_one(&pool)
        .await
        .unwrap();

    println!(
        "failover drill: {ticks} ticks checked over 5 schedules, {epochs} leader epochs wrote runs, {catchup} caught up"
    );
    println!("{:<10} {:<6} {:>12}", "fault", "leader", "takeover");
    for (fault, node, took) in &report {
        println!(
            "{:<10} {:<6} {:>9} ms",
            format!("{fault:?}"),
            node,
            took.as_millis()
        );
    }
    for (fault, _, took) in &report {
        // Generous bounds that still tell the mechanisms apart: a kill or a shutdown is
        // seen at once (no lease wait); a freeze costs the lease.
        let bound = match fault {
            Fault::Kill | Fault::Terminate => Duration::from_millis(LEASE_MS),
            Fault::Freeze => Duration::from_millis(LEASE_MS * 4),
        };
        assert!(*took < bound, "{fault:?} takeover took {took:?}");
    }
}

#[tokio::test]
async fn a_replica_killed_mid_launch_has_its_runs_reclaimed_and_delivered() {
    use cron_scheduler::mock_executor::Behaviour;

    use crate::{
        common::TestApp,
        launcher::{Mock, launch_config},
    };

    // A slow Executor: the first replica is killed while its requests hang.
    let mock = Mock::start(Behaviour {
        delay_ms: 4000,
        ..Behaviour::default()
    })
    .await;
    let (url, pool) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let executor = mock.url.to_string();
    let mut a = Node::start_with(
        &url,
        "doomed",
        dir.path(),
        &[
            ("SCHEDULER_EXECUTOR_URL", &executor),
            ("SCHEDULER_EXECUTOR_TIMEOUT_MS", "1000"),
        ],
    );
    a.ready(&http).await;
    let base = format!("http://127.0.0.1:{}", a.port);
    http.put(format!("{base}/workflows/wf/versions/1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    for i in 0..4 {
        let r = http
            .post(format!(
                "{base}/run-launcher/start?workflow_id=wf&version=1&user_id=u&idempotency_key=k{i}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    wait_for(
        "claimed by the doomed replica",
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from runs where status = 'launching' and launched_by = 'doomed'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 4
        },
    )
    .await;
    a.signal(Signal::SIGKILL);
    a.reap();

    let mut b = mock.mock.behaviour();
    b.delay_ms = 0;
    mock.mock.set_behaviour(b);
    let survivor = TestApp::spawn_on(url, pool.clone(), |c| launch_config(c, &mock.url)).await;
    wait_for(
        "reclaimed and delivered",
        Duration::from_secs(30),
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from runs where status = 'running' and launched_by = 'test-node'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 4
        },
    )
    .await;
    let attempts: Vec<i32> = sqlx::query_scalar("select attempt from runs order by client_key")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        attempts.iter().all(|a| *a >= 2),
        "reclaimed runs are new attempts: {attempts:?}"
    );
    let accepted: Vec<String> = mock
        .mock
        .received()
        .into_iter()
        .filter(|r| r.status == 202 || r.status == 409)
        .map(|r| r.idempotency_key)
        .collect();
    let keys: Vec<(String, String)> =
        sqlx::query_as("select client_key, idempotency_key from runs order by client_key")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys.len(), 4);
    for (client_key, key) in &keys {
        assert!(
            accepted.contains(key),
            "{client_key} delivered under its run's own key {key}: {accepted:?}"
        );
    }
    survivor.stop().await;
}

#[tokio::test]
async fn an_armed_run_of_a_replica_killed_before_sending_is_reclaimed_and_sent_once() {
    use cron_scheduler::mock_executor::Behaviour;

    use crate::{
        common::TestApp,
        launcher::{Mock, launch_config},
    };

    let mock = Mock::start(Behaviour::default()).await;
    let (url, pool) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let executor = mock.url.to_string();
    // Claims runs up to 8 s before they are due; its leases run 6 s past the due time.
    let mut a = Node::start_with(
        &url,
        "doomed",
        dir.path(),
        &[
            ("SCHEDULER_EXECUTOR_URL", &executor),
            ("SCHEDULER_EXECUTOR_TIMEOUT_MS", "1000"),
            ("SCHEDULER_ARM_WINDOW_MS", "8000"),
        ],
    );
    a.ready(&http).await;
    sqlx::query("insert into workflow_versions (workflow_id, version, dag) values ('wf', 1, '{}')")
        .execute(&pool)
        .await
        .unwrap();
    // A tick due in 5 s, as the leader writes it.
    let run_id = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, scheduled_for, fire_at, status, trigger, workflow_id, \
           version, user_id, idempotency_key) \
         values ($1, now() + interval '5 seconds', now() + interval '5 seconds', 'pending', \
           'manual', 'wf', 1, 'u', $1::text)",
    )
    .bind(run_id)
    .execute(&pool)
    .await
    .unwrap();
    wait_for(
        "armed by the doomed replica",
        Duration::from_secs(5),
        || async {
            sqlx::query_scalar::<_, bool>(
                "select status = 'launching' and launched_by = 'doomed' and fire_at > now() \
             from runs where run_id = $1",
            )
            .bind(run_id)
            .fetch_one(&pool)
            .await
            .unwrap()
        },
    )
    .await;
    a.signal(Signal::SIGKILL);
    a.reap();

    let survivor = TestApp::spawn_on(url, pool.clone(), |c| launch_config(c, &mock.url)).await;
    wait_for(
        "reclaimed and delivered",
        Duration::from_secs(30),
        || async {
            sqlx::query_scalar::<_, bool>("select status = 'running' from runs where run_id = $1")
                .bind(run_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        },
    )
    .await;
    let (attempt, by, fire_at): (i32, String, DateTime<Utc>) =
        sqlx::query_as("select attempt, launched_by, fire_at from runs where run_id = $1")
            .bind(run_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((attempt, by.as_str()), (2, "test-node"), "a reclaim");
    let received = mock.mock.received();
    assert_eq!(received.len(), 1, "sent once: {received:?}");
    assert_eq!(received[0].run_id, run_id);
    assert!(received[0].received_at >= fire_at, "not before its fire_at");
    survivor.stop().await;
}
