//! The binary with no database configured: it creates a local cluster, serves on the
//! configured port (on loopback only: authentication is off), a second start while it runs
//! leaves it alone, and a later start reuses the same data.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};
use reqwest::StatusCode;
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service as a child process; killed if the test ends without stopping it.
struct Service(Option<Child>, std::path::PathBuf);

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "service log:\n{}",
                std::fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

/// The bare binary: only its folder and port are set (no host, no database, no tokens).
fn start(data_dir: &std::path::Path, port: u16) -> Service {
    let log_path = data_dir.join(format!("service-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SCHEDULER_DATA_DIR", data_dir)
        .env("SCHEDULER_PORT", port.to_string())
        .stdin(Stdio::null())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start cron-scheduler");
    Service(Some(child), log_path)
}

async fn wait_ready(http: &reqwest::Client, port: u16, service: &mut Service) {
    let child = service.0.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cron-scheduler exited early: {status}");
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
        {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The addresses the kernel has a listening TCP socket on for `port` (`/proc/net/tcp` and
/// `tcp6`), as hex `address` fields: `0100007F` is 127.0.0.1, `00000000` any address.
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((addr, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                found.push(addr.to_owned());
            }
        }
    }
    found
}

fn log_of(service: &Service) -> String {
    std::fs::read_to_string(&service.1).unwrap_or_default()
}

fn terminate(mut service: Service) -> String {
    let mut child = service.0.take().unwrap();
    signal::kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            return std::fs::read_to_string(&service.1).unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_with_no_configuration_uses_and_reuses_an_embedded_database() {
    let dir = tempfile::Builder::new()
        .prefix("cron-scheduler-embedded-")
        .tempdir_in("/tmp")
        .unwrap();
    let http = reqwest::Client::new();
    let port = free_port();

    let mut first = start(dir.path(), port);
    wait_ready(&http, port, &mut first).await;
    assert_eq!(
        listening_addresses(port),
        vec!["0100007F".to_owned()],
        "with authentication off the bare binary listens on 127.0.0.1 only"
    );
    assert!(
        log_of(&first).contains("listens on this machine only"),
        "{}",
        log_of(&first)
    );
    assert!(log_of(&first).contains("created a new embedded PostgreSQL cluster"));
    // Every counter an alert reads exists at 0 from start-up, with the cluster's name: a
    // series that first appears holding N is invisible to `increase()`.
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (name, label) in [
        ("scheduler_runs_missed_total", "reason=\"catchup_none\""),
        ("scheduler_runs_missed_total", "reason=\"uncounted\""),
        (
            "scheduler_runs_failed_launch_total",
            "reason=\"attempts_exhausted\"",
        ),
        (
            "scheduler_runs_failed_launch_total",
            "reason=\"workflow_not_found\"",
        ),
        ("scheduler_executor_responses_total", "class=\"5xx\""),
        ("scheduler_runs_completed_total", "status=\"timed_out\""),
        (
            "scheduler_runs_skipped_overlap_total",
            "scheduler_cluster=\"default\"",
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!("{name}{{"))
                && l.contains(label)
                && l.contains("scheduler_cluster=\"default\"")
                && l.ends_with(" 0")),
            "{name} {{{label}}} 0 not exported at start-up:\n{metrics}"
        );
    }
    let created = http
        .post(format!("http://127.0.0.1:{port}/schedules/upsert"))
        .json(&json!({"schedule_id": "persisted", "workflow_id": "wf", "version": 1, "user_id": "u", "cron_expr": "0 0 * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: serde_json::Value = created.json().await.unwrap();
    assert_eq!(body["next_fire_times"].as_array().unwrap().len(), 5);

    // A second start in the same folder, while the first runs: it exits at once, naming
    // the folder and the first process, and the first keeps serving from its database.
    let intruder_port = free_port();
    let mut intruder = start(dir.path(), intruder_port);
    let mut child = intruder.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the second start did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let said = log_of(&intruder);
    assert!(!status.success(), "the second start fails: {said}");
    let first_pid = first.0.as_ref().unwrap().id();
    assert!(
        said.contains("is in use by another process")
            && said.contains(&format!("pid {first_pid}"))
            && said.contains(&dir.path().display().to_string())
            && said.contains("SCHEDULER_DATA_DIR"),
        "{said}"
    );
    for _ in 0..3 {
        let still = http
            .get(format!("http://127.0.0.1:{port}/schedules/persisted"))
            .send()
            .await
            .unwrap();
        assert_eq!(still.status(), StatusCode::OK, "the first keeps serving");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let said = terminate(first);
    assert!(said.contains("embedded PostgreSQL stopped"), "{said}");
    assert!(
        !said.contains("MeterProvider"),
        "no SDK chatter at the default level: {said}"
    );
    assert!(dir.path().join("postgres/pgdata/PG_VERSION").exists());
    assert!(
        !dir.path().join("postgres/pgdata/postmaster.pid").exists(),
        "SIGTERM stops the embedded PostgreSQL too"
    );

    let port = free_port();
    let mut second = start(dir.path(), port);
    wait_ready(&http, port, &mut second).await;
    assert!(log_of(&second).contains("reusing the embedded PostgreSQL cluster"));
    let again = http
        .get(format!("http://127.0.0.1:{port}/schedules/persisted"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the second start reuses the data"
    );
    terminate(second);
}

#[tokio::test]
async fn a_killed_service_leaves_no_cluster_running() {
    let dir = tempfile::Builder::new()
        .prefix("cron-scheduler-embedded-")
        .tempdir_in("/tmp")
        .unwrap();
    let http = reqwest::Client::new();
    let port = free_port();
    let mut child = start(dir.path(), port);
    wait_ready(&http, port, &mut child).await;
    let mut child = child.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The watchdog notices and stops the server.
    let pidfile = dir.path().join("postgres/pgdata/postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pidfile.exists() {
        assert!(
            Instant::now() < deadline,
            "the watchdog did not stop PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a new start works on the same folder.
    let port = free_port();
    let mut again = start(dir.path(), port);
    wait_ready(&http, port, &mut again).await;
    terminate(again);
}

/// A misfire grace shorter than a failover (lease + lookahead) would turn every failover
/// into missed ticks: the binary refuses to start, exit code 2, naming the variables.
#[test]
fn a_misfire_grace_shorter_than_a_failover_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SCHEDULER_LEADER_LEASE_MS", "20000")
        .env("SCHEDULER_MISFIRE_GRACE_MS", "5000")
        .env("SCHEDULER_DATA_DIR", "/nonexistent/never-created")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for name in [
        "SCHEDULER_MISFIRE_GRACE_MS",
        "SCHEDULER_LEADER_LEASE_MS",
        "SCHEDULER_LOOKAHEAD_MS",
        "22500",
    ] {
        assert!(said.contains(name), "{said}");
    }
    assert!(
        !std::path::Path::new("/nonexistent/never-created").exists(),
        "nothing started"
    );
}

/// One process owns a cluster folder at a time, and a drill that crashes the database and
/// brings it back in the same process gives the folder up first (`crash`): a second
/// `start` while the first value lives is refused, after `crash` it comes back with the
/// same data.
#[tokio::test]
async fn a_crashed_cluster_starts_again_in_the_same_folder_and_a_second_owner_is_refused() {
    use cron_scheduler::db::embedded::{EmbeddedOptions, EmbeddedPostgres, OnExit};
    let dir = std::env::temp_dir().join(format!(
        "cron-scheduler-crash-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let port = free_port();
    let opts = EmbeddedOptions {
        dir,
        bin_dir: None,
        // Durable: a crash keeps what was committed (`ephemeral` turns synchronous
        // commits off).
        ephemeral: false,
        on_exit: OnExit::StopAndRemove,
        max_connections: 20,
        port: Some(port),
    };
    let o = opts.clone();
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&o))
        .await
        .unwrap()
        .unwrap();
    let url = pg.url("postgres");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql("create table kept (v int); insert into kept values (7)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let o = opts.clone();
    let second = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&o))
        .await
        .unwrap()
        .expect_err("the folder has an owner");
    assert!(
        second.to_string().contains("is in use by another process"),
        "{second}"
    );

    tokio::task::spawn_blocking(move || pg.crash())
        .await
        .unwrap()
        .unwrap();
    let o = opts.clone();
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&o))
        .await
        .unwrap()
        .unwrap();
    assert!(pg.reused());
    let pool = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    let v: i32 = sqlx::query_scalar("select v from kept")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(v, 7, "the data survived the crash");
    pool.close().await;
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
}
