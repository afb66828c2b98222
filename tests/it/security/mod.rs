//! Security: who may call what (roles, per-user isolation), credentials, rate limits, slow
//! clients, limits on what clients send, and secrets that must never leak.
//!
//! - `access`: roles and isolation, 401/403/404, JWT, open paths.
//! - `limits`: rate limits, slow clients, sizes and values PostgreSQL cannot store.
//! - `secrets`: secrets never leak; the binary refuses to serve an open API by accident.

mod access;
mod limits;
mod secrets;

use cron_scheduler::{
    api::auth::{AuthSwitch, TokenSet},
    config::Config,
};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

pub(super) const ADMIN: &str = "admin-token-0123456789abcdef";
pub(super) const ALICE: &str = "alice-token-0123456789abcdef";
pub(super) const BOB: &str = "bob-token-0123456789abcdef";
pub(super) const EXECUTOR: &str = "executor-token-0123456789abcdef";
pub(super) const JWT_SECRET: &str = "jwt-test-secret-0123456789abcdef-0123456789";

/// Auth on with one token of each kind (two users); rate limits stay off unless a test
/// sets them.
pub(super) fn secured(cfg: &mut Config) {
    cfg.auth = AuthSwitch::On;
    cfg.api_tokens = TokenSet::parse(&format!(
        "admin:{ADMIN}, user:alice:{ALICE}\nuser:bob:{BOB}, executor:{EXECUTOR}"
    ))
    .unwrap();
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) headers: HeaderMap,
}

impl Answer {
    pub(super) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

pub(super) async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = app.http.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    }
}

pub(super) fn schedule(id: &str, user: &str) -> Value {
    json!({"schedule_id": id, "workflow_id": "wf", "version": 1, "user_id": user,
           "cron_expr": "0 * * * *"})
}

/// A run of `schedule_id` in `user`'s name, in `status`, written as the fleet would.
pub(super) async fn insert_run(
    pool: &PgPool,
    schedule_id: Option<&str>,
    user: &str,
    status: &str,
) -> Uuid {
    let run_id = Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key, launched_at) \
         values ($1, $2, now() - interval '1 hour', now() - interval '1 hour', $3, 'schedule', \
           'wf', 1, $4, $1::text, case when $3 = 'running' then now() end)",
    )
    .bind(run_id)
    .bind(schedule_id)
    .bind(status)
    .bind(user)
    .execute(pool)
    .await
    .expect("insert run");
    run_id
}
