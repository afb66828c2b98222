//! Command-line pieces every lab scenario shares: the fleet (replicas, binary, extra
//! environment), how schedules are registered, and durations written like the service's
//! own settings (`30s`, `2m`, `1h`, `7d`).

use std::{path::PathBuf, time::Duration};

/// The replica fleet a scenario runs.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Replica processes.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// The `cron-scheduler` binary (default: next to this one; build it with --release).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Extra `KEY=VALUE` environment for the replicas (tuning experiments); repeatable.
    #[arg(long = "env")]
    pub env: Vec<String>,
}

impl FleetArgs {
    pub fn with_replicas(replicas: usize) -> Self {
        Self {
            replicas,
            bin: None,
            env: Vec::new(),
        }
    }

    /// The value `--env` gives `key`, parsed; `default` when not given or not parsable.
    pub fn env_or<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.env_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    }

    /// `--env` as pairs (entries without `=` are ignored).
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }
}

/// How a scenario registers its schedules.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// Insert schedules straight into the database in bulk instead of through the REST API
    /// (needed for 1,000,000; the first due tick is computed by the lab).
    #[arg(long)]
    pub via_sql: bool,
    /// REST registration: requests in flight, spread over the replicas.
    #[arg(long, default_value_t = 48)]
    pub concurrency: usize,
}

/// Parses `500ms`, `30s`, `2m`, `1h`, `7d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 2m, 1h, 7d"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m, h or d")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_service_settings() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5h"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("m").is_err());
    }
}
