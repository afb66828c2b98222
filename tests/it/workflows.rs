//! Workflow versions: stored once, immutable, readable.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn versions_are_stored_once_and_immutable() {
    let app = TestApp::spawn().await;
    let dag = json!({"tasks": [{"id": "extract"}, {"id": "load", "after": ["extract"]}]});
    let (status, stored) = app.put("/workflows/etl/versions/3", dag.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["dag"], dag);
    assert_eq!(stored["version"], 3);

    let (status, again) = app.put("/workflows/etl/versions/3", dag.clone()).await;
    assert_eq!(status, StatusCode::OK, "same document again is a no-op");
    assert_eq!(again["created_at"], stored["created_at"]);

    let (status, conflict) = app
        .put("/workflows/etl/versions/3", json!({"tasks": []}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["error"]["code"], "conflict");

    let (status, fetched) = app.get("/workflows/etl/versions/3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["dag"], dag);
    assert_eq!(
        app.get("/workflows/etl/versions/4").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/workflows/other/versions/3").await.0,
        StatusCode::NOT_FOUND
    );
}
