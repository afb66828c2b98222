//! OTLP export against a fake collector: after a schedule fires, the collector has the
//! service's metrics and spans, the launch span carries the run id, and the Executor got
//! that span's trace id in `traceparent`.

use std::time::Duration;

use cron_scheduler::{
    config::{Config, LogFormat},
    mock_executor::Behaviour,
    otlp::OtlpTarget,
    telemetry,
};
use fake_opentelemetry_collector::FakeCollectorServer;
use serde_json::json;

use crate::{
    common::{TestApp, rerun_in_own_process, test_config, wait_for},
    launcher::{Mock, launch_config},
};

/// The configuration `telemetry::init` gets: JSON logs, spans to `collector` over gRPC.
fn exporting_to(collector: &FakeCollectorServer) -> Config {
    let mut config = test_config();
    config.log_format = LogFormat::Json;
    config.otel_service_name = "cron-scheduler-test".into();
    config.otlp_traces = Some(OtlpTarget::grpc(collector.endpoint()));
    config
}

/// An attribute's value: the fake collector keeps them as `Debug` text of OTLP values
/// (`Some(AnyValue { value: Some(StringValue("x")) })`).
pub fn attr(span: &fake_opentelemetry_collector::ExportedSpan, key: &str) -> Option<String> {
    let raw = span.attributes.get(key)?;
    if let Some(rest) = raw.split("StringValue(\"").nth(1) {
        return rest.split("\")").next().map(str::to_owned);
    }
    raw.split("IntValue(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .map(str::to_owned)
}

#[tokio::test]
async fn metrics_and_spans_reach_the_collector_and_the_trace_reaches_the_executor() {
    if rerun_in_own_process(
        "telemetry::metrics_and_spans_reach_the_collector_and_the_trace_reaches_the_executor",
    ) {
        return;
    }
    let mut collector = FakeCollectorServer::start().await.expect("fake collector");
    // The global subscriber of this test process exports spans to the collector.
    let _guard = telemetry::init(&exporting_to(&collector));
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| {
        launch_config(c, &mock.url);
        c.otlp_metrics = Some(OtlpTarget::grpc(collector.endpoint()));
        c.otlp_metric_interval = Duration::from_millis(500);
    })
    .await;
    app.put("/workflows/wf/versions/1", json!({})).await;
    app.create_schedule(
        json!({"schedule_id": "otel", "cron_expr": "* * * * * *", "overlap_policy": "allow"}),
    )
    .await;
    wait_for("launches", Duration::from_secs(15), || async {
        mock.mock.stats().accepted >= 3
    })
    .await;
    // Let the periodic reader and the batch span processor push.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.stop().await;
    drop(_guard);

    let exported = collector.exported_metrics(1, Duration::from_secs(10)).await;
    let names: std::collections::BTreeSet<String> = exported
        .iter()
        .flat_map(|e| e.metrics.iter().map(|m| m.name.clone()))
        .collect();
    for expected in [
        "scheduler_runs_emitted",
        "scheduler_fire_lag_seconds",
        "scheduler_fire_lateness_seconds",
        "scheduler_backlog_runs",
        "scheduler_schedules_unhealthy",
        "scheduler_launch_duration_seconds",
        "scheduler_executor_responses",
        "scheduler_is_leader",
        "scheduler_leader_elections",
        "scheduler_http_requests",
        "scheduler_db_pool_connections",
    ] {
        assert!(
            names.contains(expected),
            "{expected} not exported; got {names:?}"
        );
    }

    // The collector hands spans over in chunks: gather until a launch span shows up.
    let mut spans = Vec::new();
    for _ in 0..20 {
        spans.extend(
            collector
                .exported_spans(1, Duration::from_millis(500))
                .await,
        );
        if spans.iter().any(|s| s.name == "launch") && spans.iter().any(|s| s.name == "tick_batch")
        {
            break;
        }
    }
    let span_names: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.name.as_str()).collect();
    for expected in ["http", "launch", "claim_batch", "tick_batch"] {
        assert!(
            span_names.contains(expected),
            "no {expected} span; got {span_names:?}"
        );
    }
    let received = mock.mock.received();
    let launch = spans
        .iter()
        .find(|s| {
            s.name == "launch"
                && received
                    .iter()
                    .any(|r| attr(s, "run_id") == Some(r.run_id.to_string()))
        })
        .unwrap_or_else(|| {
            panic!(
                "no launch span with the run id of a delivered run: {:?}",
                spans
                    .iter()
                    .filter(|s| s.name == "launch")
                    .map(|s| &s.attributes)
                    .collect::<Vec<_>>()
            )
        });
    let run_id: uuid::Uuid = attr(launch, "run_id").unwrap().parse().unwrap();
    assert_eq!(attr(launch, "schedule_id").as_deref(), Some("otel"));
    assert_eq!(attr(launch, "attempt").as_deref(), Some("1"));
    assert_eq!(attr(launch, "executor_status").as_deref(), Some("2xx"));
    assert_eq!(
        launch.trace_id,
        run_id.simple().to_string(),
        "a run's trace id is its run id"
    );
    let delivered = received.iter().find(|r| r.run_id == run_id).unwrap();
    let tp = delivered.traceparent.as_deref().unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(
        parts[1], launch.trace_id,
        "the Executor got the launch span's trace"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == launch.trace_id && s.span_id == parts[2])
            || parts[2] == launch.span_id,
        "the traceparent's span is the launch span"
    );
    let http = spans.iter().find(|s| s.name == "http").unwrap();
    assert!(
        http.attributes.contains_key("route") && http.attributes.contains_key("status"),
        "{:?}",
        http.attributes
    );
}

#[tokio::test]
async fn a_callers_traceparent_is_the_parent_of_the_request_span() {
    if rerun_in_own_process("telemetry::a_callers_traceparent_is_the_parent_of_the_request_span") {
        return;
    }
    let mut collector = FakeCollectorServer::start().await.expect("fake collector");
    let _guard = telemetry::init(&exporting_to(&collector));
    let app = TestApp::spawn().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = app
        .http
        .get(app.url("/health/live"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    app.stop().await;
    drop(_guard);
    let spans = collector.exported_spans(1, Duration::from_secs(10)).await;
    let http = spans
        .iter()
        .find(|s| s.name == "http")
        .expect("an http span");
    assert_eq!(http.trace_id, trace_id);
    assert_eq!(http.parent_span_id, "00f067aa0ba902b7");
}
