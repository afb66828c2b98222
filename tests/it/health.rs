//! Health, readiness, docs, and what clients see when the database goes away.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, fresh_database_on, start_cluster};

#[tokio::test]
async fn health_ready_openapi_and_docs() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/health/live", "/health/ready"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["status"], "ok", "{path}");
        assert_eq!(
            body["tzdb_version"],
            chrono_tz::IANA_TZDB_VERSION,
            "{path}: the time zone rules in use"
        );
    }
    let (_, worker) = app.get("/worker/status").await;
    assert_eq!(worker["tzdb_version"], chrono_tz::IANA_TZDB_VERSION);
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/schedules/upsert",
        "/schedules/{schedule_id}",
        "/schedules",
        "/cron/preview",
        "/health/ready",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
    app.stop().await;
}

#[tokio::test]
async fn database_down_answers_503_and_recovers_nothing_half_written() {
    // A cluster of this test's own: it is killed mid-test.
    let pg = start_cluster();
    let (url, pool) = fresh_database_on(&pg).await;
    pool.close().await;
    let app = TestApp::spawn_on(
        url,
        sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1:1/x").unwrap(),
        |c| {
            c.db_acquire_timeout = std::time::Duration::from_millis(500);
        },
    )
    .await;
    app.create_schedule(json!({"schedule_id": "before"})).await;

    pg.kill().expect("kill PostgreSQL");
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["database"], "down");
    assert_eq!(
        app.get("/health/live").await.0,
        StatusCode::OK,
        "liveness ignores the database"
    );

    let (status, body) = app.get("/schedules/before").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, body) = app
        .post(
            "/schedules/upsert",
            json!({"workflow_id": "w", "version": 1, "user_id": "u", "cron_expr": "* * * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no connection details leak: {body}"
    );
    // Bad input is still answered as bad input, without the database.
    let (status, _) = app
        .post("/schedules/upsert", json!({"cron_expr": "nope"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    drop(pg);
}
