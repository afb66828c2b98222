//! Every metric the Grafana dashboard and the alert rules query is one the service really
//! emits: a renamed metric breaks this test, not a dashboard in production.

use std::{collections::BTreeSet, time::Duration};

use cron_scheduler::mock_executor::Behaviour;
use serde_json::json;

use crate::{
    common::{TestApp, wait_for},
    launcher::{Mock, launch_config},
};

/// `scheduler_*` names in a text (PromQL inside JSON or YAML).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("scheduler_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        // `scheduler_cluster` is the label every series carries, not a metric.
        if boundary && &text[start..end] != "scheduler_cluster" {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test]
async fn dashboard_and_alert_metrics_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut wanted = BTreeSet::new();
    for file in std::fs::read_dir(format!("{root}/helm/cron-scheduler/files/grafana")).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let _: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
            wanted.extend(referenced(&text));
        }
    }
    let alerts = std::fs::read_to_string(format!(
        "{root}/helm/cron-scheduler/files/prometheus/alerts.yml"
    ))
    .unwrap();
    wanted.extend(referenced(&alerts));
    assert!(
        wanted.len() >= 12,
        "the dashboard and alerts query many metrics: {wanted:?}"
    );

    // A replica that has done the things the metrics count.
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    mock.call_back_to(&app, 10);
    app.put("/workflows/wf/versions/1", json!({})).await;
    app.create_schedule(
        json!({"schedule_id": "m", "cron_expr": "* * * * * *", "overlap_policy": "allow"}),
    )
    .await;
    wait_for("completions", Duration::from_secs(15), || async {
        mock.mock.stats().callbacks_sent >= 2
    })
    .await;
    let text = app.metrics().await;
    let emitted: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|n| !emitted.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "queried but not emitted: {missing:?}\nemitted: {emitted:?}"
    );
    app.stop().await;
}

#[test]
fn the_name_scanner_finds_names() {
    let found =
        referenced(r#"rate(scheduler_a_total{job="x"}[1m]) / my_scheduler_b + scheduler_c_bucket"#);
    assert_eq!(
        found,
        ["scheduler_a_total", "scheduler_c_bucket"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
