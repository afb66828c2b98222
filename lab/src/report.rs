//! How every scenario reports: a plain-text table on stdout and the same figures as JSON
//! (`--json PATH`), plus the one lag summary they all use.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::quantile;

/// Percentiles of a set of latencies, in milliseconds (`NaN` when there are none).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Lag {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Lag {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Self {
            count: v.len(),
            min_ms: v.first().copied().unwrap_or(f64::NAN),
            p50_ms: quantile(&v, 0.5),
            p95_ms: quantile(&v, 0.95),
            p99_ms: quantile(&v, 0.99),
            max_ms: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// `p50 / p99 / max` in one cell.
    pub fn cell(&self) -> String {
        if self.count == 0 {
            return "-".into();
        }
        format!(
            "{} / {} / {}",
            ms(self.p50_ms),
            ms(self.p99_ms),
            ms(self.max_ms)
        )
    }
}

/// `b − a` in milliseconds.
pub fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// A millisecond figure for a table cell.
pub fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

/// Seconds for a table cell (`-` when unknown).
pub fn secs(v: Option<f64>) -> String {
    v.filter(|s| s.is_finite())
        .map_or_else(|| "-".into(), |s| format!("{s:.1}"))
}

/// Prints `key  value` rows, keys aligned.
pub fn print_pairs(title: &str, rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!("\n{title}");
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

/// Prints a table with a header row, columns right-aligned except the first.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let w = width[i];
            if i == 0 {
                out.push_str(&format!(" {c:<w$}"));
            } else {
                out.push_str(&format!("  {c:>w$}"));
            }
        }
        out
    };
    println!("\n{title}");
    println!("{}", line(header.to_vec()));
    for r in rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// Writes `report` as pretty JSON to `path`, if one was given.
pub fn write_json<T: Serialize>(path: Option<&Path>, report: &T) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(report)?)?;
        println!("\nreport written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_ignores_non_finite_values_and_reports_nothing_as_dash() {
        let lag = Lag::of([3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(lag.count, 3);
        assert_eq!((lag.min_ms, lag.p50_ms, lag.max_ms), (1.0, 2.0, 3.0));
        assert_eq!(Lag::of([]).cell(), "-");
    }
}
