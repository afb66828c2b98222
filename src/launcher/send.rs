//! One launch attempt: the request to the Executor inside a `launch` span whose trace is
//! the run's, and the metrics of its answer.

use crate::runs::RunReason;
use chrono::Utc;
use opentelemetry::KeyValue;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    claim::Claimed,
    dags::DagCache,
    executor::{self, ExecutorClient, LaunchRequest, Outcome},
};
use crate::telemetry::Metrics;

/// The span context of a launch: its parent is a remote context whose trace id is the run
/// id, so every attempt of a run lands in one trace.
fn launch_span(run: &Claimed) -> tracing::Span {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "launch",
        run_id = %run.run_id,
        schedule_id = run.schedule_id.as_deref().unwrap_or(""),
        attempt = run.attempt,
        executor_status = tracing::field::Empty,
        otel.kind = "client",
    );
    let parent = SpanContext::new(
        TraceId::from_bytes(*run.run_id.as_bytes()),
        SpanId::from_bytes(Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes")),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    span
}

/// The `traceparent` the Executor receives: the launch span's, or one made from the run id
/// when spans are not exported.
fn span_traceparent(span: &tracing::Span, run_id: Uuid) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    } else {
        executor::traceparent(run_id)
    }
}

pub async fn launch_one(
    client: &ExecutorClient,
    dags: &DagCache,
    pool: &sqlx::PgPool,
    metrics: &Metrics,
    run: &Claimed,
) -> Outcome {
    let span = launch_span(run);
    async {
        let dag = match dags.get_or_load(pool, &run.workflow_id, run.version).await {
            Ok(Some(dag)) => dag,
            Ok(None) => {
                tracing::warn!("launch failed: no DAG stored for this workflow version");
                return Outcome::Reject {
                    error: format!(
                        "workflow {:?} version {} not found",
                        run.workflow_id, run.version
                    ),
                    reason: RunReason::WorkflowNotFound,
                };
            }
            // Not the run's fault: retried like an Executor outage.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the run's DAG; retrying");
                return Outcome::Retry {
                    error: format!("cannot read the workflow's DAG from the database: {e}"),
                    retry_after: None,
                };
            }
        };
        let request = LaunchRequest {
            run_id: run.run_id,
            schedule_id: run.schedule_id.as_deref(),
            workflow_id: &run.workflow_id,
            version: run.version,
            user_id: &run.user_id,
            scheduled_for: run.scheduled_for,
            fire_at: run.fire_at,
            attempt: run.attempt,
            trigger: run.trigger,
            dag: &dag,
        };
        let traceparent = span_traceparent(&tracing::Span::current(), run.run_id);
        let started = std::time::Instant::now();
        let (outcome, class) = client
            .launch(&request, &run.idempotency_key, &traceparent)
            .await;
        metrics
            .launch_duration
            .record(started.elapsed().as_secs_f64(), &[]);
        metrics
            .executor_responses
            .add(1, &[KeyValue::new("class", class)]);
        tracing::Span::current().record("executor_status", class);
        match &outcome {
            Outcome::Accepted { .. } => {
                metrics.runs_launched.add(1, &[]);
                let lag = (Utc::now() - run.scheduled_for)
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                metrics.fire_lag.record(lag as f64 / 1e6, &[]);
                let late = (Utc::now() - run.fire_at)
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                metrics.fire_lateness.record(
                    late.max(0) as f64 / 1e6,
                    &[KeyValue::new("trigger", run.trigger.as_str())],
                );
                tracing::debug!(status = class, "launched");
            }
            Outcome::Retry { error, .. } => tracing::warn!(%error, "launch failed; will retry"),
            Outcome::Reject { error, .. } => tracing::warn!(%error, "launch rejected"),
        }
        outcome
    }
    .instrument(span)
    .await
}
