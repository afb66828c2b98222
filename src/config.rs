//! Configuration: one typed struct, read from the environment (prefix `SCHEDULER_`),
//! validated once at start-up.
//!
//! Every field is documented here and nowhere else; the README's configuration table is
//! generated from the same names. A value that does not parse stops the process with a
//! message naming the variable and what it accepts: a scheduler that starts with a
//! half-understood configuration is worse than one that does not start.

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

use url::Url;

use crate::schedules::{CatchupPolicy, OverlapPolicy};

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

#[derive(Debug, Clone)]
pub struct Config {
    /// `SCHEDULER_HOST`: address the HTTP API listens on. Default `0.0.0.0`.
    pub host: IpAddr,
    /// `SCHEDULER_PORT`: port of the HTTP API. Default `8001`.
    pub port: u16,
    /// `SCHEDULER_RELOAD`: accepted for compatibility with the seed service; ignored.
    pub reload: bool,
    /// `SCHEDULER_DATABASE_URL`, else `DATABASE_URL`: PostgreSQL URL. Unset: the embedded
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
    /// `SCHEDULER_EXECUTOR_TOKEN`: bearer token sent to the Executor.
    pub executor_token: Option<Secret>,
    /// `SCHEDULER_EXECUTOR_TIMEOUT_MS`: time limit of one launch request. Default `10000`.
    pub executor_timeout: Duration,
    /// `SCHEDULER_LAUNCH_MAX_ATTEMPTS`: launch attempts before a run ends `failed_launch`.
    /// Default `8`.
    pub launch_max_attempts: i32,
    /// `SCHEDULER_LAUNCH_BACKOFF_MS`: delay before the first retry (doubling, with jitter,
    /// up to 60 s). Default `500`.
    pub launch_backoff: Duration,
    /// `SCHEDULER_LAUNCH_CONCURRENCY`: launches in flight per replica. Default `64`.
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
    /// `SCHEDULER_LOOKAHEAD_MS`: how far ahead ticks are materialized. Default `2000`.
    pub lookahead: Duration,
    /// `SCHEDULER_MISFIRE_GRACE_MS`: a tick older than this when first seen is missed.
    /// Default `5000`.
    pub misfire_grace: Duration,
    /// `SCHEDULER_MAX_CATCHUP_RUNS`: bound on runs fired for missed ticks. Default `10`.
    pub max_catchup_runs: u32,
    /// `SCHEDULER_CATCHUP_SPREAD_MS`: window over which `spread` catch-up runs are spaced.
    /// Default `60000`.
    pub catchup_spread: Duration,
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
            host: env.parse("SCHEDULER_HOST", "0.0.0.0".parse().expect("valid"))?,
            port: env.parse_with("SCHEDULER_PORT", 8001, |v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or("a port number from 1 to 65535")
            })?,
            reload: env.bool("SCHEDULER_RELOAD", false)?,
            database_url: env
                .get("SCHEDULER_DATABASE_URL")
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
            executor_token: env.get("SCHEDULER_EXECUTOR_TOKEN").map(Secret),
            executor_timeout: env.millis("SCHEDULER_EXECUTOR_TIMEOUT_MS", 10_000)?,
            launch_max_attempts: env.parse_with("SCHEDULER_LAUNCH_MAX_ATTEMPTS", 8, |v| {
                v.parse::<i32>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or("a whole number from 1 to 100")
            })?,
            launch_backoff: env.millis("SCHEDULER_LAUNCH_BACKOFF_MS", 500)?,
            launch_concurrency: env.parse_with("SCHEDULER_LAUNCH_CONCURRENCY", 64, |v| {
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
            lookahead: env.millis("SCHEDULER_LOOKAHEAD_MS", 2000)?,
            misfire_grace: env.millis("SCHEDULER_MISFIRE_GRACE_MS", 5000)?,
            max_catchup_runs: env.parse_with("SCHEDULER_MAX_CATCHUP_RUNS", 10, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 100_000)
                    .ok_or("a whole number from 0 to 100000")
            })?,
            catchup_spread: env.millis("SCHEDULER_CATCHUP_SPREAD_MS", 60_000)?,
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
        };
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
        if self.leader_lease < Duration::from_millis(1000) {
            return Err(ConfigError {
                var: "SCHEDULER_LEADER_LEASE_MS",
                message: "at least 1000 (the lease is enforced by PostgreSQL timeouts)".into(),
            });
        }
        Ok(())
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
    fn defaults_match_the_design() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8001);
        assert_eq!(c.host.to_string(), "0.0.0.0");
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
    fn database_url_falls_back_and_never_prints() {
        let c = cfg(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]).unwrap();
        let url = c.database_url.clone().unwrap();
        assert_eq!(url.expose(), "postgres://u:hunter2@db/x");
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = cfg(&[("DATABASE_URL", "mysql://u:hunter2@db/x")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
