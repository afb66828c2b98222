//! Roles and per-user isolation, credentials (static tokens and JWTs), open paths.

use cron_scheduler::{api::auth::JwtSettings, config::Secret};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::common::{TestApp, snapshot};

#[tokio::test]
async fn a_user_cannot_see_or_touch_another_users_schedules_or_runs() {
    let app = TestApp::spawn_with(secured).await;
    let created = call(
        &app,
        Some(BOB),
        Method::POST,
        "/schedules/upsert",
        Some(schedule("bobs", "bob")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let bobs_run = insert_run(&app.pool, Some("bobs"), "bob", "succeeded").await;
    let before = snapshot(&app.pool).await;

    // What an unknown id answers, to compare with.
    let unknown = call(&app, Some(ALICE), Method::GET, "/schedules/nobody", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let past = json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-01T05:00:00Z"});
    let attempts = [
        (Method::GET, "/schedules/bobs".to_owned(), None),
        (
            Method::POST,
            "/schedules/upsert".to_owned(),
            Some(schedule("bobs", "alice")),
        ),
        (
            Method::POST,
            "/schedules/bobs/pause".to_owned(),
            Some(json!({"paused": true})),
        ),
        (Method::DELETE, "/schedules/bobs".to_owned(), None),
        (Method::GET, "/schedules/bobs/runs".to_owned(), None),
        (Method::POST, "/schedules/bobs/trigger".to_owned(), None),
        (
            Method::POST,
            "/schedules/bobs/backfill".to_owned(),
            Some(past.clone()),
        ),
        (Method::GET, format!("/runs/{bobs_run}"), None),
    ];
    for (method, path, body) in attempts {
        let answer = call(&app, Some(ALICE), method.clone(), &path, body).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "alice {method} {path}: {}",
            answer.body
        );
        assert_eq!(answer.code(), "not_found");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("bob\"") && !message.contains("user"),
            "the 404 must not say whose it is: {message}"
        );
    }
    // The same words as for an id that does not exist.
    let hidden = call(&app, Some(ALICE), Method::GET, "/schedules/bobs", None).await;
    assert_eq!(
        hidden.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace("bobs", "X"),
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nobody", "X")
    );

    // Lists are filtered to the caller's own, whatever filter it asks for.
    for path in [
        "/schedules",
        "/schedules?user_id=bob",
        "/schedules?workflow_id=wf",
    ] {
        let list = call(&app, Some(ALICE), Method::GET, path, None).await;
        assert_eq!(list.status, StatusCode::OK, "{path}");
        assert_eq!(list.body["schedules"], json!([]), "{path}: {}", list.body);
    }
    assert_eq!(snapshot(&app.pool).await, before, "nothing changed");

    // The owner, and an admin, do see it: the 404s above are not an accident.
    let own = call(&app, Some(BOB), Method::GET, "/schedules/bobs", None).await;
    assert_eq!(own.status, StatusCode::OK);
    let runs = call(&app, Some(BOB), Method::GET, "/schedules/bobs/runs", None).await;
    assert_eq!(runs.body["runs"].as_array().unwrap().len(), 1);
    let run = call(
        &app,
        Some(BOB),
        Method::GET,
        &format!("/runs/{bobs_run}"),
        None,
    )
    .await;
    assert_eq!(run.status, StatusCode::OK);
    let all = call(
        &app,
        Some(ADMIN),
        Method::GET,
        "/schedules?user_id=bob",
        None,
    )
    .await;
    assert_eq!(all.body["schedules"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_user_acts_only_in_its_own_name() {
    let app = TestApp::spawn_with(secured).await;
    let before = snapshot(&app.pool).await;
    let foreign = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/schedules/upsert",
        Some(schedule("mine", "bob")),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{}", foreign.body);
    assert_eq!(foreign.code(), "forbidden");
    assert_eq!(foreign.body["error"]["field"], "user_id");
    let launch = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/run-launcher/start?workflow_id=wf&version=1&user_id=bob",
        None,
    )
    .await;
    assert_eq!(launch.status, StatusCode::FORBIDDEN, "{}", launch.body);
    assert_eq!(snapshot(&app.pool).await, before, "nothing stored");

    // The shared catalogue: read by users, written by admins (see the next test).
    let put = call(
        &app,
        Some(ADMIN),
        Method::PUT,
        "/workflows/wf/versions/1",
        Some(json!({"tasks": []})),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    let get = call(
        &app,
        Some(ALICE),
        Method::GET,
        "/workflows/wf/versions/1",
        None,
    )
    .await;
    assert_eq!(get.status, StatusCode::OK);
    let preview = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/cron/preview",
        Some(json!({"cron_expr": "@daily"})),
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK);
    let created = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/schedules/upsert",
        Some(schedule("mine", "alice")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let replaced = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/schedules/upsert",
        Some(schedule("mine", "alice")),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK);
    let list = call(&app, Some(ALICE), Method::GET, "/schedules", None).await;
    assert_eq!(list.body["schedules"][0]["schedule_id"], "mine");
    let paused = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/schedules/mine/pause",
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(paused.status, StatusCode::OK);
    let triggered = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/schedules/mine/trigger",
        None,
    )
    .await;
    assert_eq!(triggered.status, StatusCode::CREATED, "{}", triggered.body);
    let run_id = triggered.body["run_id"].as_str().unwrap().to_owned();
    let run = call(
        &app,
        Some(ALICE),
        Method::GET,
        &format!("/runs/{run_id}"),
        None,
    )
    .await;
    assert_eq!(run.status, StatusCode::OK);
    let runs = call(&app, Some(ALICE), Method::GET, "/schedules/mine/runs", None).await;
    assert_eq!(runs.body["runs"].as_array().unwrap().len(), 1);
    // A manual launch with no user_id is in the caller's name.
    let launched = call(
        &app,
        Some(ALICE),
        Method::POST,
        "/run-launcher/start?workflow_id=wf&version=1",
        None,
    )
    .await;
    assert_eq!(launched.status, StatusCode::CREATED, "{}", launched.body);
    assert_eq!(launched.body["user_id"], "alice");
    // Bob cannot see Alice's manual run either.
    let manual = launched.body["run_id"].as_str().unwrap();
    let hidden = call(
        &app,
        Some(BOB),
        Method::GET,
        &format!("/runs/{manual}"),
        None,
    )
    .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let deleted = call(&app, Some(ALICE), Method::DELETE, "/schedules/mine", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.stop().await;
}

#[tokio::test]
async fn admin_and_executor_endpoints_are_refused_to_other_roles() {
    let app = TestApp::spawn_with(secured).await;
    let running = insert_run(&app.pool, None, "alice", "running").await;
    let complete = format!("/runs/{running}/complete");
    let before = snapshot(&app.pool).await;

    for token in [ALICE, EXECUTOR] {
        for (method, path) in [
            (Method::POST, "/worker/start"),
            (Method::POST, "/worker/stop"),
            (Method::GET, "/worker/status"),
        ] {
            let answer = call(&app, Some(token), method, path, None).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{path}: {}",
                answer.body
            );
            assert_eq!(answer.code(), "forbidden");
        }
    }
    let switched_on: Option<bool> =
        sqlx::query_scalar("select bool_or(worker_enabled) from fleet_state")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_ne!(switched_on, Some(true), "the worker switch did not move");
    let user_completes = call(
        &app,
        Some(ALICE),
        Method::POST,
        &complete,
        Some(json!({"status": "failed"})),
    )
    .await;
    assert_eq!(
        user_completes.status,
        StatusCode::FORBIDDEN,
        "{}",
        user_completes.body
    );

    // The executor may do nothing but report completions.
    for (method, path, body) in [
        (Method::GET, "/schedules".to_owned(), None),
        (Method::GET, "/schedules/x".to_owned(), None),
        (
            Method::POST,
            "/schedules/upsert".to_owned(),
            Some(schedule("e", "alice")),
        ),
        (Method::DELETE, "/schedules/x".to_owned(), None),
        (
            Method::POST,
            "/cron/preview".to_owned(),
            Some(json!({"cron_expr": "@daily"})),
        ),
        (
            Method::PUT,
            "/workflows/wf/versions/1".to_owned(),
            Some(json!({})),
        ),
        (Method::GET, format!("/runs/{running}"), None),
        (
            Method::POST,
            "/run-launcher/start?workflow_id=wf&version=1&user_id=alice".to_owned(),
            None,
        ),
        (Method::GET, "/no/such/path".to_owned(), None),
    ] {
        let answer = call(&app, Some(EXECUTOR), method.clone(), &path, body).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "executor {method} {path}"
        );
    }
    assert_eq!(snapshot(&app.pool).await, before, "nothing changed");

    let reported = call(
        &app,
        Some(EXECUTOR),
        Method::POST,
        &complete,
        Some(json!({"status": "succeeded"})),
    )
    .await;
    assert_eq!(reported.status, StatusCode::OK, "{}", reported.body);
    assert_eq!(reported.body["status"], "succeeded");
    app.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_and_open_paths_stay_open() {
    let app = TestApp::spawn_with(|c| {
        secured(c);
        c.metrics_public = false;
    })
    .await;
    let almost = format!("Bearer {ADMIN}x");
    let cases: [(&str, Option<&str>, bool); 6] = [
        ("none", None, false),
        ("wrong", Some("Bearer not-a-token-0123456789"), true),
        ("almost", Some(&almost), true),
        ("basic", Some("Basic YWRtaW46YWRtaW4="), false),
        ("empty", Some("Bearer "), false),
        ("scheme only", Some("Bearer"), false),
    ];
    for (name, header, invalid_token) in cases {
        for path in [
            "/schedules",
            "/worker/status",
            "/schedules/x",
            "/no/such/path",
            "/metrics",
        ] {
            let mut req = app.http.get(app.url(path));
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{name} {path}");
            let challenge = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            if invalid_token {
                assert!(challenge.contains("invalid_token"), "{name}: {challenge}");
            }
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{name} {path}");
        }
    }
    let mut req = app.http.post(app.url("/schedules/upsert"));
    req = req.json(&schedule("x", "alice"));
    assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Open without a token: health, the API description, its UI, the console's files.
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/docs/",
        "/ui",
        "/ui/app.js",
    ] {
        let status = app.http.get(app.url(path)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // The document says how to authenticate.
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/schedules"]["get"]["responses"]["401"].is_object());
    // /metrics with SCHEDULER_METRICS_PUBLIC=false: any valid token.
    let metrics = call(&app, Some(BOB), Method::GET, "/metrics", None).await;
    assert_ne!(metrics.status, StatusCode::UNAUTHORIZED);
    assert_ne!(metrics.status, StatusCode::FORBIDDEN);
    app.stop().await;

    // Public by default.
    let open = TestApp::spawn_with(secured).await;
    let status = open
        .http
        .get(open.url("/metrics"))
        .send()
        .await
        .unwrap()
        .status();
    assert_ne!(status, StatusCode::UNAUTHORIZED);
    open.stop().await;
}

/// The catalogue is shared: a version a user stores runs under every user's schedules
/// that name it. By default only admins write it; `SCHEDULER_WORKFLOW_WRITERS=any` lets
/// users store versions too. Reading is open to users either way.
#[tokio::test]
async fn only_admins_write_the_shared_workflow_catalogue_unless_allowed() {
    let app = TestApp::spawn_with(secured).await;
    let before = snapshot(&app.pool).await;
    let denied = call(
        &app,
        Some(ALICE),
        Method::PUT,
        "/workflows/claimed/versions/1",
        Some(json!({"tasks": ["alice's"]})),
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert_eq!(denied.code(), "forbidden");
    assert!(
        denied.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SCHEDULER_WORKFLOW_WRITERS=any"),
        "{}",
        denied.body
    );
    assert_eq!(snapshot(&app.pool).await, before, "nothing stored");
    let stored = call(
        &app,
        Some(ADMIN),
        Method::PUT,
        "/workflows/claimed/versions/1",
        Some(json!({"tasks": []})),
    )
    .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    let read = call(
        &app,
        Some(ALICE),
        Method::GET,
        "/workflows/claimed/versions/1",
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "users read the catalogue");
    app.stop().await;

    let open = TestApp::spawn_with(|c| {
        secured(c);
        c.workflow_writers = cron_scheduler::config::WorkflowWriters::Any;
    })
    .await;
    let allowed = call(
        &open,
        Some(ALICE),
        Method::PUT,
        "/workflows/claimed/versions/1",
        Some(json!({"tasks": []})),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);
    open.stop().await;
}

/// Idempotency keys belong to the user they act for: two users who pick the same key get
/// a run each (neither can reach or probe the other's run through the key), and the
/// Executor receives a different key for each.
#[tokio::test]
async fn two_users_with_one_idempotency_key_get_two_runs() {
    let app = TestApp::spawn_with(secured).await;
    let put = call(
        &app,
        Some(ADMIN),
        Method::PUT,
        "/workflows/wf/versions/1",
        Some(json!({})),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let launch = "/run-launcher/start?workflow_id=wf&version=1&idempotency_key=nightly-2030";
    let alice = call(&app, Some(ALICE), Method::POST, launch, None).await;
    let bob = call(&app, Some(BOB), Method::POST, launch, None).await;
    assert_eq!(alice.status, StatusCode::CREATED, "{}", alice.body);
    assert_eq!(bob.status, StatusCode::CREATED, "{}", bob.body);
    assert_ne!(alice.body["run_id"], bob.body["run_id"]);
    assert_eq!(alice.body["user_id"], "alice");
    assert_eq!(bob.body["user_id"], "bob");
    let again = call(&app, Some(BOB), Method::POST, launch, None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["run_id"], bob.body["run_id"], "bob's own run");
    let keys: Vec<String> = sqlx::query_scalar("select idempotency_key from runs")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "the Executor sees two keys");
    app.stop().await;
}

#[tokio::test]
async fn admin_can_do_everything() {
    let app = TestApp::spawn_with(secured).await;
    let a = Some(ADMIN);
    let put = call(
        &app,
        a,
        Method::PUT,
        "/workflows/wf/versions/1",
        Some(json!({"tasks": []})),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    for (id, user) in [("a1", "alice"), ("b1", "bob")] {
        let created = call(
            &app,
            a,
            Method::POST,
            "/schedules/upsert",
            Some(schedule(id, user)),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let list = call(&app, a, Method::GET, "/schedules", None).await;
    assert_eq!(list.body["schedules"].as_array().unwrap().len(), 2);
    let get = call(&app, a, Method::GET, "/schedules/b1", None).await;
    assert_eq!(get.status, StatusCode::OK);
    let pause = call(
        &app,
        a,
        Method::POST,
        "/schedules/b1/pause",
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(pause.status, StatusCode::OK);
    let trigger = call(&app, a, Method::POST, "/schedules/b1/trigger", None).await;
    assert_eq!(trigger.status, StatusCode::CREATED);
    let backfill = call(
        &app,
        a,
        Method::POST,
        "/schedules/a1/backfill",
        Some(json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-01T02:00:00Z"})),
    )
    .await;
    assert_eq!(backfill.status, StatusCode::OK, "{}", backfill.body);
    let runs = call(&app, a, Method::GET, "/schedules/a1/runs", None).await;
    assert_eq!(runs.body["runs"].as_array().unwrap().len(), 3);
    let launch = call(
        &app,
        a,
        Method::POST,
        "/run-launcher/start?workflow_id=wf&version=1&user_id=bob",
        None,
    )
    .await;
    assert_eq!(launch.status, StatusCode::CREATED);
    let running = insert_run(&app.pool, Some("b1"), "bob", "running").await;
    let done = call(
        &app,
        a,
        Method::POST,
        &format!("/runs/{running}/complete"),
        Some(json!({"status": "failed", "error": "x"})),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK);
    let run = call(&app, a, Method::GET, &format!("/runs/{running}"), None).await;
    assert_eq!(run.body["status"], "failed");
    for (method, path) in [
        (Method::GET, "/worker/status"),
        (Method::POST, "/worker/stop"),
        (Method::POST, "/worker/start"),
    ] {
        assert_eq!(
            call(&app, a, method, path, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let deleted = call(&app, a, Method::DELETE, "/schedules/b1", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.stop().await;
}

fn jwt(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn jwts_map_their_claim_to_a_user_and_their_role_claim_to_a_role() {
    let app = TestApp::spawn_with(|c| {
        secured(c);
        c.jwt = Some(
            JwtSettings::hs256(&Secret::new(JWT_SECRET))
                .unwrap()
                .user_claim("uid".into())
                .audience("cron-scheduler"),
        );
    })
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let carol = jwt(
        &json!({"uid": "carol", "aud": "cron-scheduler", "exp": exp}),
        JWT_SECRET,
    );
    let created = call(
        &app,
        Some(&carol),
        Method::POST,
        "/schedules/upsert",
        Some(schedule("c1", "carol")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let foreign = call(
        &app,
        Some(&carol),
        Method::POST,
        "/schedules/upsert",
        Some(schedule("c2", "bob")),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let status = call(&app, Some(&carol), Method::GET, "/worker/status", None).await;
    assert_eq!(status.status, StatusCode::FORBIDDEN);
    let admin = jwt(
        &json!({"uid": "ops", "role": "admin", "aud": "cron-scheduler", "exp": exp}),
        JWT_SECRET,
    );
    let status = call(&app, Some(&admin), Method::GET, "/worker/status", None).await;
    assert_eq!(status.status, StatusCode::OK);

    for (name, token) in [
        (
            "expired",
            jwt(
                &json!({"uid": "carol", "aud": "cron-scheduler", "exp": exp - 4000}),
                JWT_SECRET,
            ),
        ),
        (
            "no exp",
            jwt(
                &json!({"uid": "carol", "aud": "cron-scheduler"}),
                JWT_SECRET,
            ),
        ),
        (
            "exp as text",
            jwt(
                &json!({"uid": "carol", "aud": "cron-scheduler", "exp": exp.to_string()}),
                JWT_SECRET,
            ),
        ),
        (
            "wrong key",
            jwt(
                &json!({"uid": "carol", "aud": "cron-scheduler", "exp": exp}),
                "another-secret-another-secret-0123456789",
            ),
        ),
        (
            "wrong audience",
            jwt(
                &json!({"uid": "carol", "aud": "elsewhere", "exp": exp}),
                JWT_SECRET,
            ),
        ),
        (
            "no user claim",
            jwt(
                &json!({"sub": "carol", "aud": "cron-scheduler", "exp": exp}),
                JWT_SECRET,
            ),
        ),
        (
            "unknown role",
            jwt(
                &json!({"uid": "carol", "role": "root", "aud": "cron-scheduler", "exp": exp}),
                JWT_SECRET,
            ),
        ),
        ("unsigned", {
            let signed = jwt(
                &json!({"uid": "carol", "role": "admin", "aud": "cron-scheduler", "exp": exp}),
                JWT_SECRET,
            );
            let mut parts: Vec<&str> = signed.split('.').collect();
            parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
            parts[2] = "";
            parts.join(".")
        }),
    ] {
        let answer = call(&app, Some(&token), Method::GET, "/schedules", None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    app.stop().await;
}
