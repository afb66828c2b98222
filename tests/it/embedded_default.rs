//! The binary with no database configured: it creates a local cluster, serves on the
//! configured port, and a second start reuses the same data.

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

fn start(data_dir: &std::path::Path, port: u16) -> Service {
    let log_path = data_dir.join(format!("service-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SCHEDULER_DATA_DIR", data_dir)
        .env("SCHEDULER_PORT", port.to_string())
        .env("SCHEDULER_HOST", "127.0.0.1")
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

fn terminate(mut service: Service) {
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
            return;
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
    let created = http
        .post(format!("http://127.0.0.1:{port}/schedules/upsert"))
        .json(&json!({"schedule_id": "persisted", "workflow_id": "wf", "version": 1, "user_id": "u", "cron_expr": "0 0 * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: serde_json::Value = created.json().await.unwrap();
    assert_eq!(body["next_fire_times"].as_array().unwrap().len(), 5);
    terminate(first);
    assert!(dir.path().join("postgres/pgdata/PG_VERSION").exists());
    assert!(
        !dir.path().join("postgres/pgdata/postmaster.pid").exists(),
        "SIGTERM stops the embedded PostgreSQL too"
    );

    let port = free_port();
    let mut second = start(dir.path(), port);
    wait_ready(&http, port, &mut second).await;
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
