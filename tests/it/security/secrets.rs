//! Secrets never leak; the binary refuses to serve an open API by accident.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cron_scheduler::mock_executor::Behaviour;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    common::{fresh_database, wait_for},
    launcher::Mock,
};

/// The binary as a child process with its output in a file.
struct Child {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Child {
    fn start(dir: &std::path::Path, name: &str, env: &[(&str, String)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SCHEDULER_HOST", "127.0.0.1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start cron-scheduler");
        Self { child, log }
    }

    /// SIGTERM, wait, and the whole output.
    fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn secrets_never_appear_in_logs_errors_status_or_metrics() {
    let (db_url, pool) = fresh_database().await;
    let db_password = url::Url::parse(&db_url)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(
        db_password.len() >= 8,
        "the test cluster has a real password"
    );
    let outbound = "OUTBOUND-executor-secret-5b1e9c";
    let admin = "ADMIN-api-secret-77aa01";
    let executor = "EXECUTOR-api-secret-2c9d44";
    let jwt_secret = "JWT-hs256-secret-0123456789abcdef-9f0e";
    let secrets = [db_password.as_str(), outbound, admin, executor, jwt_secret];

    let port = free_port();
    let mock = Mock::start(Behaviour {
        callback_url: Some(format!("http://127.0.0.1:{port}/").parse().unwrap()),
        callback_after_ms: 100,
        callback_token: Some(executor.into()),
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let service = Child::start(
        dir.path(),
        "service",
        &[
            ("SCHEDULER_PORT", port.to_string()),
            ("SCHEDULER_DATABASE_URL", db_url.clone()),
            ("SCHEDULER_EXECUTOR_URL", mock.url.to_string()),
            ("SCHEDULER_EXECUTOR_TOKEN", outbound.into()),
            (
                "SCHEDULER_API_TOKENS",
                format!("admin:{admin},executor:{executor}"),
            ),
            ("SCHEDULER_JWT_HS256_SECRET", jwt_secret.into()),
            ("SCHEDULER_LOOKAHEAD_MS", "1000".into()),
            ("SCHEDULER_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "debug".into()),
        ],
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the service to be ready", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/health/ready");
        async move {
            http.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    let mut seen = String::new();
    let mut record = async |method: Method, path: &str, token: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        seen.push_str(&format!("{:?}\n", resp.headers()));
        let status = resp.status();
        seen.push_str(&resp.text().await.unwrap());
        status
    };
    assert!(
        record(
            Method::PUT,
            "/workflows/wf/versions/1",
            admin,
            Some(json!({"tasks": []}))
        )
        .await
        .is_success()
    );
    let every_second = json!({"schedule_id": "s", "workflow_id": "wf", "version": 1,
        "user_id": "alice", "cron_expr": "* * * * * *"});
    assert!(
        record(Method::POST, "/schedules/upsert", admin, Some(every_second))
            .await
            .is_success()
    );
    // Runs go to the Executor (with the outbound token) and come back completed (with the
    // executor's API token).
    wait_for(
        "a run launched and reported",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("select count(*) from runs where status = 'succeeded'")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    > 0
            }
        },
    )
    .await;
    assert!(mock.mock.received().iter().all(|r| r.authorization));
    for path in [
        "/worker/status",
        "/metrics",
        "/openapi.json",
        "/schedules/s/runs",
    ] {
        assert!(
            record(Method::GET, path, admin, None).await.is_success(),
            "{path}"
        );
    }
    // Errors, including credentials sent by mistake where they do not belong.
    assert_eq!(
        record(Method::GET, "/schedules", outbound, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        record(Method::GET, "/schedules", &db_password, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        record(Method::GET, "/worker/status", executor, None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        record(Method::GET, &format!("/schedules/{admin}"), admin, None).await,
        StatusCode::NOT_FOUND
    );
    let log = service.stop();
    assert!(
        log.contains("cron-scheduler serving"),
        "the log was captured:\n{log}"
    );
    assert!(log.lines().count() > 20, "debug logging was on");
    for secret in secrets {
        assert!(!log.contains(secret), "a secret is in the log");
        if secret != admin {
            assert!(!seen.contains(secret), "a secret is in a response");
        }
    }

    // An unreachable database: the retry warnings name no password.
    let unreachable = Child::start(
        dir.path(),
        "unreachable",
        &[
            ("SCHEDULER_PORT", free_port().to_string()),
            (
                "SCHEDULER_DATABASE_URL",
                format!("postgres://u:{db_password}@127.0.0.1:1/x"),
            ),
            ("SCHEDULER_API_TOKENS", format!("admin:{admin}")),
            ("RUST_LOG", "debug".into()),
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = unreachable.stop();
    assert!(log.contains("retrying"), "the retries were logged:\n{log}");
    assert!(!log.contains(&db_password), "the password is in the log");
}

#[tokio::test]
async fn a_database_without_credentials_refuses_to_start_unless_auth_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://u:pw-1f2e3d@127.0.0.1:1/x".to_owned();
    let mut child = Child::start(
        dir.path(),
        "open",
        &[("SCHEDULER_DATABASE_URL", url.clone())],
    );
    let status = child.child.wait().unwrap();
    let log = child.stop();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("SCHEDULER_API_TOKENS") && log.contains("SCHEDULER_AUTH=off"),
        "{log}"
    );
    assert!(!log.contains("pw-1f2e3d"), "{log}");

    // Explicitly off: it starts (and keeps retrying the unreachable database).
    let off = Child::start(
        dir.path(),
        "off",
        &[
            ("SCHEDULER_DATABASE_URL", url),
            ("SCHEDULER_AUTH", "off".into()),
            ("SCHEDULER_PORT", free_port().to_string()),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = off.stop();
    assert!(log.contains("AUTHENTICATION IS OFF"), "{log}");
}
