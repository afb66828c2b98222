//! The binary's OTLP export, configured by the standard variables only: over gRPC to the
//! fake collector (a launch's JSON log line names the trace and span the collector
//! received; SIGTERM flushes what the batch processor and the metric reader still hold),
//! over OTLP/HTTP to a collector stand-in (the `/v1/...` paths appended to the base
//! endpoint, protobuf bodies), and an unsupported protocol refusing to start.

use std::{
    collections::BTreeSet,
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post};
use fake_opentelemetry_collector::FakeCollectorServer;
use nix::sys::signal::Signal;
use opentelemetry_proto::tonic::collector::{
    metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use serde_json::{Value, json};

use crate::{
    common::{fresh_database, wait_for},
    failover::Node,
    launcher::Mock,
    telemetry::attr,
};

/// Starts a replica on a fresh database that launches to `mock` every second with JSON
/// logs (the launcher's `launched` line included) and the OTLP variables in `otel`.
async fn replica_launching(
    mock: &Mock,
    dir: &std::path::Path,
    otel: &[(&str, &str)],
) -> (Node, reqwest::Client) {
    let (url, _pool) = fresh_database().await;
    let mut env = vec![
        ("SCHEDULER_EXECUTOR_URL", mock.url.as_str()),
        ("SCHEDULER_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,cron_scheduler::launcher=debug"),
        ("OTEL_SERVICE_NAME", "cron-scheduler-otlp-test"),
    ];
    env.extend_from_slice(otel);
    let node = Node::start_with(&url, "otlp", dir, &env);
    let http = reqwest::Client::new();
    node.ready(&http).await;
    let base = format!("http://127.0.0.1:{}", node.port);
    let r = http
        .put(format!("{base}/workflows/wf/versions/1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http
        .post(format!("{base}/schedules/upsert"))
        .json(
            &json!({"schedule_id": "otel", "workflow_id": "wf", "version": 1,
                      "user_id": "u", "cron_expr": "* * * * * *", "overlap_policy": "allow"}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    (node, http)
}

/// SIGTERM, then the exit status (within 30 s) and the log. Waits without blocking: the
/// collector and the Executor the replica flushes to run on this test's runtime.
async fn terminate(node: &mut Node) -> (ExitStatus, String) {
    node.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
            node.child = None;
            return (status, std::fs::read_to_string(&node.log).unwrap());
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The JSON lines of a log (a line that is not JSON fails the test: the format is JSON).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn flushed(lines: &[Value], signal: &str) -> bool {
    lines
        .iter()
        .any(|l| l["message"] == "telemetry flushed" && l["signal"] == signal)
}

#[tokio::test]
async fn a_launch_log_line_names_the_exported_span_and_sigterm_flushes_telemetry() {
    let mut collector = FakeCollectorServer::start().await.expect("fake collector");
    let mock = Mock::start(cron_scheduler::mock_executor::Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Neither pipeline pushes on its own within the test (an hour between pushes): what
    // the collector gets, it gets from the flush at shutdown.
    let (mut node, _http) = replica_launching(
        &mock,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
        ],
    )
    .await;
    wait_for("launches", Duration::from_secs(20), || async {
        mock.mock.stats().accepted >= 3
    })
    .await;
    assert!(
        collector
            .exported_spans(1, Duration::from_millis(300))
            .await
            .is_empty(),
        "spans exported before shutdown: the flush below would prove nothing"
    );
    let (status, log) = terminate(&mut node).await;
    assert!(status.success(), "exit after SIGTERM: {status}\n{log}");
    let lines = json_lines(&log);
    assert!(flushed(&lines, "spans"), "no spans flush reported:\n{log}");
    assert!(
        flushed(&lines, "metrics"),
        "no metrics flush reported:\n{log}"
    );

    let metrics = collector.exported_metrics(1, Duration::from_secs(5)).await;
    let names: BTreeSet<&str> = metrics
        .iter()
        .flat_map(|e| e.metrics.iter().map(|m| m.name.as_str()))
        .collect();
    assert!(
        names.contains("scheduler_runs_launched"),
        "metrics flushed at shutdown: {names:?}"
    );
    let mut spans = Vec::new();
    for _ in 0..10 {
        spans.extend(
            collector
                .exported_spans(1, Duration::from_millis(500))
                .await,
        );
    }
    let launches: Vec<_> = spans.iter().filter(|s| s.name == "launch").collect();
    assert!(
        launches.len() >= 3,
        "launch spans flushed: {}",
        launches.len()
    );

    // Every `launched` line (one per accepted launch, inside its `launch` span) carries
    // the ids of a span the collector has: the same trace, the same span, the same run.
    let launched: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "launched" && l["span"]["name"] == "launch")
        .collect();
    assert!(
        launched.len() >= 3,
        "launched lines: {}\n{log}",
        launched.len()
    );
    for line in launched {
        let trace_id = line["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace_id: {line}"));
        let span_id = line["span_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no span_id: {line}"));
        let span = launches
            .iter()
            .find(|s| s.span_id == span_id)
            .unwrap_or_else(|| panic!("no exported launch span {span_id} for {line}"));
        assert_eq!(span.trace_id, trace_id, "{line}");
        let run_id = line["span"]["run_id"].as_str().unwrap();
        assert_eq!(attr(span, "run_id").as_deref(), Some(run_id));
        assert_eq!(
            trace_id,
            run_id.parse::<uuid::Uuid>().unwrap().simple().to_string(),
            "a run's trace id is its run id"
        );
    }
    // Lines outside any span carry no ids.
    let serving = lines
        .iter()
        .find(|l| l["message"] == "cron-scheduler serving")
        .expect("a serving line");
    assert!(serving.get("trace_id").is_none(), "{serving}");
}

/// What the OTLP/HTTP stand-in received: (path, content type, body), in order.
type Received = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// A collector stand-in for OTLP/HTTP: accepts protobuf POSTs on `/v1/traces` and
/// `/v1/metrics` (an empty body is a valid, empty export response) and keeps them.
async fn http_collector() -> (String, Received) {
    async fn keep(
        State((path, received)): State<(&'static str, Received)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> ([(&'static str, &'static str); 1], Vec<u8>) {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        received
            .lock()
            .unwrap()
            .push((path.to_owned(), content_type, body));
        ([("content-type", "application/x-protobuf")], Vec::new())
    }
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(keep).with_state(("/v1/traces", received.clone())),
        )
        .route(
            "/v1/metrics",
            post(keep).with_state(("/v1/metrics", received.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

#[tokio::test]
async fn otlp_over_http_reaches_a_collector_stand_in() {
    let (endpoint, received) = http_collector().await;
    let mock = Mock::start(cron_scheduler::mock_executor::Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _http) = replica_launching(
        &mock,
        dir.path(),
        &[
            // The base endpoint: the exporters append /v1/traces and /v1/metrics.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let decoded = || {
        let mut spans = Vec::new();
        let mut metrics = BTreeSet::new();
        for (path, content_type, body) in received.lock().unwrap().iter() {
            assert_eq!(content_type, "application/x-protobuf", "{path}");
            if path == "/v1/traces" {
                let request = ExportTraceServiceRequest::decode(body.clone()).expect("traces");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans);
                    }
                }
            } else {
                let request = ExportMetricsServiceRequest::decode(body.clone()).expect("metrics");
                for resource in request.resource_metrics {
                    for scope in resource.scope_metrics {
                        metrics.extend(scope.metrics.into_iter().map(|m| m.name));
                    }
                }
            }
        }
        (spans, metrics)
    };
    wait_for(
        "a launch span and launch metrics over OTLP/HTTP",
        Duration::from_secs(30),
        || async {
            let (spans, metrics) = decoded();
            spans.iter().any(|s| s.name == "launch") && metrics.contains("scheduler_runs_launched")
        },
    )
    .await;
    let (spans, _) = decoded();
    let delivered = mock.mock.received();
    let launch = spans
        .iter()
        .find(|s| {
            s.name == "launch"
                && delivered
                    .iter()
                    .any(|r| r.run_id.as_bytes().as_slice() == s.trace_id.as_slice())
        })
        .expect("a launch span whose trace is a delivered run's");
    assert_eq!(launch.span_id.len(), 8);
    let (status, log) = terminate(&mut node).await;
    assert!(status.success(), "exit after SIGTERM: {status}\n{log}");
    let lines = json_lines(&log);
    assert!(
        flushed(&lines, "spans") && flushed(&lines, "metrics"),
        "{log}"
    );
}

/// A protocol the build does not speak stops the binary before anything starts: exit 2
/// (a configuration error), naming the variable and the choices.
#[test]
fn an_unsupported_otlp_protocol_refuses_to_start() {
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env(var, value)
            .env("SCHEDULER_DATA_DIR", "/nonexistent/never-created")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains(var) && said.contains(value), "{said}");
        assert!(said.contains("grpc or http/protobuf"), "{said}");
    }
}
