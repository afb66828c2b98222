//! Configuration: one typed struct, read from the environment (prefix `SCHEDULER_`),
//! validated once at start-up.
//!
//! Every field is documented here and nowhere else; the README's configuration table is
//! generated from the same names. A value that does not parse stops the process with a
//! message naming the variable and what it accepts: a scheduler that starts with a
//! half-understood configuration is worse than one that does not start.

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

use url::Url;

use crate::{
    credentials::{AuthSwitch, JwtSettings, TokenSet},
    kinds::{CatchupPolicy, OverlapPolicy},
    net::IpNet,
    otlp::{self, OtlpTarget, Signal},
};

/// A configuration error: which variable, and what was wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

/// A secret string: never printed by `Debug`, so it cannot leak into logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, pretty otherwise.
    Auto,
    Json,
    Pretty,
}

/// Who may store workflow versions (`SCHEDULER_WORKFLOW_WRITERS`) when authentication is
/// on. The catalogue is shared: a version stored by one user is what every schedule naming
/// it runs, under its own user's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowWriters {
    /// Admin tokens only (the default).
    Admin,
    /// Any authenticated user.
    Any,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `SCHEDULER_HOST`: address the HTTP API listens on. Default `0.0.0.0` when requests
    /// must authenticate, and `127.0.0.1` when authentication is off (an open API is not
    /// served beyond this machine unless `SCHEDULER_HOST` asks for it).
    pub host: IpAddr,
    /// Whether `host` is the loopback default chosen because authentication is off.
    pub host_loopback_default: bool,
    /// `SCHEDULER_PORT`: port of the HTTP API. Default `8001`.
    pub port: u16,
    /// `SCHEDULER_RELOAD`: accepted for compatibility with the seed service; ignored.
    pub reload: bool,
    /// `SCHEDULER_DATABASE_URL` (or the file named by `SCHEDULER_DATABASE_URL_FILE`), else
    /// `DATABASE_URL`: PostgreSQL URL. Unset: the embedded
    /// default (a local cluster under `data_dir`).
    pub database_url: Option<Secret>,
    /// `SCHEDULER_DATA_DIR`: where the embedded cluster lives. Default `./.cron-scheduler`.
    pub data_dir: PathBuf,
    /// `SCHEDULER_PG_BIN_DIR`: directory holding `initdb`, `pg_ctl` and `postgres` for the
    /// embedded cluster. Default: the newest `/usr/lib/postgresql/*/bin`, else `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
    /// `SCHEDULER_DB_MAX_CONNECTIONS`: size of the connection pool. Default `10`.
    pub db_max_connections: u32,
    /// `SCHEDULER_DB_ACQUIRE_TIMEOUT_MS`: how long a request waits for a pooled
    /// connection before answering 503. Default `3000`.
    pub db_acquire_timeout: Duration,
    /// `SCHEDULER_EXECUTOR_URL`: base URL of the Executor (`{url}/runs`).
    pub executor_url: Option<Url>,
    /// `SCHEDULER_EXECUTOR_TOKEN` (or the file named by `SCHEDULER_EXECUTOR_TOKEN_FILE`):
    /// bearer token sent to the Executor.
    pub executor_token: Option<Secret>,
    /// `SCHEDULER_EXECUTOR_TIMEOUT_MS`: time limit of one launch request. Default `10000`.
    pub executor_timeout: Duration,
    /// `SCHEDULER_LAUNCH_RETRY_FOR`: how long after its `fire_at` a run's launch is retried
    /// (connection errors, timeouts, 429, 5xx) before it ends `failed_launch`
    /// (`attempts_exhausted`). A duration: `1h` (default), `30m`, `90s`, `2d`, or seconds.
    pub launch_retry_for: Duration,
    /// `SCHEDULER_LAUNCH_BACKOFF_MAX_MS`: longest delay between two launch attempts (a
    /// longer `Retry-After` is honoured). Default `60000`.
    pub launch_backoff_max: Duration,
    /// `SCHEDULER_ARM_WINDOW_MS`: how far ahead of its `fire_at` a replica claims a run and
    /// holds it, to send it at its `fire_at` with the database work already done. Default
    /// `1000`; `0` claims runs only when due.
    pub arm_window: Duration,
    /// `SCHEDULER_MAX_QUEUED`: runs of a `queue` schedule that may wait at most; past it a
    /// due tick ends `skipped` (reason `queue_full`). Default `100`.
    pub max_queued: u32,
    /// `SCHEDULER_LAUNCH_BACKOFF_MS`: delay before the first retry (doubling, with jitter,
    /// up to `SCHEDULER_LAUNCH_BACKOFF_MAX_MS`). Default `1000`.
    pub launch_backoff: Duration,
    /// `SCHEDULER_LAUNCH_CONCURRENCY`: launches in flight per replica. Default `128`.
    pub launch_concurrency: usize,
    /// `SCHEDULER_RUN_TIMEOUT_MS`: a running run with no completion report after this long
    /// ends `timed_out`. Default `3600000` (1 h).
    pub run_timeout: Duration,
    /// `SCHEDULER_CLUSTER_NAME`: replicas with the same name form one fleet (one leader).
    /// Default `default`.
    pub cluster_name: String,
    /// `SCHEDULER_NODE_ID`: this replica's id. Default: the host name.
    pub node_id: String,
    /// `SCHEDULER_WORKER_AUTOSTART`: switch the fleet's worker on at start-up when it has
    /// never been switched. Default `true`.
    pub worker_autostart: bool,
    /// `SCHEDULER_LEADER_LEASE_MS`: the leader's lease. Default `5000`.
    pub leader_lease: Duration,
    /// `SCHEDULER_LOOKAHEAD_MS`: how far ahead ticks are materialized. Default `2500` (half a
    /// second off the whole seconds, so materializing ticks that fall on whole seconds does
    /// not compete with sending them).
    pub lookahead: Duration,
    /// `SCHEDULER_COHORT_LOOKAHEAD_MS`: how far ahead the ticks of sparse schedules may be
    /// written at most (a tick is written half the gap to the next one ahead, at least
    /// the lookahead): big cohorts due at one instant are written before it. Default
    /// `600000` (10 minutes); at least `SCHEDULER_LOOKAHEAD_MS`.
    pub cohort_lookahead: Duration,
    /// `SCHEDULER_MISFIRE_GRACE_MS`: a tick older than this when first seen is missed.
    /// It must cover a failover, `SCHEDULER_LEADER_LEASE_MS + SCHEDULER_LOOKAHEAD_MS`
    /// (a shorter value is refused at start-up); unset, it is the larger of that sum and
    /// 5000 (7500 with the defaults).
    pub misfire_grace: Duration,
    /// `SCHEDULER_MAX_CATCHUP_RUNS`: bound on runs fired for missed ticks. Default `10`.
    pub max_catchup_runs: u32,
    /// `SCHEDULER_CATCHUP_SPREAD_MS`: window over which `spread` catch-up runs are spaced.
    /// Default `60000`.
    pub catchup_spread: Duration,
    /// `SCHEDULER_RUN_RETENTION`: how long a finished run is kept after it ended, as `30d`,
    /// `12h`, `2m`, `90s` or plain seconds (at most 3650 days); `0` keeps runs forever
    /// (`None`). A run in flight is never removed. Default `30d`. See
    /// [`crate::fleet::retention`].
    pub run_retention: Option<Duration>,
    /// `SCHEDULER_DEFAULT_OVERLAP_POLICY`: policy of a schedule that names none.
    /// Default `skip`.
    pub default_overlap_policy: OverlapPolicy,
    /// `SCHEDULER_DEFAULT_CATCHUP_POLICY`: policy of a schedule that names none.
    /// Default `fire_immediately`.
    pub default_catchup_policy: CatchupPolicy,
    /// `SCHEDULER_MAX_BODY_BYTES`: largest request body. Default `1048576` (1 MiB).
    pub max_body_bytes: usize,
    /// `SCHEDULER_REQUEST_TIMEOUT_MS`: time limit for one API request. Default `30000`.
    pub request_timeout: Duration,
    /// `SCHEDULER_SHUTDOWN_GRACE_MS`: how long shutdown waits for in-flight work.
    /// Default `10000`.
    pub shutdown_grace: Duration,
    /// `SCHEDULER_LOG_FORMAT`: `auto`, `json` or `pretty`. Default `auto`.
    pub log_format: LogFormat,
    /// Where spans go over OTLP: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as given), else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://otel-collector:4317`; for HTTP with
    /// `/v1/traces` appended), sent by `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (default) or `http/protobuf`; `https://`
    /// endpoints use TLS. No endpoint, or `OTEL_SDK_DISABLED=true`: no span export. See
    /// [`crate::otlp`].
    pub otlp_traces: Option<OtlpTarget>,
    /// Where metrics go over OTLP: as `otlp_traces`, with the `METRICS` variables and
    /// `/v1/metrics`.
    pub otlp_metrics: Option<OtlpTarget>,
    /// `OTEL_SERVICE_NAME`: the service name on exported telemetry. Default `cron-scheduler`.
    pub otel_service_name: String,
    /// `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between OTLP metric pushes. Default `60000`.
    pub otlp_metric_interval: Duration,

    // Security: credentials, rate limits, limits on what clients control (README,
    // "Security"; `api::auth`, `api::rate_limit`, `api::server`).
    /// `SCHEDULER_AUTH`: `on` or `off`. Unset: on when a token or JWT key is configured;
    /// with none, off (loudly) for the embedded default and a start-up error when a
    /// database URL is set. See [`Config::auth_enabled`].
    pub auth: AuthSwitch,
    /// `SCHEDULER_API_TOKENS` and/or the file named by `SCHEDULER_API_TOKENS_FILE` (merged):
    /// `admin:<token>`, `user:<user_id>:<token>`, `executor:<token>`, separated by commas
    /// or newlines. Kept only as SHA-256 digests.
    pub api_tokens: TokenSet,
    /// `SCHEDULER_JWT_HS256_SECRET` (or `SCHEDULER_JWT_HS256_SECRET_FILE`), or
    /// `SCHEDULER_JWT_RS256_PUBLIC_KEY_FILE`: JWTs signed with this key are accepted too.
    /// `SCHEDULER_JWT_USER_CLAIM` (default `sub`) names the user-id claim;
    /// `SCHEDULER_JWT_AUDIENCE` and `SCHEDULER_JWT_ISSUER`, when set, must match.
    pub jwt: Option<JwtSettings>,
    /// `SCHEDULER_METRICS_PUBLIC`: serve `/metrics` without a token. Default `true`.
    pub metrics_public: bool,
    /// `SCHEDULER_RATE_LIMIT_PER_SEC`: requests per second per token (per client address
    /// when unauthenticated), per replica; `0` turns rate limiting off. Default `50`.
    pub rate_limit_per_sec: u32,
    /// `SCHEDULER_RATE_LIMIT_BURST`: requests a caller may send at once. Default `100`.
    pub rate_limit_burst: u32,
    /// `SCHEDULER_TRUSTED_PROXIES`: addresses or CIDR blocks (comma-separated) whose
    /// `X-Forwarded-For` is believed. Default none: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `SCHEDULER_MAX_DAG_BYTES`: largest workflow DAG, as compact JSON. Default `262144`.
    pub max_dag_bytes: usize,
    /// `SCHEDULER_HEADER_READ_TIMEOUT_MS`: time a client has to send a request's headers,
    /// and the longest an idle kept-alive connection stays open. Default `10000`.
    pub header_read_timeout: Duration,
    /// `SCHEDULER_WORKFLOW_WRITERS`: `admin` (default) or `any`; see [`WorkflowWriters`].
    pub workflow_writers: WorkflowWriters,
    /// `SCHEDULER_DAG_CACHE_BYTES`: memory each replica's launcher keeps parsed DAGs in,
    /// least recently used first out. Default `67108864` (64 MiB); from 0 (no cache: every
    /// launch reads its DAG) to 17179869184 (16 GiB).
    pub dag_cache_bytes: u64,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup` (tests pass a map instead of the process
    /// environment). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&|k| lookup(k).filter(|v| !v.trim().is_empty()));
        let cfg = Config {
            host: env.parse("SCHEDULER_HOST", IpAddr::from([0, 0, 0, 0]))?,
            host_loopback_default: false,
            port: env.parse_with("SCHEDULER_PORT", 8001, |v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or("a port number from 1 to 65535")
            })?,
            reload: env.bool("SCHEDULER_RELOAD", false)?,
            database_url: env
                .secret("SCHEDULER_DATABASE_URL", "SCHEDULER_DATABASE_URL_FILE")?
                .map(|s| s.0)
                .or_else(|| env.get("DATABASE_URL"))
                .map(|url| validate_database_url(&url).map(|()| Secret(url)))
                .transpose()?,
            data_dir: env
                .get("SCHEDULER_DATA_DIR")
                .map_or_else(|| PathBuf::from(".cron-scheduler"), PathBuf::from),
            pg_bin_dir: env.get("SCHEDULER_PG_BIN_DIR").map(PathBuf::from),
            db_max_connections: env.parse_with("SCHEDULER_DB_MAX_CONNECTIONS", 10, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("a whole number from 1 to 1000")
            })?,
            db_acquire_timeout: env.millis("SCHEDULER_DB_ACQUIRE_TIMEOUT_MS", 3000)?,
            executor_url: env
                .get("SCHEDULER_EXECUTOR_URL")
                .map(|v| parse_http_url("SCHEDULER_EXECUTOR_URL", &v))
                .transpose()?,
            executor_token: env
                .secret("SCHEDULER_EXECUTOR_TOKEN", "SCHEDULER_EXECUTOR_TOKEN_FILE")?,
            executor_timeout: env.millis("SCHEDULER_EXECUTOR_TIMEOUT_MS", 10_000)?,
            launch_retry_for: env
                .duration("SCHEDULER_LAUNCH_RETRY_FOR", Duration::from_secs(3600))?,
            launch_backoff_max: env.millis("SCHEDULER_LAUNCH_BACKOFF_MAX_MS", 60_000)?,
            arm_window: env.parse_with(
                "SCHEDULER_ARM_WINDOW_MS",
                Duration::from_millis(1000),
                |v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n <= 10_000)
                        .map(Duration::from_millis)
                        .ok_or("milliseconds from 0 to 10000")
                },
            )?,
            max_queued: env.parse_with("SCHEDULER_MAX_QUEUED", 100, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or("a whole number from 1 to 100000")
            })?,
            launch_backoff: env.millis("SCHEDULER_LAUNCH_BACKOFF_MS", 1000)?,
            launch_concurrency: env.parse_with("SCHEDULER_LAUNCH_CONCURRENCY", 128, |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or("a whole number from 1 to 10000")
            })?,
            run_timeout: env.millis("SCHEDULER_RUN_TIMEOUT_MS", 3_600_000)?,
            cluster_name: env
                .get("SCHEDULER_CLUSTER_NAME")
                .unwrap_or_else(|| "default".into()),
            node_id: match env.get("SCHEDULER_NODE_ID") {
                Some(id) => id,
                None => nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "node".into()),
            },
            worker_autostart: env.bool("SCHEDULER_WORKER_AUTOSTART", true)?,
            leader_lease: env.millis("SCHEDULER_LEADER_LEASE_MS", 5000)?,
            lookahead: env.millis("SCHEDULER_LOOKAHEAD_MS", 2500)?,
            cohort_lookahead: env.millis("SCHEDULER_COHORT_LOOKAHEAD_MS", 600_000)?,
            // Derived below from the lease and the lookahead when unset.
            misfire_grace: env.millis("SCHEDULER_MISFIRE_GRACE_MS", 0)?,
            max_catchup_runs: env.parse_with("SCHEDULER_MAX_CATCHUP_RUNS", 10, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 100_000)
                    .ok_or("a whole number from 0 to 100000")
            })?,
            catchup_spread: env.millis("SCHEDULER_CATCHUP_SPREAD_MS", 60_000)?,
            run_retention: env.parse_with(
                "SCHEDULER_RUN_RETENTION",
                Some(DEFAULT_RUN_RETENTION),
                parse_retention,
            )?,
            default_overlap_policy: env.parse_with(
                "SCHEDULER_DEFAULT_OVERLAP_POLICY",
                OverlapPolicy::Skip,
                |v| v.parse().map_err(|_| "one of allow, skip, queue"),
            )?,
            default_catchup_policy: env.parse_with(
                "SCHEDULER_DEFAULT_CATCHUP_POLICY",
                CatchupPolicy::FireImmediately,
                |v| {
                    v.parse()
                        .map_err(|_| "one of none, fire_immediately, spread")
                },
            )?,
            max_body_bytes: env.parse_with("SCHEDULER_MAX_BODY_BYTES", 1 << 20, |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1024..=64 << 20).contains(n))
                    .ok_or("a byte count from 1024 to 67108864")
            })?,
            request_timeout: env.millis("SCHEDULER_REQUEST_TIMEOUT_MS", 30_000)?,
            shutdown_grace: env.millis("SCHEDULER_SHUTDOWN_GRACE_MS", 10_000)?,
            log_format: env.parse_with("SCHEDULER_LOG_FORMAT", LogFormat::Auto, |v| {
                match v.to_ascii_lowercase().as_str() {
                    "auto" => Ok(LogFormat::Auto),
                    "json" => Ok(LogFormat::Json),
                    "pretty" => Ok(LogFormat::Pretty),
                    _ => Err("one of auto, json, pretty"),
                }
            })?,
            otlp_traces: env.otlp(Signal::Traces)?,
            otlp_metrics: env.otlp(Signal::Metrics)?,
            otel_service_name: env
                .get("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| "cron-scheduler".into()),
            otlp_metric_interval: env.millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,

            auth: env.parse_with("SCHEDULER_AUTH", AuthSwitch::Auto, |v| {
                match v.to_ascii_lowercase().as_str() {
                    "on" | "true" => Ok(AuthSwitch::On),
                    "off" | "false" => Ok(AuthSwitch::Off),
                    _ => Err("on or off"),
                }
            })?,
            api_tokens: env.api_tokens()?,
            jwt: env.jwt()?,
            metrics_public: env.bool("SCHEDULER_METRICS_PUBLIC", true)?,
            rate_limit_per_sec: env.parse_with("SCHEDULER_RATE_LIMIT_PER_SEC", 50, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 1_000_000)
                    .ok_or("a whole number from 0 (off) to 1000000")
            })?,
            rate_limit_burst: env.parse_with("SCHEDULER_RATE_LIMIT_BURST", 100, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or("a whole number from 1 to 1000000")
            })?,
            trusted_proxies: match env.get("SCHEDULER_TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, String>>()
                    .map_err(|message| ConfigError {
                        var: "SCHEDULER_TRUSTED_PROXIES",
                        message,
                    })?,
            },
            max_dag_bytes: env.parse_with("SCHEDULER_MAX_DAG_BYTES", 256 << 10, |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (2..=64 << 20).contains(n))
                    .ok_or("a byte count from 2 to 67108864")
            })?,
            header_read_timeout: env.millis("SCHEDULER_HEADER_READ_TIMEOUT_MS", 10_000)?,
            workflow_writers: env.parse_with(
                "SCHEDULER_WORKFLOW_WRITERS",
                WorkflowWriters::Admin,
                |v| match v.to_ascii_lowercase().as_str() {
                    "admin" => Ok(WorkflowWriters::Admin),
                    "any" => Ok(WorkflowWriters::Any),
                    _ => Err("admin (only admin tokens store workflow versions) or any"),
                },
            )?,
            dag_cache_bytes: env.parse_with(
                "SCHEDULER_DAG_CACHE_BYTES",
                DEFAULT_DAG_CACHE_BYTES,
                |v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n <= 16 << 30)
                        .ok_or("a byte count from 0 to 17179869184")
                },
            )?,
        };
        let mut cfg = cfg;
        if env.get("SCHEDULER_MISFIRE_GRACE_MS").is_none() {
            cfg.misfire_grace = cfg.failover_cover().max(Duration::from_millis(5000));
        }
        if env.get("SCHEDULER_HOST").is_none() && matches!(cfg.auth_enabled(), Ok(false)) {
            cfg.host = IpAddr::from([127, 0, 0, 1]);
            cfg.host_loopback_default = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_name.len() > 128 {
            return Err(ConfigError {
                var: "SCHEDULER_CLUSTER_NAME",
                message: "at most 128 characters".into(),
            });
        }
        if self.node_id.len() > 128 {
            return Err(ConfigError {
                var: "SCHEDULER_NODE_ID",
                message: "at most 128 characters".into(),
            });
        }
        if self.cohort_lookahead < self.lookahead {
            return Err(ConfigError {
                var: "SCHEDULER_COHORT_LOOKAHEAD_MS",
                message: "must not be below SCHEDULER_LOOKAHEAD_MS".into(),
            });
        }
        if self.launch_backoff_max < self.launch_backoff {
            return Err(ConfigError {
                var: "SCHEDULER_LAUNCH_BACKOFF_MAX_MS",
                message: "must not be below SCHEDULER_LAUNCH_BACKOFF_MS".into(),
            });
        }
        if self.leader_lease < Duration::from_millis(1000) {
            return Err(ConfigError {
                var: "SCHEDULER_LEADER_LEASE_MS",
                message: "at least 1000 (the lease is enforced by PostgreSQL timeouts)".into(),
            });
        }
        let cover = self.failover_cover();
        if self.misfire_grace < cover {
            return Err(ConfigError {
                var: "SCHEDULER_MISFIRE_GRACE_MS",
                message: format!(
                    "{} is shorter than a failover: it must be at least \
                     SCHEDULER_LEADER_LEASE_MS + SCHEDULER_LOOKAHEAD_MS = {} + {} = {} (or leave \
                     it unset to derive it), otherwise ticks due while a new leader takes \
                     over end `missed`",
                    self.misfire_grace.as_millis(),
                    self.leader_lease.as_millis(),
                    self.lookahead.as_millis(),
                    cover.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// The longest a tick can wait for a leader across a failover: the lease (until a
    /// follower may take over) plus the lookahead (how early the dead leader may already
    /// have moved a schedule past ticks it had not yet written). Conservative: the
    /// misfire grace must be at least this.
    pub fn failover_cover(&self) -> Duration {
        self.leader_lease + self.lookahead
    }
}

impl Config {
    /// Whether requests must authenticate, decided once at start-up:
    /// - `SCHEDULER_AUTH=off`: no (every caller acts as admin);
    /// - `SCHEDULER_AUTH=on`: yes, and a token or JWT key must be configured;
    /// - unset: yes when a token or JWT key is configured; with none, no for the embedded
    ///   default (no database URL: a local playground; `serve` warns loudly), and an
    ///   error with a database URL, so a shared deployment never starts open by accident.
    pub fn auth_enabled(&self) -> Result<bool, ConfigError> {
        let credentials = !self.api_tokens.is_empty() || self.jwt.is_some();
        match self.auth {
            AuthSwitch::Off => Ok(false),
            AuthSwitch::On | AuthSwitch::Auto if credentials => Ok(true),
            AuthSwitch::On => Err(ConfigError {
                var: "SCHEDULER_API_TOKENS",
                message: "SCHEDULER_AUTH=on but no credential is configured: set \
                          SCHEDULER_API_TOKENS, SCHEDULER_API_TOKENS_FILE or a JWT key"
                    .into(),
            }),
            AuthSwitch::Auto if self.database_url.is_none() => Ok(false),
            AuthSwitch::Auto => Err(ConfigError {
                var: "SCHEDULER_API_TOKENS",
                message: "a database URL is set but no API credential is: refusing to serve \
                          an open API. Set SCHEDULER_API_TOKENS (or SCHEDULER_API_TOKENS_FILE, \
                          or a JWT key), or SCHEDULER_AUTH=off to serve without \
                          authentication"
                    .into(),
            }),
        }
    }
}

/// Typed reads over a lookup function, each failure naming its variable.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var)
    }

    fn parse_with<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => parse(raw.trim()).map_err(|expected| ConfigError {
                var,
                message: format!("{raw:?} is not valid; expected {expected}"),
            }),
        }
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        self.parse_with(var, default, |v| {
            v.parse().map_err(|_| "a value of the documented form")
        })
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parse_with(var, default, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("true or false"),
        })
    }

    /// A duration: a whole number with a unit (`s`, `m`, `h`, `d`), or plain seconds.
    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        self.parse_with(var, default, |v| {
            parse_duration(v).ok_or("a duration such as 90s, 30m, 1h or 7d (or seconds)")
        })
    }

    fn millis(&self, var: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse_with(var, Duration::from_millis(default_ms), |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400_000).contains(n))
                .map(Duration::from_millis)
                .ok_or("milliseconds from 1 to 86400000")
        })
    }
}

/// The OTLP destinations (`crate::otlp`), read from the standard variables.
impl Env<'_> {
    /// `signal`'s OTLP target; `None` when no endpoint is set or `OTEL_SDK_DISABLED` is
    /// true. A protocol is checked even then: a misspelt one is a mistake either way.
    fn otlp(&self, signal: Signal) -> Result<Option<OtlpTarget>, ConfigError> {
        let target = otlp::resolve(signal, self.0)
            .map_err(|otlp::ResolveError { var, message }| ConfigError { var, message })?;
        let disabled = self.bool("OTEL_SDK_DISABLED", false)?;
        Ok(target.filter(|_| !disabled))
    }
}

/// `90s`, `30m`, `12h`, `7d` (units in either case), or plain seconds; at most 100 years.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let per_unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = digits.parse::<u64>().ok()?.checked_mul(per_unit)?;
    (secs <= 100 * 366 * 86_400).then(|| Duration::from_secs(secs))
}

/// Reads of secrets and credentials, which may come from mounted files.
impl Env<'_> {
    /// `var`, or the contents of the file named by `file_var` (trailing newline trimmed);
    /// setting both is an error. Messages never include the value.
    fn secret(
        &self,
        var: &'static str,
        file_var: &'static str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (self.get(var), self.read_file(file_var)?) {
            (Some(_), Some(_)) => Err(ConfigError {
                var,
                message: format!("set either {var} or {file_var}, not both"),
            }),
            (Some(v), None) => Ok(Some(Secret(v))),
            (None, Some(v)) => Ok(Some(Secret(v.trim_end_matches(['\n', '\r']).to_owned()))),
            (None, None) => Ok(None),
        }
    }

    fn read_file(&self, file_var: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(path) = self.get(file_var) else {
            return Ok(None);
        };
        std::fs::read_to_string(path.trim())
            .map(Some)
            .map_err(|e| ConfigError {
                var: file_var,
                message: format!("cannot read {path:?}: {e}"),
            })
    }

    fn api_tokens(&self) -> Result<TokenSet, ConfigError> {
        let parse = |var: &'static str, text: &str| {
            TokenSet::parse(text).map_err(|message| ConfigError { var, message })
        };
        let mut tokens = match self.get("SCHEDULER_API_TOKENS") {
            Some(text) => parse("SCHEDULER_API_TOKENS", &text)?,
            None => TokenSet::default(),
        };
        if let Some(text) = self.read_file("SCHEDULER_API_TOKENS_FILE")? {
            tokens
                .merge(parse("SCHEDULER_API_TOKENS_FILE", &text)?)
                .map_err(|message| ConfigError {
                    var: "SCHEDULER_API_TOKENS_FILE",
                    message,
                })?;
        }
        Ok(tokens)
    }

    fn jwt(&self) -> Result<Option<JwtSettings>, ConfigError> {
        let hs256 = self.secret(
            "SCHEDULER_JWT_HS256_SECRET",
            "SCHEDULER_JWT_HS256_SECRET_FILE",
        )?;
        let rs256 = self.get("SCHEDULER_JWT_RS256_PUBLIC_KEY_FILE");
        let settings = match (hs256, rs256) {
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    var: "SCHEDULER_JWT_HS256_SECRET",
                    message: "set an HS256 secret or an RS256 public key, not both".into(),
                });
            }
            (Some(secret), None) => JwtSettings::hs256(&secret).map_err(|message| ConfigError {
                var: "SCHEDULER_JWT_HS256_SECRET",
                message,
            })?,
            (None, Some(path)) => {
                let var = "SCHEDULER_JWT_RS256_PUBLIC_KEY_FILE";
                let pem = std::fs::read(path.trim()).map_err(|e| ConfigError {
                    var,
                    message: format!("cannot read {path:?}: {e}"),
                })?;
                JwtSettings::rs256_pem(&pem).map_err(|message| ConfigError { var, message })?
            }
            (None, None) => return Ok(None),
        };
        let mut settings = settings.user_claim(
            self.get("SCHEDULER_JWT_USER_CLAIM")
                .unwrap_or_else(|| "sub".into()),
        );
        if let Some(aud) = self.get("SCHEDULER_JWT_AUDIENCE") {
            settings = settings.audience(&aud);
        }
        if let Some(iss) = self.get("SCHEDULER_JWT_ISSUER") {
            settings = settings.issuer(&iss);
        }
        Ok(Some(settings))
    }
}

/// Default `SCHEDULER_DAG_CACHE_BYTES`: 64 MiB.
pub const DEFAULT_DAG_CACHE_BYTES: u64 = 64 << 20;

/// Default of `SCHEDULER_RUN_RETENTION`: 30 days.
pub const DEFAULT_RUN_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// `30d`, `12h`, `2m`, `90s` or plain seconds; `0` is `None` (keep forever).
fn parse_retention(v: &str) -> Result<Option<Duration>, &'static str> {
    const EXPECTED: &str = "a duration such as 30d, 12h, 2m, 90s or plain seconds, at most \
                            3650d (0 keeps finished runs forever)";
    let d = parse_duration(v)
        .filter(|d| *d <= Duration::from_secs(3650 * 86_400))
        .ok_or(EXPECTED)?;
    Ok((!d.is_zero()).then_some(d))
}

fn parse_http_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError {
        var,
        message: format!("{raw:?} is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError {
            var,
            message: format!("{raw:?} must be an http:// or https:// URL with a host"),
        });
    }
    Ok(url)
}

/// Checks the shape of a database URL without echoing it (it may hold a password).
fn validate_database_url(raw: &str) -> Result<(), ConfigError> {
    let var = "SCHEDULER_DATABASE_URL";
    let url = Url::parse(raw).map_err(|e| ConfigError {
        var,
        message: format!("not a URL ({e})"),
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(ConfigError {
            var,
            message: format!(
                "scheme {:?} is not postgres:// or postgresql://",
                url.scheme()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn otlp_targets_come_from_the_standard_variables() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(
            c.otlp_traces,
            Some(OtlpTarget::http("http://collector:4318/v1/traces"))
        );
        assert_eq!(
            c.otlp_metrics,
            Some(OtlpTarget::http("http://collector:4318/v1/metrics"))
        );
        let off = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert_eq!((off.otlp_traces, off.otlp_metrics), (None, None));
        // A misspelt protocol is refused even while export is off.
        let err = cfg(&[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
    }

    #[test]
    fn defaults_match_the_design() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8001);
        // The embedded default runs with authentication off: loopback only.
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert!(c.host_loopback_default);
        assert_eq!(c.misfire_grace, Duration::from_millis(7500));
        assert_eq!(c.workflow_writers, WorkflowWriters::Admin);
        assert!(c.database_url.is_none());
        assert_eq!(c.leader_lease, Duration::from_millis(5000));
        assert_eq!(c.default_overlap_policy, OverlapPolicy::Skip);
        assert!(c.worker_autostart);
        assert_eq!(c.cluster_name, "default");
        assert!(!c.node_id.is_empty());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("SCHEDULER_PORT", "eighty"),
            ("SCHEDULER_PORT", "0"),
            ("SCHEDULER_PORT", "70000"),
            ("SCHEDULER_HOST", "not-an-ip"),
            ("SCHEDULER_EXECUTOR_URL", "ftp://x"),
            ("SCHEDULER_EXECUTOR_URL", "::nope"),
            ("SCHEDULER_DATABASE_URL", "mysql://x/y"),
            ("SCHEDULER_DEFAULT_OVERLAP_POLICY", "sometimes"),
            ("SCHEDULER_DEFAULT_CATCHUP_POLICY", "later"),
            ("SCHEDULER_WORKER_AUTOSTART", "perhaps"),
            ("SCHEDULER_LEADER_LEASE_MS", "10"),
            ("SCHEDULER_LOOKAHEAD_MS", "-5"),
            ("SCHEDULER_LOG_FORMAT", "xml"),
        ] {
            let err = cfg(&[(var, value)]).expect_err(var);
            let expected_var = if var == "DATABASE_URL" {
                "SCHEDULER_DATABASE_URL"
            } else {
                var
            };
            assert_eq!(err.var, expected_var, "{value}");
        }
    }

    #[test]
    fn run_retention_takes_a_duration_and_zero_keeps_forever() {
        let retention = |v: &str| cfg(&[("SCHEDULER_RUN_RETENTION", v)]).map(|c| c.run_retention);
        assert_eq!(
            cfg(&[]).unwrap().run_retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        for (value, secs) in [
            ("30d", 30 * 86_400),
            ("12h", 12 * 3600),
            ("2m", 120),
            ("90s", 90),
            ("90", 90),
            (" 7D ", 7 * 86_400),
            ("3650d", 3650 * 86_400),
        ] {
            assert_eq!(
                retention(value).unwrap(),
                Some(Duration::from_secs(secs)),
                "{value}"
            );
        }
        for zero in ["0", "0d", "0s"] {
            assert_eq!(retention(zero).unwrap(), None, "{zero}");
        }
        for bad in [
            "-1",
            "1.5h",
            "30 days",
            "d",
            "h12",
            "1w",
            "3651d",
            "99999999999999999999",
        ] {
            let err = retention(bad).expect_err(bad);
            assert_eq!(err.var, "SCHEDULER_RUN_RETENTION", "{bad}");
            assert!(err.to_string().contains("30d, 12h"), "{err}");
        }
    }

    #[test]
    fn launch_and_load_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.launch_retry_for, Duration::from_secs(3600));
        assert_eq!(c.launch_backoff, Duration::from_secs(1));
        assert_eq!(c.launch_backoff_max, Duration::from_secs(60));
        assert_eq!(c.arm_window, Duration::from_secs(1));
        assert_eq!(c.max_queued, 100);
        assert_eq!(c.cohort_lookahead, Duration::from_secs(600));
        let c = cfg(&[
            ("SCHEDULER_LAUNCH_RETRY_FOR", "24h"),
            ("SCHEDULER_ARM_WINDOW_MS", "0"),
            ("SCHEDULER_MAX_QUEUED", "5"),
        ])
        .unwrap();
        assert_eq!(c.launch_retry_for, Duration::from_secs(86_400));
        assert_eq!(c.arm_window, Duration::ZERO);
        assert_eq!(c.max_queued, 5);
        for (var, value, extra) in [
            ("SCHEDULER_LAUNCH_RETRY_FOR", "forever", None),
            ("SCHEDULER_ARM_WINDOW_MS", "10001", None),
            ("SCHEDULER_MAX_QUEUED", "0", None),
            // The cohort lookahead is the longest lead: never below the lookahead.
            (
                "SCHEDULER_COHORT_LOOKAHEAD_MS",
                "1000",
                Some(("SCHEDULER_LOOKAHEAD_MS", "2000")),
            ),
            (
                "SCHEDULER_LAUNCH_BACKOFF_MAX_MS",
                "500",
                Some(("SCHEDULER_LAUNCH_BACKOFF_MS", "1000")),
            ),
        ] {
            let mut vars = vec![(var, value)];
            vars.extend(extra);
            let err = cfg(&vars).expect_err(value);
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn credentials_come_from_variables_and_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(
            &tokens,
            "# mounted secret\nuser:bob:bob-token-0123456789\nexecutor:exec-token-0123456789\n",
        )
        .unwrap();
        let exec = dir.path().join("exec");
        std::fs::write(&exec, "outbound-secret-0123\n").unwrap();
        let c = cfg(&[
            ("SCHEDULER_API_TOKENS", "admin:admin-token-0123456789"),
            ("SCHEDULER_API_TOKENS_FILE", tokens.to_str().unwrap()),
            ("SCHEDULER_EXECUTOR_TOKEN_FILE", exec.to_str().unwrap()),
            (
                "SCHEDULER_JWT_HS256_SECRET",
                "jwt-secret-jwt-secret-jwt-secret-0123",
            ),
        ])
        .unwrap();
        assert_eq!(c.api_tokens.len(), 3);
        assert_eq!(
            c.executor_token.as_ref().unwrap().expose(),
            "outbound-secret-0123"
        );
        assert!(c.auth_enabled().unwrap());
        let debug = format!("{c:?}");
        for secret in [
            "admin-token",
            "bob-token",
            "exec-token",
            "outbound-secret",
            "jwt-secret",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        let both = cfg(&[
            ("SCHEDULER_EXECUTOR_TOKEN", "x"),
            ("SCHEDULER_EXECUTOR_TOKEN_FILE", exec.to_str().unwrap()),
        ])
        .unwrap_err();
        assert_eq!(both.var, "SCHEDULER_EXECUTOR_TOKEN");
        let missing = cfg(&[("SCHEDULER_API_TOKENS_FILE", "/nonexistent/tokens")]).unwrap_err();
        assert_eq!(missing.var, "SCHEDULER_API_TOKENS_FILE");
        let dup = cfg(&[
            ("SCHEDULER_API_TOKENS", "admin:bob-token-0123456789"),
            ("SCHEDULER_API_TOKENS_FILE", tokens.to_str().unwrap()),
        ])
        .unwrap_err();
        assert!(!dup.to_string().contains("bob-token"), "{dup}");
    }

    #[test]
    fn auth_is_off_only_explicitly_or_for_the_embedded_default() {
        let db = ("SCHEDULER_DATABASE_URL", "postgres://u:pw@db/x");
        let token = ("SCHEDULER_API_TOKENS", "admin:admin-token-0123456789");
        assert!(
            !cfg(&[]).unwrap().auth_enabled().unwrap(),
            "embedded default"
        );
        let err = cfg(&[db]).unwrap().auth_enabled().unwrap_err();
        assert_eq!(err.var, "SCHEDULER_API_TOKENS");
        assert!(err.message.contains("SCHEDULER_AUTH=off"), "{err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert!(
            !cfg(&[db, ("SCHEDULER_AUTH", "off")])
                .unwrap()
                .auth_enabled()
                .unwrap()
        );
        assert!(cfg(&[db, token]).unwrap().auth_enabled().unwrap());
        assert!(cfg(&[token]).unwrap().auth_enabled().unwrap());
        assert!(
            cfg(&[("SCHEDULER_AUTH", "on")])
                .unwrap()
                .auth_enabled()
                .is_err()
        );
        assert!(
            !cfg(&[token, ("SCHEDULER_AUTH", "off")])
                .unwrap()
                .auth_enabled()
                .unwrap()
        );
    }

    #[test]
    fn an_open_api_listens_on_loopback_unless_asked() {
        let token = ("SCHEDULER_API_TOKENS", "admin:admin-token-0123456789");
        let db = ("SCHEDULER_DATABASE_URL", "postgres://u:pw@db/x");
        let host = |pairs: &[(&str, &str)]| cfg(pairs).unwrap().host.to_string();
        assert_eq!(host(&[]), "127.0.0.1");
        assert_eq!(host(&[db, ("SCHEDULER_AUTH", "off")]), "127.0.0.1");
        assert_eq!(host(&[token]), "0.0.0.0");
        let explicit = cfg(&[("SCHEDULER_HOST", "0.0.0.0")]).unwrap();
        assert_eq!(explicit.host.to_string(), "0.0.0.0");
        assert!(!explicit.host_loopback_default);
    }

    #[test]
    fn the_misfire_grace_covers_a_failover() {
        let c = cfg(&[
            ("SCHEDULER_LEADER_LEASE_MS", "20000"),
            ("SCHEDULER_LOOKAHEAD_MS", "3000"),
        ])
        .unwrap();
        assert_eq!(c.misfire_grace, Duration::from_millis(23_000), "derived");
        let err = cfg(&[
            ("SCHEDULER_LEADER_LEASE_MS", "20000"),
            ("SCHEDULER_MISFIRE_GRACE_MS", "5000"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "SCHEDULER_MISFIRE_GRACE_MS");
        for name in [
            "SCHEDULER_LEADER_LEASE_MS",
            "SCHEDULER_LOOKAHEAD_MS",
            "22500",
        ] {
            assert!(err.message.contains(name), "{err}");
        }
        let ok = cfg(&[("SCHEDULER_MISFIRE_GRACE_MS", "7500")]).unwrap();
        assert_eq!(ok.misfire_grace, Duration::from_millis(7500));
        assert!(cfg(&[("SCHEDULER_MISFIRE_GRACE_MS", "7499")]).is_err());
    }

    #[test]
    fn security_settings_are_validated() {
        for (var, value) in [
            ("SCHEDULER_AUTH", "maybe"),
            ("SCHEDULER_API_TOKENS", "admin:short"),
            ("SCHEDULER_API_TOKENS", "root:long-enough-token-123"),
            ("SCHEDULER_JWT_HS256_SECRET", "too-short"),
            ("SCHEDULER_JWT_RS256_PUBLIC_KEY_FILE", "/nonexistent.pem"),
            ("SCHEDULER_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("SCHEDULER_RATE_LIMIT_BURST", "0"),
            ("SCHEDULER_MAX_DAG_BYTES", "lots"),
            ("SCHEDULER_HEADER_READ_TIMEOUT_MS", "0"),
            ("SCHEDULER_METRICS_PUBLIC", "sometimes"),
        ] {
            let err = cfg(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{value}");
        }
        let c = cfg(&[
            ("SCHEDULER_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1"),
            ("SCHEDULER_RATE_LIMIT_PER_SEC", "0"),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.rate_limit_per_sec, 0);
        assert_eq!(c.max_dag_bytes, 256 * 1024);
        assert!(c.metrics_public);
    }

    #[test]
    fn database_url_falls_back_and_never_prints() {
        let c = cfg(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]).unwrap();
        let url = c.database_url.clone().unwrap();
        assert_eq!(url.expose(), "postgres://u:hunter2@db/x");
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = cfg(&[("DATABASE_URL", "mysql://u:hunter2@db/x")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
