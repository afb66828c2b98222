//! Test harness: one throwaway PostgreSQL cluster per test process (made with the
//! machine's binaries, removed by its watchdog when the process ends), a fresh database
//! per test, and the real router served on a real port.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
    time::Instant,
};

use chrono::{DateTime, TimeDelta, Utc};
use cron_scheduler::{
    app,
    config::Config,
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres, OnExit},
    },
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio_util::sync::CancellationToken;

static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();

/// For a test that installs process-wide state (the global tracing subscriber): under a
/// harness that runs many tests in one process (plain `cargo test`), runs `test` (its full
/// path, `module::name`) again alone in a child process of this test binary, checks that
/// exactly that test ran and passed there, and returns `true`: the caller then returns.
/// Under nextest (one process per test) and in the child it returns `false`: run the body.
pub fn rerun_in_own_process(test: &str) -> bool {
    const CHILD: &str = "CRON_SCHEDULER_TEST_ALONE";
    let per_test = std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test");
    if per_test || std::env::var(CHILD).is_ok_and(|t| t == test) {
        return false;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its own process");
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its own process (a wrong name?)"
    );
    true
}

/// Starts a throwaway cluster in a fresh temporary folder.
pub fn start_cluster() -> EmbeddedPostgres {
    let dir = std::env::temp_dir().join(format!(
        "cron-scheduler-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    EmbeddedPostgres::start(&EmbeddedOptions {
        dir,
        bin_dir: None,
        ephemeral: true,
        on_exit: OnExit::StopAndRemove,
        max_connections: 300,
        port: None,
    })
    .expect("start a test PostgreSQL cluster")
}

/// This process's shared cluster.
pub fn cluster() -> &'static EmbeddedPostgres {
    CLUSTER.get_or_init(start_cluster)
}

/// A new, migrated database on `pg`: its URL and a small pool for assertions.
pub async fn fresh_database_on(pg: &EmbeddedPostgres) -> (String, PgPool) {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    db::create_database(&pg.url("postgres"), &name)
        .await
        .expect("create test database");
    let url = pg.url(&name);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("connect to test database");
    db::migrate(&pool).await.expect("migrate test database");
    (url, pool)
}

pub async fn fresh_database() -> (String, PgPool) {
    fresh_database_on(cluster()).await
}

/// Configuration as a test replica uses it: defaults, a fixed node id.
pub fn test_config() -> Config {
    let mut cfg = Config::from_lookup(|_| None).expect("default configuration");
    cfg.node_id = "test-node".into();
    // Tests of the API alone must not see the leader write runs; fleet tests switch it on.
    cfg.worker_autostart = false;
    cfg.db_acquire_timeout = Duration::from_secs(2);
    // Tests of behaviour, not of security: auth and rate limits off explicitly
    // (`security.rs` switches them on).
    cfg.auth = cron_scheduler::api::auth::AuthSwitch::Off;
    cfg.rate_limit_per_sec = 0;
    cfg
}

/// One replica serving the real router on 127.0.0.1:<random>.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// A separate pool for the test's own queries.
    pub pool: PgPool,
    node: std::sync::Arc<cron_scheduler::fleet::leader::NodeState>,
    shutdown: CancellationToken,
    task: Option<app::Replica>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        let (db_url, pool) = fresh_database().await;
        Self::spawn_on(db_url, pool, configure).await
    }

    pub async fn spawn_on(
        db_url: String,
        pool: PgPool,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut cfg = test_config();
        configure(&mut cfg);
        let app_pool = db::connect_lazy(&db_url, &app::pool_settings(&cfg)).expect("app pool");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let replica = app::Replica::start(Arc::new(cfg), app_pool, listener, shutdown.clone());
        TestApp {
            addr,
            http: reqwest::Client::new(),
            pool,
            node: replica.node.clone(),
            shutdown,
            task: Some(replica),
        }
    }

    /// Whether this replica currently leads.
    pub fn is_leader(&self) -> bool {
        self.node.is_leader()
    }

    /// How many times this replica has won an election.
    pub fn elections(&self) -> u64 {
        self.node.elections()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `body` as-is (it need not be valid JSON) and returns status and JSON body
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send_raw(Method::POST, path, Some(body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send_raw(Method::PUT, path, Some(body.to_string()))
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send_raw(Method::GET, path, None).await
    }

    /// The replica's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send_raw(Method::DELETE, path, None).await
    }

    /// Creates a schedule from `overrides` on top of a valid hourly one; asserts success.
    pub async fn create_schedule(&self, overrides: Value) -> Value {
        let mut body = serde_json::json!({
            "workflow_id": "wf",
            "version": 1,
            "user_id": "alice",
            "cron_expr": "0 * * * *",
        });
        merge(&mut body, overrides);
        let (status, schedule) = self.post("/schedules/upsert", body).await;
        assert!(status.is_success(), "create failed: {status} {schedule}");
        schedule
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.wait().await.expect("replica stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Shallow merge of JSON objects.
/// The `schedule_id`s of a `GET /schedules` page, in its order.
pub fn schedule_ids(page: &Value) -> Vec<String> {
    page["schedules"]
        .as_array()
        .expect("a page of schedules")
        .iter()
        .map(|s| s["schedule_id"].as_str().expect("schedule_id").to_owned())
        .collect()
}

pub fn merge(base: &mut Value, overrides: Value) {
    if let (Some(b), Value::Object(o)) = (base.as_object_mut(), overrides) {
        for (k, v) in o {
            b.insert(k, v);
        }
    }
}

/// Inserts a `pending` run for `schedule_id` at `scheduled_for` directly, as the leader
/// would, and returns its id.
pub async fn insert_pending_run(
    pool: &PgPool,
    schedule_id: &str,
    scheduled_for: &str,
) -> uuid::Uuid {
    let run_id = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key) \
         values ($1, $2, $3::timestamptz, $3::timestamptz, 'pending', 'schedule', 'wf', 1, 'alice', $1::text)",
    )
    .bind(run_id)
    .bind(schedule_id)
    .bind(scheduled_for)
    .execute(pool)
    .await
    .expect("insert pending run");
    run_id
}

pub async fn run_status(pool: &PgPool, run_id: uuid::Uuid) -> (String, Option<String>) {
    sqlx::query_as("select status, reason from runs where run_id = $1")
        .bind(run_id)
        .fetch_one(pool)
        .await
        .expect("run row")
}

/// Polls `check` every 20 ms until it holds; fails the test after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every tick of `schedule_id` from its first run to `until`: exactly one row each, and no
/// second missing (the schedules here fire every second).
pub async fn assert_every_second_once(
    pool: &PgPool,
    schedule_id: &str,
    until: DateTime<Utc>,
) -> usize {
    let ticks: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "select scheduled_for from runs where schedule_id = $1 and scheduled_for <= $2 \
         and status <> 'cancelled' order by scheduled_for",
    )
    .bind(schedule_id)
    .bind(until)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!ticks.is_empty(), "{schedule_id} has no runs");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TimeDelta::seconds(1),
            "{schedule_id}: gap or double between {} and {}",
            pair[0],
            pair[1]
        );
    }
    let last = *ticks.last().unwrap();
    assert!(
        until - last < TimeDelta::seconds(1),
        "{schedule_id}: ticks stop at {last}, expected up to {until}"
    );
    ticks.len()
}

/// The cluster's leader and epoch, per the database (no leader yet: `(None, 0)`).
pub async fn leader(pool: &PgPool) -> (Option<String>, i64) {
    sqlx::query_as(
        "select leader_node, leader_epoch from fleet_state where cluster_name = 'default'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
    .unwrap_or((None, 0))
}

/// Every schedule, run and workflow version, as comparable text. (`fleet_state` is not
/// in it: the leader writes it on its own; the worker switch is checked separately.)
pub async fn snapshot(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select 's:' || row_to_json(s)::text from schedules s \
         union all select 'r:' || row_to_json(r)::text from runs r \
         union all select 'w:' || row_to_json(w)::text from workflow_versions w \
         order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("snapshot")
}
