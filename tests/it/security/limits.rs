//! Rate limits, slow clients, and limits on what clients send.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::common::{TestApp, snapshot};

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_while_others_are_served() {
    let app = TestApp::spawn_with(|c| {
        secured(c);
        c.rate_limit_per_sec = 2;
        c.rate_limit_burst = 10;
    })
    .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..30 {
        let answer = call(&app, Some(ALICE), Method::GET, "/schedules", None).await;
        statuses.push(answer.status.as_u16());
        if answer.status == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some(answer);
        }
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    println!("30 requests at once, burst 10, 2/s: {ok} served, {refused} refused");
    assert!((10..=12).contains(&ok), "{statuses:?}");
    assert_eq!(ok + refused, 30, "{statuses:?}");
    let limited = limited.unwrap();
    assert_eq!(limited.code(), "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1, "one request's worth at 2/s, rounded up");

    // Other tokens, health checks, are served all the while.
    for _ in 0..5 {
        assert_eq!(
            call(&app, Some(BOB), Method::GET, "/schedules", None)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, None, Method::GET, "/health/ready", None)
                .await
                .status,
            StatusCode::OK
        );
    }
    // Wrong credentials are limited by address, and do not eat the tokens' buckets.
    let mut guesses = Vec::new();
    for i in 0..15 {
        let bad = format!("guess-{i}-0123456789abcdef");
        guesses.push(
            call(&app, Some(&bad), Method::GET, "/schedules", None)
                .await
                .status
                .as_u16(),
        );
    }
    assert!(
        guesses.contains(&401) && guesses.contains(&429),
        "{guesses:?}"
    );
    assert_eq!(
        call(&app, Some(BOB), Method::GET, "/schedules", None)
            .await
            .status,
        StatusCode::OK
    );

    // After Retry-After, Alice is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        call(&app, Some(ALICE), Method::GET, "/schedules", None)
            .await
            .status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn the_executors_completion_reports_are_not_rate_limited() {
    // One report per run: at 1,000 fires/s the Executor reports 1,000 times a second.
    let app = TestApp::spawn_with(|c| {
        secured(c);
        c.rate_limit_per_sec = 1;
        c.rate_limit_burst = 2;
    })
    .await;
    let mut runs = Vec::new();
    for _ in 0..30 {
        runs.push(insert_run(&app.pool, None, "alice", "running").await);
    }
    for run in &runs {
        let answer = call(
            &app,
            Some(EXECUTOR),
            Method::POST,
            &format!("/runs/{run}/complete"),
            Some(json!({"status": "succeeded"})),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    // A user at the same pace is limited.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            call(&app, Some(ALICE), Method::GET, "/schedules", None)
                .await
                .status,
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    app.stop().await;
}

/// Reads until the server closes the connection; how long after `started` that was.
async fn time_until_closed(
    mut stream: tokio::io::ReadHalf<tokio::net::TcpStream>,
    started: Instant,
) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept a slow connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let timeout = Duration::from_millis(800);
    let app = TestApp::spawn_with(|c| c.header_read_timeout = timeout).await;

    // Slowloris: a request line, then one header byte every 100 ms, never finishing.
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (read, mut write) = tokio::io::split(stream);
    let slow_closed = tokio::spawn(time_until_closed(read, Instant::now()));
    let trickle = tokio::spawn(async move {
        let _ = write
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        for _ in 0..200 {
            if write.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // An idle connection that sends nothing at all.
    let idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (idle_read, _idle_write) = tokio::io::split(idle);
    let idle_closed = tokio::spawn(time_until_closed(idle_read, Instant::now()));

    // Meanwhile others are served, promptly.
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = app.get("/health").await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow = slow_closed.await.unwrap();
    let idle = idle_closed.await.unwrap();
    println!(
        "header read timeout {timeout:?}: slowloris cut off after {slow:?}, idle after {idle:?}"
    );
    for took in [slow, idle] {
        assert!(took >= timeout - Duration::from_millis(100), "{took:?}");
        assert!(took < timeout + Duration::from_millis(1500), "{took:?}");
    }
    trickle.abort();

    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (kept_read, _kept_write) = tokio::io::split(kept);
    let quiet = time_until_closed(kept_read, Instant::now()).await;
    assert!(quiet < timeout + Duration::from_millis(1500), "{quiet:?}");
    app.stop().await;
}

#[tokio::test]
async fn client_controlled_sizes_are_bounded() {
    let app = TestApp::spawn_with(|c| c.max_dag_bytes = 1024).await;
    let before = snapshot(&app.pool).await;
    let big =
        json!({"tasks": (0..100).map(|i| json!({"id": format!("task-{i}")})).collect::<Vec<_>>()});
    let (status, body) = app.put("/workflows/wf/versions/1", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["field"], "dag");
    // Compact size counts: the same small DAG spaced out is fine.
    let spaced = format!("{{{}\"tasks\": []}}", " ".repeat(4000));
    let (status, _) = app
        .send_raw(Method::PUT, "/workflows/wf/versions/2", Some(spaced))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let after = snapshot(&app.pool).await;
    assert_eq!(after.len(), before.len() + 1);

    // Huge strings are refused without being echoed back whole.
    let huge = "z".repeat(200_000);
    for field in [
        "overlap_policy",
        "catchup_policy",
        "timezone",
        "cron_expr",
        "user_id",
        "schedule_id",
    ] {
        let mut body = schedule("s", "alice");
        body[field] = json!(huge);
        let resp = app
            .http
            .post(app.url("/schedules/upsert"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let text = resp.text().await.unwrap();
        assert!(text.len() < 2048, "{field}: {} bytes echoed", text.len());
    }
    let mut unknown = serde_json::Map::new();
    unknown.insert(huge.clone(), json!(1));
    let (status, body) = app.post("/schedules/upsert", Value::Object(unknown)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().len() < 2048);
    let long = "9".repeat(20_000);
    let (status, body) = app
        .post(
            &format!("/run-launcher/start?workflow_id=wf&version={long}&user_id=alice"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().len() < 2048);
    app.stop().await;
}

#[tokio::test]
async fn characters_postgres_cannot_store_are_refused_as_422() {
    // Found by schemathesis: a DAG with U+0000 in a key was a 500 (jsonb refuses it).
    let app = TestApp::spawn().await;
    let before = snapshot(&app.pool).await;
    let (status, body) = app
        .put("/workflows/wf/versions/1", json!({"a\u{0}b": 1}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "dag");
    let (status, body) = app
        .put(
            "/workflows/wf/versions/1",
            json!({"tasks": [{"id": "x\u{0}"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for query in ["user_id=a%00b", "workflow_id=%00"] {
        let (status, body) = app.get(&format!("/schedules?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }
    let running = insert_run(&app.pool, None, "alice", "running").await;
    let before_complete = snapshot(&app.pool).await;
    let (status, body) = app
        .post(
            &format!("/runs/{running}/complete"),
            json!({"status": "failed", "error": "boom\u{0}"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "error");
    assert_eq!(snapshot(&app.pool).await, before_complete);
    assert_eq!(before.len() + 1, before_complete.len());
    app.stop().await;
}

#[tokio::test]
async fn instants_at_the_ends_of_time_are_not_a_500() {
    // Found by the property tests: croner panicked converting an instant near chrono's
    // last one to local time in a zone east of UTC.
    let app = TestApp::spawn().await;
    for from in [
        "+262142-12-31T19:37:51Z",
        "-262143-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ] {
        let (status, body) = app
            .post(
                "/cron/preview",
                json!({"cron_expr": "* * * * *", "timezone": "Antarctica/Casey", "from": from}),
            )
            .await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{from}: {status} {body}"
        );
        let mut schedule = schedule(&format!("far-{}", from.len()), "alice");
        schedule["timezone"] = json!("Asia/Tokyo");
        schedule["start_at"] = json!(from);
        let (status, body) = app.post("/schedules/upsert", schedule).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{from}: {status} {body}"
        );
        let query = format!(
            "/run-launcher/start?workflow_id=wf&version=1&user_id=alice&scheduled_for={}",
            from.replace('+', "%2B")
        );
        let (status, body) = app.post(&query, json!({})).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{from}: {status} {body}"
        );
    }
    app.stop().await;
}
