//! Per-request telemetry and `/metrics`.
//!
//! Every request gets a span `http` (method, route template, status) whose parent is the
//! caller's `traceparent` when one is sent, and counts in `scheduler_http_requests_total`
//! and `scheduler_http_request_duration_seconds` by route (the template, so ids do not
//! explode the label set).

use std::time::Instant;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use opentelemetry::{KeyValue, propagation::Extractor};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus text exposition of this replica's metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.telemetry.render(),
    )
        .into_response()
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The middleware: span, metrics.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |m| m.as_str().to_owned());
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
        otel.kind = "server",
    );
    let _ = span.set_parent(parent);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    let metrics = &state.telemetry.metrics;
    metrics.http_requests.add(
        1,
        &[
            KeyValue::new("route", route.clone()),
            KeyValue::new("status", i64::from(status)),
        ],
    );
    metrics.http_duration.record(
        started.elapsed().as_secs_f64(),
        &[KeyValue::new("route", route)],
    );
    response
}
