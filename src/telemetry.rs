//! Telemetry: one metrics API (OpenTelemetry) with two exports, traces over OTLP, and
//! structured logs that name their trace.
//!
//! - **Metrics**: every replica has its own meter provider with a Prometheus reader (served
//!   on `/metrics`) and, when an OTLP endpoint is configured ([`crate::otlp`]: gRPC or
//!   OTLP/HTTP, TLS for `https://`), an OTLP push reader (every
//!   `OTEL_METRIC_EXPORT_INTERVAL` ms, default 60 s). Names are prefixed `scheduler_`; see
//!   [`Metrics`].
//! - **Traces**: with an OTLP endpoint, `tracing` spans are exported through
//!   `tracing-opentelemetry`: a span per API request (`http`, with route and status; a
//!   caller's `traceparent` is honoured), per claim batch (`claim_batch`), per ticker batch
//!   (`tick_batch`) and per launch attempt (`launch`, with run id, schedule id, attempt and
//!   Executor status). A launch span's trace id is the run id, so all attempts of a run
//!   form one trace, and its `traceparent` is what the Executor receives.
//! - **Logs**: `tracing` with the level from `RUST_LOG` (default `info`; the OpenTelemetry
//!   SDK's own lines only from `warn` unless `RUST_LOG` names it), JSON lines when
//!   stdout is not a terminal (production), human-readable when it is. JSON lines carry the
//!   fields of the spans they happen in, so every log line of a launch has its run and
//!   schedule ids, and, while spans are exported, the `trace_id` and `span_id` of that
//!   span (`WithTraceIds`).
//! - **Shutdown**: after the replica has drained, the metrics are pushed one last time
//!   ([`Telemetry::flush`]); the binary then pushes the spans still queued
//!   ([`TracingGuard::flush`]). Each waits at most [`FLUSH_TIMEOUT`] and logs
//!   `telemetry flushed` (with `signal`), or the failure.

use std::{io::IsTerminal, sync::Arc, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _},
    trace::{SpanId, TraceContextExt as _, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
    trace::SdkTracerProvider,
};
use sqlx::PgPool;
use tracing_subscriber::{
    EnvFilter, fmt,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

use crate::{
    config::{Config, LogFormat},
    kinds::{RunReason, RunStatus},
    otlp,
};

/// Fire-lag and launch-duration buckets, in seconds: a millisecond to ten minutes.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Every instrument the service records. Names as Prometheus shows them (counters get
/// `_total`).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `scheduler_schedules_due`: schedules the ticker found due in its last pass.
    pub schedules_due: Gauge<u64>,
    /// `scheduler_runs_emitted_total{trigger}`: runs the ticker wrote to be launched.
    pub runs_emitted: Counter<u64>,
    /// `scheduler_runs_missed_total{reason}`: ticks recorded as missed (or counted).
    pub runs_missed: Counter<u64>,
    /// `scheduler_runs_skipped_overlap_total`: runs skipped by the `skip` policy.
    pub runs_skipped_overlap: Counter<u64>,
    /// `scheduler_runs_skipped_queue_full_total`: ticks of `queue` schedules skipped
    /// because `SCHEDULER_MAX_QUEUED` runs already wait.
    pub runs_skipped_queue_full: Counter<u64>,
    /// `scheduler_runs_skipped_calendar_total`: ticks written `skipped` because a calendar
    /// of their schedule excludes their date.
    pub runs_skipped_calendar: Counter<u64>,
    /// `scheduler_runs_failed_launch_total{reason}`.
    pub runs_failed_launch: Counter<u64>,
    /// `scheduler_runs_launched_total`: launches the Executor accepted.
    pub runs_launched: Counter<u64>,
    /// `scheduler_runs_completed_total{status}`: completion reports and timeouts.
    pub runs_completed: Counter<u64>,
    /// `scheduler_runs_deleted_total`: finished runs removed by retention.
    pub runs_deleted: Counter<u64>,
    /// `scheduler_fire_lag_seconds`: launch time − scheduled_for, for accepted launches
    /// (jitter and backfill included: how old the tick is when it runs).
    pub fire_lag: Histogram<f64>,
    /// `scheduler_fire_lateness_seconds{trigger}`: launch time − `fire_at` (the intended
    /// moment, jitter included; retries count as late), for accepted launches: how late
    /// the service was, apart from the delay a schedule asked for.
    pub fire_lateness: Histogram<f64>,
    /// `scheduler_backlog_runs`: runs due (their `fire_at`, or `retry_at`) and not
    /// launched yet, counted up to 100,000; reported by the leader, 0 elsewhere.
    pub backlog_runs: Gauge<u64>,
    /// `scheduler_backlog_oldest_seconds`: how long the oldest of them has been due; 0
    /// when none (or not the leader). It grows while the Executor is down or no replica
    /// launches, when no launch records a lag at all.
    pub backlog_oldest: Gauge<f64>,
    /// `scheduler_schedules_unhealthy{reason}`: schedules `late` or `failing` at the
    /// leader's last complete survey (`fleet::health`); 0 elsewhere.
    pub schedules_unhealthy: Gauge<u64>,
    /// `scheduler_launch_duration_seconds`: one Executor request.
    pub launch_duration: Histogram<f64>,
    /// `scheduler_executor_responses_total{class}`: `2xx`, `409`, `4xx`, `429`, `5xx`,
    /// `timeout`, `error`.
    pub executor_responses: Counter<u64>,
    /// `scheduler_is_leader`: 1 on the leader, 0 elsewhere.
    pub is_leader: Gauge<u64>,
    /// `scheduler_leader_elections_total`: elections this replica won.
    pub leader_elections: Counter<u64>,
    /// `scheduler_tick_batches_total{claimed}`: the leader's claim transactions, by whether
    /// they claimed any schedule (`some`) or none (`none`).
    pub tick_batches: Counter<u64>,
    /// `scheduler_http_requests_total{route,status}`.
    pub http_requests: Counter<u64>,
    /// `scheduler_http_request_duration_seconds{route}`.
    pub http_duration: Histogram<f64>,
}

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        let latency = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let metrics = Self {
            schedules_due: meter
                .u64_gauge("scheduler_schedules_due")
                .with_description("Schedules found due in the leader's last tick pass")
                .build(),
            runs_emitted: meter
                .u64_counter("scheduler_runs_emitted")
                .with_description("Runs written by the ticker to be launched")
                .build(),
            runs_missed: meter
                .u64_counter("scheduler_runs_missed")
                .with_description("Ticks recorded as missed under the catch-up policy")
                .build(),
            runs_skipped_overlap: meter
                .u64_counter("scheduler_runs_skipped_overlap")
                .with_description("Runs skipped because their schedule had a run in flight")
                .build(),
            runs_skipped_queue_full: meter
                .u64_counter("scheduler_runs_skipped_queue_full")
                .with_description(
                    "Ticks skipped because their queue schedule had too many runs waiting",
                )
                .build(),
            runs_skipped_calendar: meter
                .u64_counter("scheduler_runs_skipped_calendar")
                .with_description(
                    "Ticks skipped because a calendar of their schedule excludes their date",
                )
                .build(),
            runs_failed_launch: meter
                .u64_counter("scheduler_runs_failed_launch")
                .with_description("Runs that could not be launched")
                .build(),
            runs_launched: meter
                .u64_counter("scheduler_runs_launched")
                .with_description("Launches the Executor accepted")
                .build(),
            runs_completed: meter
                .u64_counter("scheduler_runs_completed")
                .with_description("Runs that ended after launch, by status")
                .build(),
            runs_deleted: meter
                .u64_counter("scheduler_runs_deleted")
                .with_description("Finished runs removed by retention (SCHEDULER_RUN_RETENTION)")
                .build(),
            fire_lag: latency(
                "scheduler_fire_lag_seconds",
                "Launch time minus scheduled_for, for accepted launches",
            ),
            fire_lateness: latency(
                "scheduler_fire_lateness_seconds",
                "Launch time minus the run's intended fire time (jitter included), by trigger",
            ),
            backlog_runs: meter
                .u64_gauge("scheduler_backlog_runs")
                .with_description("Runs due and not launched yet (up to 100000), from the leader")
                .build(),
            backlog_oldest: meter
                .f64_gauge("scheduler_backlog_oldest_seconds")
                .with_description("Age of the oldest due, unlaunched run, from the leader")
                .build(),
            schedules_unhealthy: meter
                .u64_gauge("scheduler_schedules_unhealthy")
                .with_description("Schedules late or failing, by reason, from the leader")
                .build(),
            launch_duration: latency(
                "scheduler_launch_duration_seconds",
                "Duration of one launch request to the Executor",
            ),
            executor_responses: meter
                .u64_counter("scheduler_executor_responses")
                .with_description("Executor answers by class")
                .build(),
            is_leader: meter
                .u64_gauge("scheduler_is_leader")
                .with_description("1 when this replica leads its cluster")
                .build(),
            leader_elections: meter
                .u64_counter("scheduler_leader_elections")
                .with_description("Elections this replica won")
                .build(),
            tick_batches: meter
                .u64_counter("scheduler_tick_batches")
                .with_description("Leader claim transactions, by whether they claimed any schedule")
                .build(),
            http_requests: meter
                .u64_counter("scheduler_http_requests")
                .with_description("API requests by route and status")
                .build(),
            http_duration: latency(
                "scheduler_http_request_duration_seconds",
                "API request duration by route",
            ),
        };
        metrics.zero_known_series();
        metrics
    }

    /// Creates every counter series whose labels are known up front, at 0: a series that
    /// first appears already holding N is invisible to `increase()` (an alert on missed
    /// ticks after an outage would see nothing), so every series an alert or dashboard
    /// reads exists from start-up.
    fn zero_known_series(&self) {
        let with = |key: &'static str, values: &[&'static str]| -> Vec<[KeyValue; 1]> {
            values.iter().map(|v| [KeyValue::new(key, *v)]).collect()
        };
        for labels in with("trigger", &["schedule", "catchup"]) {
            self.runs_emitted.add(0, &labels);
        }
        for labels in with("reason", &["catchup_none", "uncounted"]) {
            self.runs_missed.add(0, &labels);
        }
        for reason in [
            RunReason::AttemptsExhausted,
            RunReason::WorkflowNotFound,
            RunReason::Rejected,
        ] {
            self.runs_failed_launch
                .add(0, &[KeyValue::new("reason", reason.as_str())]);
        }
        for status in [RunStatus::Succeeded, RunStatus::Failed, RunStatus::TimedOut] {
            self.runs_completed
                .add(0, &[KeyValue::new("status", status.as_str())]);
        }
        for labels in with(
            "class",
            &["2xx", "409", "4xx", "429", "5xx", "timeout", "error"],
        ) {
            self.executor_responses.add(0, &labels);
        }
        for labels in with("claimed", &["some", "none"]) {
            self.tick_batches.add(0, &labels);
        }
        for counter in [
            &self.runs_skipped_overlap,
            &self.runs_skipped_queue_full,
            &self.runs_skipped_calendar,
            &self.runs_launched,
            &self.runs_deleted,
            &self.leader_elections,
        ] {
            counter.add(0, &[]);
        }
    }

    /// Records the unhealthy-schedules gauge, both reasons.
    pub fn record_unhealthy(&self, late: u64, failing: u64) {
        for (reason, n) in [("late", late), ("failing", failing)] {
            self.schedules_unhealthy
                .record(n, &[KeyValue::new("reason", reason)]);
        }
    }

    /// Instruments that record into nothing (unit tests of code that takes metrics).
    pub fn detached() -> Arc<Self> {
        Arc::new(Self::new(
            &SdkMeterProvider::default().meter("cron-scheduler"),
        ))
    }
}

/// A replica's metrics pipeline: instruments, the Prometheus registry behind `/metrics`,
/// and the OTLP reader when configured.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    meter: Meter,
    /// Whether an OTLP reader pushes these metrics (and must be flushed at the end).
    otlp: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

fn resource(config: &Config) -> Resource {
    Resource::builder()
        .with_service_name(config.otel_service_name.clone())
        .with_attributes([
            KeyValue::new("service.instance.id", config.node_id.clone()),
            KeyValue::new("service.version", crate::VERSION),
            KeyValue::new("scheduler.cluster", config.cluster_name.clone()),
        ])
        .build()
}

impl Telemetry {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        // Every series carries `scheduler_cluster` (the resource's `scheduler.cluster`), so
        // fleet-wide alerts (one leader, two leaders) can be scoped to a cluster. Not
        // `cluster`: scrape configs often add a target label of that name, which would
        // rename ours to `exported_cluster`.
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .with_resource_selector(std::collections::HashSet::from([opentelemetry::Key::new(
                "scheduler.cluster",
            )]))
            .build()?;
        let mut builder = SdkMeterProvider::builder()
            .with_reader(prometheus)
            .with_resource(resource(config));
        if let Some(target) = &config.otlp_metrics {
            let exporter = otlp::metric_exporter(target)?;
            builder = builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(config.otlp_metric_interval)
                    .build(),
            );
        }
        let provider = builder.build();
        let meter = provider.meter("cron-scheduler");
        Ok(Self {
            metrics: Arc::new(Metrics::new(&meter)),
            registry,
            provider,
            meter,
            otlp: config.otlp_metrics.is_some(),
        })
    }

    /// Adds the database pool gauges (`scheduler_db_pool_connections{state}`).
    pub fn observe_pool(&self, pool: PgPool) {
        let _gauge = self
            .meter
            .u64_observable_gauge("scheduler_db_pool_connections")
            .with_description("Database pool connections by state (idle, in_use, max)")
            .with_callback(move |observer| {
                let size = u64::from(pool.size());
                let idle = u64::try_from(pool.num_idle()).unwrap_or(0);
                observer.observe(idle, &[KeyValue::new("state", "idle")]);
                observer.observe(
                    size.saturating_sub(idle),
                    &[KeyValue::new("state", "in_use")],
                );
                observer.observe(
                    u64::from(pool.options().get_max_connections()),
                    &[KeyValue::new("state", "max")],
                );
            })
            .build();
    }

    /// The Prometheus text exposition of this replica's metrics.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// At shutdown: pushes the metrics one last time over OTLP and stops the pipeline,
    /// waiting at most [`FLUSH_TIMEOUT`], and logs how it went (`telemetry flushed`).
    /// Without OTLP there is nothing to push: the Prometheus registry just stops.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        if self.otlp {
            flush_bounded("metrics", move || provider.shutdown()).await;
        } else {
            let _ = provider.shutdown();
        }
    }
}

/// How long shutdown waits for each OTLP pipeline (metrics, spans) to push what it holds.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a pipeline's blocking flush-and-stop on a blocking thread, waits for it at most
/// [`FLUSH_TIMEOUT`] (the SDK's own limits are longer, or absent for metrics), and logs
/// the outcome.
async fn flush_bounded(
    signal: &'static str,
    stop: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) {
    let started = std::time::Instant::now();
    match tokio::time::timeout(FLUSH_TIMEOUT, tokio::task::spawn_blocking(stop)).await {
        Ok(Ok(Ok(()))) => tracing::info!(
            signal,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "telemetry flushed"
        ),
        Ok(Ok(Err(e))) => tracing::warn!(signal, error = %e, "telemetry flush failed"),
        Ok(Err(e)) => tracing::warn!(signal, error = %e, "telemetry flush failed"),
        Err(_) => tracing::warn!(
            signal,
            timeout = ?FLUSH_TIMEOUT,
            "telemetry flush timed out; what the exporter still held is lost"
        ),
    }
}

/// Keeps the trace pipeline alive. [`TracingGuard::flush`] pushes the last spans at
/// shutdown; dropping it unflushed stops the pipeline too, without a report.
#[derive(Debug, Default)]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports the spans still queued and stops the trace pipeline, within
    /// [`FLUSH_TIMEOUT`]; logs the outcome (`telemetry flushed`). Nothing to do without
    /// OTLP.
    pub async fn flush(mut self) {
        if let Some(provider) = self.provider.take() {
            flush_bounded("spans", move || {
                provider.shutdown_with_timeout(FLUSH_TIMEOUT)
            })
            .await;
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: logs (`config.log_format`), and span export when
/// `config.otlp_traces` is set. Safe to call more than once (later calls do nothing).
/// Call inside a Tokio runtime: the exporter's connections live on it.
pub fn init(config: &Config) -> TracingGuard {
    // The OpenTelemetry SDK's own lifecycle lines ("MeterProvider dropped, initiating
    // shutdown") say nothing to an operator: warnings only, unless `RUST_LOG` names it.
    const QUIET_SDK: &str = "opentelemetry_sdk=warn,opentelemetry=warn";
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty())
        .and_then(|spec| {
            let spec = if spec.contains("opentelemetry") {
                spec
            } else {
                format!("{QUIET_SDK},{spec}")
            };
            EnvFilter::try_new(spec).ok()
        })
        .unwrap_or_else(|| {
            EnvFilter::new(format!(
                "info,sqlx=warn,tower_http=warn,h2=warn,tonic=warn,hyper=warn,{QUIET_SDK}"
            ))
        });
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let mut guard = TracingGuard::default();
    let otel = config.otlp_traces.as_ref().and_then(|target| {
        let exporter = match otlp::span_exporter(target) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("cron-scheduler: OTLP span exporter ({target}) not started: {e}");
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(config))
            .build();
        let tracer = provider.tracer("cron-scheduler");
        guard.provider = Some(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    });
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if json {
        registry
            .with(
                fmt::layer()
                    .fmt_fields(fmt::format::JsonFields::new())
                    .event_format(WithTraceIds(
                        fmt::format()
                            .json()
                            .flatten_event(true)
                            .with_current_span(true)
                            .with_span_list(false),
                    )),
            )
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    guard
}

/// A JSON event format with the OpenTelemetry ids of the span an event happens in: the
/// inner format's JSON object, plus `trace_id` and `span_id` (lower-case hex, as trace
/// backends show them) when the event is inside a span exported over OTLP. A log line and
/// the trace it belongs to are then one search apart.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = otel_ids(ctx) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(512);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

/// The trace and span id of the span an event happens in (its explicit parent, else the
/// current span), when that span has a valid OpenTelemetry context: only while spans are
/// exported (the OpenTelemetry layer is installed).
fn otel_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(TraceId, SpanId)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let id = ctx.event_scope()?.next()?.id();
    // No extension of the span is held here, as `get_otel_context` requires.
    let cx = tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(&id, d))?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
}

/// How long the OTLP reader waits between pushes when `OTEL_METRIC_EXPORT_INTERVAL` is unset.
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
