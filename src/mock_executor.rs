//! `cron-scheduler mock-executor`: a small Executor stand-in for development, the
//! docker-compose stack, tests and benchmarks.
//!
//! It accepts `POST /runs` like a real Executor, records every request (run id,
//! `Idempotency-Key`, attempt, `traceparent`, receive time), answers a repeated key with
//! 409 (as a deduplicating Executor would), and can be told to be slow, fail with a
//! status (always or for a fraction of requests, with an optional `Retry-After`), and call
//! back completion (`POST {callback}/runs/{id}/complete`) after a delay. With several
//! callback URLs (`callback_urls`, one per replica) completions go to them in turn, as an
//! Executor behind a load balancer would spread them; a completion the scheduler does not
//! take (connection error, 429, 5xx) is retried a few times, and at most
//! [`CALLBACK_CONCURRENCY`] completions are in flight, so a burst of 100,000 accepted
//! launches does not open 100,000 connections.
//!
//! | Endpoint | |
//! |---|---|
//! | `POST /runs` | receive a launch |
//! | `GET /stats` | counts: requests, accepted, unique runs, duplicate deliveries, failures |
//! | `GET /received?run_id=` | what was received (compact records, newest last) |
//! | `GET /behaviour`, `PUT /behaviour` | read or change how it answers |
//! | `POST /reset` | forget everything received |
//! | `GET /health` | 200 |

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

/// How the mock answers. Every field can be changed at run time with `PUT /behaviour`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Wait this long before answering.
    pub delay_ms: u64,
    /// Answer with this status instead of accepting...
    pub fail_status: Option<u16>,
    /// ...for this fraction of requests (0.0..=1.0; with `fail_status` set and this 0, all).
    pub fail_fraction: f64,
    /// `Retry-After` (seconds) sent with failures.
    pub retry_after_secs: Option<u64>,
    /// Base URL of the scheduler to report completions to; none: no callback.
    pub callback_url: Option<Url>,
    /// Base URLs of several replicas, used in turn (round-robin); when not empty, used
    /// instead of `callback_url`.
    pub callback_urls: Vec<Url>,
    /// Delay before the completion report.
    pub callback_after_ms: u64,
    /// `succeeded` (default) or `failed`.
    pub callback_status: Option<String>,
    /// Bearer token for the completion report.
    pub callback_token: Option<String>,
}

/// One received request, compact.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub run_id: Uuid,
    pub idempotency_key: String,
    pub attempt: i64,
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub traceparent: Option<String>,
    pub authorization: bool,
    /// The answer given.
    pub status: u16,
    pub workflow_id: Option<String>,
    /// [`dag_digest`] of the DAG the request carried (`None` without one).
    pub dag_digest: Option<String>,
}

/// A short fingerprint of a DAG document: the first 16 hex digits of the SHA-256 of its
/// compact JSON. Tests compare it with the DAG they stored.
pub fn dag_digest(dag: &serde_json::Value) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(dag.to_string().as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub accepted: u64,
    pub unique_runs: u64,
    /// Requests for a run already accepted once (deduplicated with 409).
    pub duplicate_deliveries: u64,
    pub failed: u64,
    pub bad_requests: u64,
    pub callbacks_sent: u64,
    pub callbacks_failed: u64,
}

#[derive(Debug, Default)]
struct Inner {
    behaviour: Behaviour,
    stats: Stats,
    accepted: HashMap<String, Uuid>,
    seen_runs: HashMap<Uuid, u32>,
    received: Vec<Received>,
    last_body: Option<serde_json::Value>,
    /// Round-robin position in `behaviour.callback_urls`.
    next_callback: usize,
}

impl Inner {
    /// Where the next completion goes: the next of `callback_urls`, else `callback_url`.
    fn next_callback_url(&mut self) -> Option<Url> {
        let urls = &self.behaviour.callback_urls;
        if urls.is_empty() {
            return self.behaviour.callback_url.clone();
        }
        let url = urls[self.next_callback % urls.len()].clone();
        self.next_callback = self.next_callback.wrapping_add(1);
        Some(url)
    }
}

/// Completion reports in flight at most.
pub const CALLBACK_CONCURRENCY: usize = 256;
/// Attempts per completion report (connection error, 429 and 5xx are retried).
const CALLBACK_ATTEMPTS: u32 = 5;

#[derive(Clone, Debug)]
pub struct MockExecutor {
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
    callbacks: Arc<tokio::sync::Semaphore>,
}

impl MockExecutor {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                behaviour,
                ..Inner::default()
            })),
            http: reqwest::Client::new(),
            callbacks: Arc::new(tokio::sync::Semaphore::new(CALLBACK_CONCURRENCY)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Runs `f` over what was received so far without copying it (large lab runs hold
    /// millions of records). The mock is locked meanwhile: keep `f` short.
    pub fn inspect_received<T>(&self, f: impl FnOnce(&[Received]) -> T) -> T {
        f(&self.lock().received)
    }

    /// The last request body received (with its DAG).
    pub fn last_body(&self) -> Option<serde_json::Value> {
        self.lock().last_body.clone()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.lock().behaviour.clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/runs", post(receive))
            .route(
                "/stats",
                get(|State(m): State<MockExecutor>| async move { Json(m.stats()) }),
            )
            .route("/received", get(received))
            .route(
                "/behaviour",
                get(|State(m): State<MockExecutor>| async move { Json(m.behaviour()) })
                    .put(put_behaviour),
            )
            .route("/reset", post(reset))
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        // Without TCP_NODELAY a response written in two segments waits for the client's
        // delayed ACK (40 ms on Linux): the stand-in must not be the slow part of a benchmark.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }

    /// Serves in a background task (tests, the embedded default).
    pub fn spawn(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(e) = self.serve(listener, shutdown).await {
                tracing::error!(error = %e, "mock executor stopped");
            }
        })
    }
}

#[derive(Debug, Deserialize)]
struct LaunchBody {
    run_id: Uuid,
    #[serde(default)]
    schedule_id: Option<String>,
    #[serde(default)]
    scheduled_for: Option<DateTime<Utc>>,
    #[serde(default)]
    attempt: i64,
    #[serde(default)]
    workflow_id: Option<String>,
    #[serde(default)]
    dag: Option<serde_json::Value>,
}

fn random_fraction() -> f64 {
    // 53 random bits as a float in [0, 1).
    (Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

async fn receive(
    State(mock): State<MockExecutor>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let received_at = Utc::now();
    let behaviour = mock.behaviour();
    if behaviour.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let parsed: Result<LaunchBody, _> = serde_json::from_slice(&body);
    let (Ok(launch), Some(key)) = (parsed, header("idempotency-key")) else {
        let mut inner = mock.lock();
        inner.stats.requests += 1;
        inner.stats.bad_requests += 1;
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "a JSON launch body and an Idempotency-Key are required"}))).into_response();
    };
    let digest = launch.dag.as_ref().map(dag_digest);
    let fail = behaviour
        .fail_status
        .filter(|_| behaviour.fail_fraction <= 0.0 || random_fraction() < behaviour.fail_fraction);

    let mut inner = mock.lock();
    inner.stats.requests += 1;
    let status = if let Some(code) = fail {
        inner.stats.failed += 1;
        StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    } else if inner.accepted.contains_key(&key) {
        inner.stats.duplicate_deliveries += 1;
        StatusCode::CONFLICT
    } else {
        inner.stats.accepted += 1;
        inner.accepted.insert(key.clone(), launch.run_id);
        StatusCode::ACCEPTED
    };
    let first_time = *inner
        .seen_runs
        .entry(launch.run_id)
        .and_modify(|n| *n += 1)
        .or_insert(1)
        == 1;
    if first_time {
        inner.stats.unique_runs += 1;
    }
    inner.received.push(Received {
        run_id: launch.run_id,
        idempotency_key: key,
        attempt: launch.attempt,
        schedule_id: launch.schedule_id,
        scheduled_for: launch.scheduled_for,
        received_at,
        traceparent: header("traceparent"),
        authorization: headers.contains_key(header::AUTHORIZATION),
        status: status.as_u16(),
        workflow_id: launch.workflow_id,
        dag_digest: digest,
    });
    inner.last_body = serde_json::from_slice(&body).ok();
    let callback_to = (status == StatusCode::ACCEPTED)
        .then(|| inner.next_callback_url())
        .flatten();
    drop(inner);

    let retry_after = behaviour.retry_after_secs;
    if let Some(base) = callback_to {
        let mock = mock.clone();
        tokio::spawn(async move { callback(mock, base, launch.run_id, &behaviour).await });
    }
    let mut response = (status, Json(serde_json::json!({"run_id": launch.run_id}))).into_response();
    if fail.is_some() {
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
    }
    response
}

async fn callback(mock: MockExecutor, base: Url, run_id: Uuid, behaviour: &Behaviour) {
    tokio::time::sleep(Duration::from_millis(behaviour.callback_after_ms)).await;
    let url = format!(
        "{}/runs/{run_id}/complete",
        base.as_str().trim_end_matches('/')
    );
    let status = behaviour
        .callback_status
        .clone()
        .unwrap_or_else(|| "succeeded".into());
    let mut body = serde_json::json!({"status": status});
    if status == "failed" {
        body["error"] = serde_json::json!("the mock executor was told to fail this run");
    }
    let Ok(_permit) = mock.callbacks.acquire().await else {
        return;
    };
    let mut ok = false;
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let mut req = mock.http.post(&url).json(&body);
        if let Some(token) = &behaviour.callback_token {
            req = req.bearer_auth(token);
        }
        let retry = match req.send().await {
            Ok(r) if r.status().is_success() => {
                ok = true;
                break;
            }
            Ok(r) => r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error(),
            Err(_) => true,
        };
        if !retry || attempt == CALLBACK_ATTEMPTS {
            break;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    let mut inner = mock.lock();
    if ok {
        inner.stats.callbacks_sent += 1;
    } else {
        inner.stats.callbacks_failed += 1;
    }
}

#[derive(Debug, Deserialize)]
struct ReceivedQuery {
    run_id: Option<Uuid>,
}

async fn received(
    State(mock): State<MockExecutor>,
    Query(q): Query<ReceivedQuery>,
) -> Json<Vec<Received>> {
    let all = mock.received();
    Json(match q.run_id {
        Some(id) => all.into_iter().filter(|r| r.run_id == id).collect(),
        None => all,
    })
}

async fn put_behaviour(
    State(mock): State<MockExecutor>,
    Json(b): Json<Behaviour>,
) -> Json<Behaviour> {
    mock.set_behaviour(b);
    Json(mock.behaviour())
}

async fn reset(State(mock): State<MockExecutor>) -> StatusCode {
    let mut inner = mock.lock();
    let behaviour = inner.behaviour.clone();
    *inner = Inner {
        behaviour,
        ..Inner::default()
    };
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A stand-in scheduler that counts completion reports, failing the first `fail_first`.
    async fn completion_sink(fail_first: usize) -> (Url, Arc<AtomicUsize>, CancellationToken) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let app = Router::new().route(
            "/runs/{run_id}/complete",
            post(move || {
                let counter = counter.clone();
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        (url, seen, token)
    }

    async fn start(mock: &MockExecutor) -> (String, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/runs", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        mock.clone().spawn(listener, token.clone());
        (url, token)
    }

    async fn launch(http: &reqwest::Client, url: &str) -> u16 {
        let run_id = Uuid::now_v7();
        http.post(url)
            .header("Idempotency-Key", run_id.to_string())
            .json(&serde_json::json!({"run_id": run_id, "attempt": 1}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn completions_go_to_the_callback_urls_in_turn() {
        let (a, seen_a, stop_a) = completion_sink(0).await;
        let (b, seen_b, stop_b) = completion_sink(0).await;
        let mock = MockExecutor::new(Behaviour {
            callback_urls: vec![a, b],
            ..Behaviour::default()
        });
        let (url, stop) = start(&mock).await;
        let http = reqwest::Client::new();
        for _ in 0..6 {
            assert_eq!(launch(&http, &url).await, 202);
        }
        wait_until("6 completions", || mock.stats().callbacks_sent == 6).await;
        assert_eq!(seen_a.load(Ordering::SeqCst), 3);
        assert_eq!(seen_b.load(Ordering::SeqCst), 3);
        for t in [stop, stop_a, stop_b] {
            t.cancel();
        }
    }

    #[tokio::test]
    async fn a_single_callback_url_still_works_and_failures_are_retried() {
        let (a, seen, stop_a) = completion_sink(2).await;
        let mock = MockExecutor::new(Behaviour {
            callback_url: Some(a),
            ..Behaviour::default()
        });
        let (url, stop) = start(&mock).await;
        let http = reqwest::Client::new();
        assert_eq!(launch(&http, &url).await, 202);
        wait_until("the completion", || mock.stats().callbacks_sent == 1).await;
        assert_eq!(seen.load(Ordering::SeqCst), 3, "two 503s, then accepted");
        assert_eq!(mock.stats().callbacks_failed, 0);
        stop.cancel();
        stop_a.cancel();
    }

    #[tokio::test]
    async fn no_callback_url_means_no_completion() {
        let mock = MockExecutor::new(Behaviour::default());
        let (url, stop) = start(&mock).await;
        let http = reqwest::Client::new();
        assert_eq!(launch(&http, &url).await, 202);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = mock.stats();
        assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (0, 0));
        assert_eq!(mock.inspect_received(<[Received]>::len), 1);
        stop.cancel();
    }
}
