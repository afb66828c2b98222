//! The Executor client: one POST per launch attempt to `{SCHEDULER_EXECUTOR_URL}/runs`, over
//! a keep-alive connection pool, classified into accepted / retry / reject.
//!
//! Every attempt of a run carries the same `Idempotency-Key` (invariant 4), a W3C
//! `traceparent` whose trace id is the run id (so a run's attempts share one trace), and a
//! bearer token when one is configured.
//!
//! | Executor answer | Outcome |
//! |---|---|
//! | 2xx, 409 (already have it) | accepted: the run is `running` |
//! | 429, 5xx, timeout, connection error | retry later (honouring `Retry-After`) |
//! | any other 4xx | rejected at once: `failed_launch` |

use crate::runs::{RunReason, RunTrigger};
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, header};
use serde::Serialize;
use url::Url;

use crate::config::Secret;

/// The body the Executor receives.
#[derive(Debug, Serialize)]
pub struct LaunchRequest<'a> {
    pub run_id: uuid::Uuid,
    pub schedule_id: Option<&'a str>,
    pub workflow_id: &'a str,
    pub version: i32,
    pub user_id: &'a str,
    pub scheduled_for: DateTime<Utc>,
    pub fire_at: DateTime<Utc>,
    pub attempt: i32,
    pub trigger: RunTrigger,
    pub dag: &'a serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted {
        status: u16,
    },
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// `reason` is kept on the run: `rejected` (the Executor's 4xx) or
    /// `workflow_not_found` (no DAG stored for the run's workflow version).
    Reject {
        error: String,
        reason: RunReason,
    },
}

/// Longest part of an Executor's error body kept on the run.
const ERROR_EXCERPT: usize = 512;

pub struct ExecutorClient {
    http: reqwest::Client,
    runs_url: Url,
    token: Option<Secret>,
}

impl std::fmt::Debug for ExecutorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorClient")
            .field("runs_url", &self.runs_url.as_str())
            .finish_non_exhaustive()
    }
}

impl ExecutorClient {
    pub fn new(base: &Url, token: Option<Secret>, timeout: Duration) -> anyhow::Result<Arc<Self>> {
        let mut runs_url = base.clone();
        let path = format!("{}/runs", runs_url.path().trim_end_matches('/'));
        runs_url.set_path(&path);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("cron-scheduler/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            http,
            runs_url,
            token,
        }))
    }

    pub fn runs_url(&self) -> &Url {
        &self.runs_url
    }

    /// One attempt, and the class of the Executor's answer for the metrics (`2xx`, `409`,
    /// `429`, `4xx`, `5xx`, `timeout`, `error`).
    pub async fn launch(
        &self,
        req: &LaunchRequest<'_>,
        idempotency_key: &str,
        traceparent: &str,
    ) -> (Outcome, &'static str) {
        let mut builder = self
            .http
            .post(self.runs_url.clone())
            .header("Idempotency-Key", idempotency_key)
            .header("traceparent", traceparent)
            .json(req);
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token.expose());
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                let (kind, class) = if e.is_timeout() {
                    ("timeout", "timeout")
                } else if e.is_connect() {
                    ("connection error", "error")
                } else {
                    ("request error", "error")
                };
                let outcome = Outcome::Retry {
                    error: format!("executor {kind}: {}", error_chain(&e)),
                    retry_after: None,
                };
                return (outcome, class);
            }
        };
        let status = response.status();
        let class = match status.as_u16() {
            200..=299 => "2xx",
            409 => "409",
            429 => "429",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "error",
        };
        if status.is_success() || status == StatusCode::CONFLICT {
            let outcome = Outcome::Accepted {
                status: status.as_u16(),
            };
            return (outcome, class);
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.text().await.unwrap_or_default();
        let excerpt: String = body.chars().take(ERROR_EXCERPT).collect();
        let error = format!("executor answered {status}: {excerpt}");
        let outcome = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Outcome::Retry { error, retry_after }
        } else {
            Outcome::Reject {
                error,
                reason: RunReason::Rejected,
            }
        };
        (outcome, class)
    }
}

/// `reqwest` hides the cause of a connection error in its source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A W3C traceparent for a run when no span context is at hand: trace id = the run id, a
/// fresh span id, sampled.
pub fn traceparent(run_id: uuid::Uuid) -> String {
    let span = uuid::Uuid::new_v4();
    let span_id = &span.simple().to_string()[..16];
    format!("00-{}-{span_id}-01", run_id.simple())
}

/// `Retry-After` as seconds or an HTTP date; capped at an hour.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(delay.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn traceparent_carries_the_run_id() {
        let id = uuid::Uuid::now_v7();
        let tp = traceparent(id);
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], id.simple().to_string());
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn runs_url_is_joined_to_the_base() {
        let c = ExecutorClient::new(
            &"http://exec:9000/api/".parse().unwrap(),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.runs_url().as_str(), "http://exec:9000/api/runs");
        let c = ExecutorClient::new(
            &"http://exec:9000".parse().unwrap(),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.runs_url().as_str(), "http://exec:9000/runs");
    }
}
