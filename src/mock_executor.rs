//! `cron-scheduler mock-executor`: a small Executor stand-in for development, the
//! docker-compose stack, tests and benchmarks.
//!
//! It accepts `POST /runs` like a real Executor, records every request (run id,
//! `Idempotency-Key`, attempt, `traceparent`, receive time), answers a repeated key with
//! 409 (as a deduplicating Executor would), and can be told to be slow, fail with a
//! status (always or for a fraction of requests, with an optional `Retry-After`), and call
//! back completion (`POST {callback}/runs/{id}/complete`) after a delay.
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
}

#[derive(Clone, Debug)]
pub struct MockExecutor {
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

impl MockExecutor {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                behaviour,
                ..Inner::default()
            })),
            http: reqwest::Client::new(),
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
    });
    inner.last_body = serde_json::from_slice(&body).ok();
    drop(inner);

    let retry_after = behaviour.retry_after_secs;
    if status == StatusCode::ACCEPTED {
        if let Some(base) = behaviour.callback_url.clone() {
            let mock = mock.clone();
            tokio::spawn(async move { callback(mock, base, launch.run_id, &behaviour).await });
        }
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
    let mut req = mock.http.post(&url).json(&body);
    if let Some(token) = &behaviour.callback_token {
        req = req.bearer_auth(token);
    }
    let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
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
