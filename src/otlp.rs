//! Where OTLP telemetry goes and how it gets there: the standard `OTEL_EXPORTER_OTLP_*`
//! variables resolved per signal into an [`OtlpTarget`], and the exporters built from one.
//!
//! - **Protocol**: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `..._METRICS_PROTOCOL`, else
//!   `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`. `http/protobuf` is the other choice;
//!   `http/json` and anything else refuse to start (a collector that silently receives
//!   nothing is worse than a replica that does not start).
//! - **Endpoint**: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT` is used
//!   as given; else `OTEL_EXPORTER_OTLP_ENDPOINT`, as given for gRPC and with `/v1/traces`
//!   or `/v1/metrics` appended for HTTP (the OTLP exporter specification's rule). No
//!   endpoint at all: that signal is not exported (unlike the specification's
//!   `localhost` default: a replica without a collector should not retry one forever).
//! - **TLS**: an `https://` endpoint is reached over TLS by rustls (ring), trusting the
//!   bundled webpki (Mozilla) roots, for gRPC (tonic) and HTTP (reqwest) alike.
//!
//! Other standard variables (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`,
//! `..._COMPRESSION` and their per-signal forms) are read by the OpenTelemetry exporter
//! itself.
//!
//! OTLP/HTTP is sent by the service's own reqwest client, on the Tokio runtime that built
//! the exporter: the SDK exports from threads of its own, where reqwest cannot run.

use std::{fmt, time::Duration};

use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
    tonic_types::transport::ClientTlsConfig,
};

/// How a signal is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`grpc`), the default.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`).
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signal's destination: the protocol and the URL the exporter is given (for HTTP,
/// the full URL with its `/v1/...` path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    pub protocol: OtlpProtocol,
    pub url: String,
}

impl OtlpTarget {
    pub fn grpc(url: impl Into<String>) -> Self {
        Self {
            protocol: OtlpProtocol::Grpc,
            url: url.into(),
        }
    }

    /// OTLP/HTTP to `url` exactly (include the `/v1/traces` or `/v1/metrics` path).
    pub fn http(url: impl Into<String>) -> Self {
        Self {
            protocol: OtlpProtocol::HttpProtobuf,
            url: url.into(),
        }
    }

    fn is_https(&self) -> bool {
        self.url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }
}

impl fmt::Display for OtlpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.url)
    }
}

/// The signals this service exports over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn endpoint_var(self) -> &'static str {
        match self {
            Self::Traces => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            Self::Metrics => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        }
    }

    fn protocol_var(self) -> &'static str {
        match self {
            Self::Traces => "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            Self::Metrics => "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        }
    }

    /// The path OTLP/HTTP appends to a base endpoint.
    fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
        }
    }
}

/// A variable that does not resolve: its name and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    pub var: &'static str,
    pub message: String,
}

/// `signal`'s destination from the standard variables read through `get` (an empty value
/// counts as unset, as the specification says); `None` when no endpoint is set.
pub fn resolve(
    signal: Signal,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<OtlpTarget>, ResolveError> {
    let get = |var: &'static str| {
        get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(|v| (var, v))
    };
    let protocol = match get(signal.protocol_var()).or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        None => OtlpProtocol::Grpc,
        Some((var, value)) => parse_protocol(&value).map_err(|message| ResolveError {
            var,
            message: format!("{value:?} is not supported; {message}"),
        })?,
    };
    let (var, url) = match (get(signal.endpoint_var()), protocol) {
        (Some(specific), _) => specific,
        (None, OtlpProtocol::Grpc) => match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(base) => base,
            None => return Ok(None),
        },
        (None, OtlpProtocol::HttpProtobuf) => match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some((var, base)) => (
                var,
                format!("{}{}", base.trim_end_matches('/'), signal.http_path()),
            ),
            None => return Ok(None),
        },
    };
    check_url(&url).map_err(|message| ResolveError {
        var,
        message: format!("{url:?} {message}"),
    })?;
    Ok(Some(OtlpTarget { protocol, url }))
}

fn parse_protocol(value: &str) -> Result<OtlpProtocol, &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Err("this build sends grpc or http/protobuf (http/json is not built in)"),
        _ => Err("expected grpc or http/protobuf"),
    }
}

fn check_url(raw: &str) -> Result<(), &'static str> {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err("must be an http:// or https:// URL with a host"),
    }
}

/// One exporter for `target` from a signal's builder: the span and metric builders differ
/// in type only, so this is written once.
macro_rules! build_exporter {
    ($builder:expr, $target:expr) => {{
        let target: &OtlpTarget = $target;
        match target.protocol {
            OtlpProtocol::Grpc => {
                let grpc = $builder.with_tonic().with_endpoint(target.url.clone());
                if target.is_https() {
                    grpc.with_tls_config(tls_config())
                } else {
                    grpc
                }
                .build()
            }
            OtlpProtocol::HttpProtobuf => $builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(target.url.clone())
                .with_http_client(HttpClient::new()?)
                .build(),
        }
    }};
}

/// The span exporter for `target`. Call inside the Tokio runtime that is to carry the
/// exports (gRPC channels and the HTTP client live on it).
pub fn span_exporter(
    target: &OtlpTarget,
) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    build_exporter!(SpanExporter::builder(), target)
}

/// The metric exporter for `target` (cumulative temporality, as Prometheus expects).
/// Call inside the Tokio runtime that is to carry the exports.
pub fn metric_exporter(
    target: &OtlpTarget,
) -> Result<MetricExporter, opentelemetry_otlp::ExporterBuildError> {
    build_exporter!(MetricExporter::builder(), target)
}

/// TLS for `https://` gRPC endpoints (tonic applies it only to those): the webpki roots,
/// as reqwest trusts them. Without roots tonic would trust no server at all.
fn tls_config() -> ClientTlsConfig {
    ClientTlsConfig::new().with_webpki_roots()
}

/// The time limit of one OTLP/HTTP request (the specification's default export timeout).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest collector answer read (the SDK's own clients stop at 4 MiB too).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// OTLP/HTTP over the service's reqwest (rustls, webpki roots). The SDK calls it from its
/// own export threads, outside any Tokio runtime, so each request runs as a task on the
/// runtime captured when the exporter was built.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient {
    fn new() -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            opentelemetry_otlp::ExporterBuildError::InternalFailure(
                "the OTLP/HTTP exporter must be built inside a Tokio runtime".into(),
            )
        })?;
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("cron-scheduler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                opentelemetry_otlp::ExporterBuildError::InternalFailure(format!(
                    "cannot build the OTLP/HTTP client: {e}"
                ))
            })?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(opentelemetry_http::HttpError::from(
                        "OTLP collector answer larger than 4 MiB",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            let mut answer = http::Response::new(bytes::Bytes::from(body));
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        });
        task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolved(
        signal: Signal,
        pairs: &[(&str, &str)],
    ) -> Result<Option<OtlpTarget>, ResolveError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(signal, &|k| map.get(k).cloned())
    }

    #[test]
    fn no_endpoint_no_export() {
        assert_eq!(resolved(Signal::Traces, &[]), Ok(None));
        assert_eq!(
            resolved(
                Signal::Metrics,
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]
            ),
            Ok(None)
        );
        assert_eq!(
            resolved(Signal::Metrics, &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            Ok(None),
            "an empty value is unset"
        );
    }

    #[test]
    fn grpc_is_the_default_and_uses_the_endpoint_as_given() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")];
        for signal in [Signal::Traces, Signal::Metrics] {
            assert_eq!(
                resolved(signal, &base),
                Ok(Some(OtlpTarget::grpc("http://collector:4317")))
            );
        }
        assert_eq!(
            resolved(
                Signal::Traces,
                &[
                    (
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                        "https://collector.example:4317"
                    ),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC"),
                ]
            ),
            Ok(Some(OtlpTarget::grpc("https://collector.example:4317")))
        );
    }

    #[test]
    fn http_appends_the_signal_path_to_the_base_endpoint_only() {
        let base = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ];
        assert_eq!(
            resolved(Signal::Traces, &base),
            Ok(Some(OtlpTarget::http("http://collector:4318/v1/traces")))
        );
        assert_eq!(
            resolved(Signal::Metrics, &base),
            Ok(Some(OtlpTarget::http("http://collector:4318/v1/metrics")))
        );
        // A base with a path keeps it (a collector behind a path prefix).
        assert_eq!(
            resolved(
                Signal::Traces,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://gw.example/otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ]
            ),
            Ok(Some(OtlpTarget::http("https://gw.example/otlp/v1/traces")))
        );
        // A signal's own endpoint is used as given.
        let mut specific = base.to_vec();
        specific.push((
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://tempo:4318/custom",
        ));
        assert_eq!(
            resolved(Signal::Traces, &specific),
            Ok(Some(OtlpTarget::http("http://tempo:4318/custom")))
        );
        assert_eq!(
            resolved(Signal::Metrics, &specific),
            Ok(Some(OtlpTarget::http("http://collector:4318/v1/metrics")))
        );
    }

    #[test]
    fn a_signals_protocol_overrides_the_common_one() {
        let pairs = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://collector:4317",
            ),
        ];
        assert_eq!(
            resolved(Signal::Traces, &pairs),
            Ok(Some(OtlpTarget::http("http://collector:4318/v1/traces")))
        );
        assert_eq!(
            resolved(Signal::Metrics, &pairs),
            Ok(Some(OtlpTarget::grpc("http://collector:4317")))
        );
    }

    #[test]
    fn unsupported_protocols_and_bad_endpoints_name_their_variable() {
        let err = resolved(
            Signal::Traces,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
        assert!(err.message.contains("http/protobuf"), "{}", err.message);
        let err = resolved(
            Signal::Metrics,
            &[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "udp")],
        )
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL");
        assert!(err.message.contains("\"udp\""), "{}", err.message);
        let err = resolved(
            Signal::Traces,
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317")],
        )
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let err = resolved(
            Signal::Metrics,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")],
        )
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    /// An `https://` endpoint builds for both protocols: the TLS features are compiled in
    /// (without them tonic refuses HTTPS endpoints at build time).
    #[tokio::test]
    async fn https_endpoints_build_for_both_protocols() {
        for target in [
            OtlpTarget::grpc("https://collector.example:4317"),
            OtlpTarget::http("https://collector.example:4318/v1/traces"),
        ] {
            let spans = span_exporter(&target);
            assert!(spans.is_ok(), "{target}: {:?}", spans.err());
            let metrics = metric_exporter(&target);
            assert!(metrics.is_ok(), "{target}: {:?}", metrics.err());
        }
    }
}
