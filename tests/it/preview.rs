//! `/cron/preview` against hand-checked instants.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn preview_lists_utc_and_local_times_across_a_dst_change() {
    let app = TestApp::spawn().await;
    // London springs forward on 2026-03-29 at 01:00 UTC: midnight local moves from 00:00Z
    // (GMT) to 23:00Z the day before (BST).
    let (status, body) = app
        .post(
            "/cron/preview",
            json!({"cron_expr": "0 0 * * *", "timezone": "Europe/London", "count": 3, "from": "2026-03-28T12:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let utc: Vec<&str> = body["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["utc"].as_str().unwrap())
        .collect();
    assert_eq!(
        utc,
        [
            "2026-03-29T00:00:00Z",
            "2026-03-29T23:00:00Z",
            "2026-03-30T23:00:00Z"
        ]
    );
    let local: Vec<&str> = body["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["local"].as_str().unwrap())
        .collect();
    assert_eq!(
        local,
        [
            "2026-03-29T00:00:00+00:00",
            "2026-03-30T00:00:00+01:00",
            "2026-03-31T00:00:00+01:00"
        ]
    );
    assert!(!body["description"].as_str().unwrap().is_empty());
    assert_eq!(body["timezone"], "Europe/London");
}

#[tokio::test]
async fn preview_defaults_to_five_times_from_now_in_utc() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post("/cron/preview", json!({"cron_expr": "0 */5 * * * *"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = body["next"].as_array().unwrap();
    assert_eq!(next.len(), 5);
    assert_eq!(body["timezone"], "UTC");
    let first: chrono::DateTime<chrono::Utc> = next[0]["utc"].as_str().unwrap().parse().unwrap();
    let second: chrono::DateTime<chrono::Utc> = next[1]["utc"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        second - first,
        chrono::Duration::minutes(5),
        "6 fields: seconds first"
    );
}
