//! The load harness: registers schedules of a realistic mix straight into the database,
//! runs a fleet of replica processes against the in-process mock Executor for a set time,
//! and reports fires/s sustained, fire lag percentiles (Executor receive time −
//! scheduled_for), launches/s, replica RSS and CPU, and the database size, as a table and
//! as JSON.
//!
//! Modes: `steady` (every-second schedules firing `--rate` times a second, plus a
//! background of minutely, hourly and daily schedules across timezones), `burst`
//! (`--burst` schedules whose one tick falls in the same second), and any mode with
//! `--background` extra schedules (e.g. 1,000,000) that are registered but rarely fire.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{CLK_TCK, LabDb, Replica, quantile, replica_env};
use crate::{
    mock_executor::{Behaviour, MockExecutor},
    schedules::{CronSpec, Window},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Mode {
    Steady,
    Burst,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value_t = Mode::Steady)]
    pub mode: Mode,
    /// Replica processes.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Steady mode: fires per second (every-second schedules).
    #[arg(long, default_value_t = 1000)]
    pub rate: usize,
    /// Burst mode: ticks due in the same second.
    #[arg(long, default_value_t = 100_000)]
    pub burst: usize,
    /// Extra registered schedules (hourly, daily, minutely, across timezones).
    #[arg(long, default_value_t = 1000)]
    pub background: usize,
    /// Seconds of measurement (after a warm-up of 5 s).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// The `cron-scheduler` binary (default: next to this one; build it with --release).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Extra `KEY=VALUE` environment for the replicas (tuning experiments).
    #[arg(long = "env")]
    pub env: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub replicas: usize,
    pub registered_schedules: usize,
    pub target_fires_per_s: usize,
    pub measured_s: f64,
    pub delivered: usize,
    pub fires_per_s: f64,
    pub fires_per_s_min_1s: f64,
    pub lag_min_ms: f64,
    pub lag_p50_ms: f64,
    pub lag_p95_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub burst_delivered_in_s: Option<f64>,
    pub replica_rss_max_mib: f64,
    pub replica_cpu_percent: Vec<f64>,
    pub db_size_mib: f64,
    pub duplicate_deliveries: u64,
}

const TIMEZONES: &[&str] = &[
    "UTC",
    "Europe/London",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "Europe/Berlin",
];

/// Inserts schedules in batches with `unnest`, computing each first due tick here.
async fn register(
    db: &LabDb,
    prefix: &str,
    specs: &[(String, &str)],
    from: DateTime<Utc>,
) -> anyhow::Result<()> {
    for (chunk_no, chunk) in specs.chunks(5000).enumerate() {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut exprs = Vec::with_capacity(chunk.len());
        let mut tzs = Vec::with_capacity(chunk.len());
        let mut due = Vec::with_capacity(chunk.len());
        for (i, (expr, tz)) in chunk.iter().enumerate() {
            let spec = CronSpec::parse(expr, tz).map_err(|e| anyhow::anyhow!("{expr}: {e}"))?;
            let window = Window {
                spec,
                start_at: None,
                end_at: None,
            };
            ids.push(format!("{prefix}-{}", chunk_no * 5000 + i));
            exprs.push(expr.clone());
            tzs.push((*tz).to_owned());
            due.push(window.first_tick_from(from));
        }
        sqlx::query(
            "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, timezone, \
               overlap_policy, catchup_policy, next_due_at) \
             select id, 'load', 1, 'load', expr, tz, 'allow', 'fire_immediately', due \
             from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) as s(id, expr, tz, due)",
        )
        .bind(&ids)
        .bind(&exprs)
        .bind(&tzs)
        .bind(&due)
        .execute(&db.pool)
        .await?;
    }
    Ok(())
}

fn background_specs(n: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| {
            let tz = TIMEZONES[i % TIMEZONES.len()];
            let expr = match i % 10 {
                0 => format!("{} * * * *", i % 60),
                1..=4 => format!("{} {} * * *", i % 60, (i / 60) % 24),
                _ => format!("{} {} * * {}", i % 60, (i / 60) % 24, i % 7),
            };
            (expr, tz)
        })
        .collect()
}

pub async fn run(args: LoadArgs) -> anyhow::Result<LoadReport> {
    let dir = super::workdir("cron-scheduler-load-")?;
    let bin = args.bin.clone().unwrap_or_else(super::sibling_binary);
    let db = LabDb::start(dir.path(), true).await?;
    let http = reqwest::Client::new();
    sqlx::query("insert into workflow_versions (workflow_id, version, dag) values ('load', 1, '{\"tasks\": []}')")
        .execute(&db.pool)
        .await?;

    let mock = MockExecutor::new(Behaviour::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let executor = format!("http://{}/", listener.local_addr()?);
    let mock_token = CancellationToken::new();
    mock.clone().spawn(listener, mock_token.clone());

    let now: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&db.pool)
        .await?;
    let registering = Instant::now();
    register(&db, "bg", &background_specs(args.background), now).await?;
    let (firing, burst_at) = match args.mode {
        Mode::Steady => {
            let specs: Vec<(String, &str)> = (0..args.rate)
                .map(|i| ("* * * * * *".to_owned(), TIMEZONES[i % TIMEZONES.len()]))
                .collect();
            register(&db, "sec", &specs, now + TimeDelta::seconds(3)).await?;
            (args.rate, None)
        }
        Mode::Burst => {
            // One tick for all of them, in the same second, ~25 s from now.
            let at = now + TimeDelta::seconds(25);
            let expr = at.format("%-S %-M %-H %-d %-m *").to_string();
            let specs: Vec<(String, &str)> =
                (0..args.burst).map(|_| (expr.clone(), "UTC")).collect();
            register(&db, "burst", &specs, now).await?;
            (args.burst, Some(at.with_nanosecond_floor()))
        }
    };
    let registered = args.background + firing;
    println!(
        "load: {registered} schedules registered in {:.1?}",
        registering.elapsed()
    );

    let mut extra: Vec<(&str, String)> = vec![
        ("SCHEDULER_DEFAULT_OVERLAP_POLICY", "allow".into()),
        ("SCHEDULER_RUN_TIMEOUT_MS", "86400000".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let parsed: Vec<(String, String)> = args
        .env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    for (k, v) in &parsed {
        extra.push((k.as_str(), v.clone()));
    }
    let env = replica_env(&db.url, &executor, &extra);
    let mut fleet = Vec::new();
    for i in 0..args.replicas {
        fleet.push(Replica::spawn(
            &bin,
            &format!("load{i}"),
            env.clone(),
            dir.path(),
        )?);
    }
    for r in &fleet {
        r.wait_ready(&http, Duration::from_secs(60)).await?;
    }

    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Utc::now();
    let cpu0: Vec<u64> = fleet.iter().map(|r| r.cpu_ticks().unwrap_or(0)).collect();
    let wall0 = Instant::now();
    let mut rss_max_kib = 0u64;
    let measure_for = match (args.mode, burst_at) {
        (Mode::Burst, Some(at)) => {
            (at - t0).to_std().unwrap_or_default() + Duration::from_secs(args.duration)
        }
        _ => Duration::from_secs(args.duration),
    };
    let until = Instant::now() + measure_for;
    let mut burst_done: Option<f64> = None;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max_kib = rss_max_kib.max(fleet.iter().filter_map(Replica::rss_kib).max().unwrap_or(0));
        if let (Some(at), None) = (burst_at, burst_done) {
            if mock.stats().accepted as usize >= args.burst {
                burst_done = Some((Utc::now() - at).num_milliseconds() as f64 / 1000.0);
                break;
            }
        }
    }
    let elapsed = wall0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = fleet
        .iter()
        .zip(&cpu0)
        .map(|(r, c0)| (r.cpu_ticks().unwrap_or(*c0) - c0) as f64 / CLK_TCK / elapsed * 100.0)
        .collect();
    let t1 = Utc::now();
    let db_size: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&db.pool)
        .await?;
    for r in &mut fleet {
        r.terminate(Duration::from_secs(10));
    }
    mock_token.cancel();

    // Deliveries in the window: lag = receive time − scheduled_for.
    let received: Vec<_> = mock
        .received()
        .into_iter()
        .filter(|r| r.status == 202 && r.received_at >= t0 && r.received_at <= t1)
        .collect();
    let mut lags: Vec<f64> = received
        .iter()
        .filter_map(|r| {
            r.scheduled_for
                .map(|s| (r.received_at - s).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let mut per_second: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
    for r in &received {
        *per_second.entry(r.received_at.timestamp()).or_default() += 1;
    }
    // Whole seconds strictly inside the window.
    let inner: Vec<usize> = per_second
        .iter()
        .filter(|(s, _)| **s > t0.timestamp() && **s < t1.timestamp())
        .map(|(_, n)| *n)
        .collect();
    let report = LoadReport {
        mode: args.mode,
        replicas: args.replicas,
        registered_schedules: registered,
        target_fires_per_s: if args.mode == Mode::Steady {
            args.rate
        } else {
            0
        },
        measured_s: elapsed,
        delivered: received.len(),
        fires_per_s: received.len() as f64 / elapsed,
        fires_per_s_min_1s: inner.iter().copied().min().unwrap_or(0) as f64,
        lag_min_ms: lags.first().copied().unwrap_or(f64::NAN),
        lag_p50_ms: quantile(&lags, 0.5),
        lag_p95_ms: quantile(&lags, 0.95),
        lag_p99_ms: quantile(&lags, 0.99),
        lag_max_ms: lags.last().copied().unwrap_or(f64::NAN),
        burst_delivered_in_s: burst_done,
        replica_rss_max_mib: rss_max_kib as f64 / 1024.0,
        replica_cpu_percent: cpu,
        db_size_mib: db_size as f64 / (1024.0 * 1024.0),
        duplicate_deliveries: mock.stats().duplicate_deliveries,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

trait FloorSecond {
    fn with_nanosecond_floor(self) -> Self;
}

impl FloorSecond for DateTime<Utc> {
    fn with_nanosecond_floor(self) -> Self {
        DateTime::from_timestamp(self.timestamp(), 0).unwrap_or(self)
    }
}

fn print_report(r: &LoadReport) {
    let rows: Vec<(&str, String)> = vec![
        ("mode", format!("{:?}", r.mode)),
        ("replicas", r.replicas.to_string()),
        ("registered schedules", r.registered_schedules.to_string()),
        ("target fires/s", r.target_fires_per_s.to_string()),
        ("measured (s)", format!("{:.1}", r.measured_s)),
        ("delivered", r.delivered.to_string()),
        ("fires/s sustained", format!("{:.0}", r.fires_per_s)),
        (
            "fires/s worst second",
            format!("{:.0}", r.fires_per_s_min_1s),
        ),
        ("lag min (ms)", format!("{:.1}", r.lag_min_ms)),
        ("lag p50 (ms)", format!("{:.1}", r.lag_p50_ms)),
        ("lag p95 (ms)", format!("{:.1}", r.lag_p95_ms)),
        ("lag p99 (ms)", format!("{:.1}", r.lag_p99_ms)),
        ("lag max (ms)", format!("{:.1}", r.lag_max_ms)),
        (
            "burst delivered in (s)",
            r.burst_delivered_in_s
                .map_or("-".into(), |s| format!("{s:.1}")),
        ),
        (
            "replica RSS max (MiB)",
            format!("{:.1}", r.replica_rss_max_mib),
        ),
        (
            "replica CPU (%)",
            r.replica_cpu_percent
                .iter()
                .map(|c| format!("{c:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
        ),
        ("database size (MiB)", format!("{:.1}", r.db_size_mib)),
        ("duplicate deliveries", r.duplicate_deliveries.to_string()),
    ];
    println!();
    for (k, v) in rows {
        println!("{k:<24} {v}");
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Fire rates to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000,4000")]
    pub rates: Vec<usize>,
    /// Replica processes.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Seconds of measurement per rate.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// The `cron-scheduler` binary (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where to write the SVG plot of lag percentiles against fires/s.
    #[arg(long, default_value = "docs/lag-vs-rate.svg")]
    pub svg: PathBuf,
    /// Write every rate's report as a JSON array here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the steady load at each rate and plots p50/p95/p99 fire lag against fires/s.
pub async fn sweep(args: SweepArgs) -> anyhow::Result<Vec<LoadReport>> {
    let mut reports = Vec::new();
    for rate in &args.rates {
        println!("\nsweep: {rate} fires/s");
        reports.push(
            run(LoadArgs {
                mode: Mode::Steady,
                replicas: args.replicas,
                rate: *rate,
                burst: 0,
                background: 1000,
                duration: args.duration,
                bin: args.bin.clone(),
                json: None,
                env: Vec::new(),
            })
            .await?,
        );
    }
    std::fs::write(&args.svg, svg_plot(&reports))?;
    println!("\nsweep: plot written to {}", args.svg.display());
    println!(
        "{:>10} {:>12} {:>10} {:>10} {:>10}",
        "target/s", "delivered/s", "p50 ms", "p95 ms", "p99 ms"
    );
    for r in &reports {
        println!(
            "{:>10} {:>12.0} {:>10.1} {:>10.1} {:>10.1}",
            r.target_fires_per_s, r.fires_per_s, r.lag_p50_ms, r.lag_p95_ms, r.lag_p99_ms
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(reports)
}

/// A plain SVG line chart: x = delivered fires/s, y = lag (ms, log scale).
fn svg_plot(reports: &[LoadReport]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 70.0, 50.0, 40.0, 140.0);
    let max_x = reports.iter().map(|r| r.fires_per_s).fold(1.0, f64::max) * 1.1;
    let lags: Vec<f64> = reports
        .iter()
        .flat_map(|r| [r.lag_p50_ms, r.lag_p95_ms, r.lag_p99_ms])
        .filter(|v| v.is_finite())
        .collect();
    let (min_y, max_y) = (
        lags.iter()
            .copied()
            .fold(f64::MAX, f64::min)
            .max(0.1)
            .log10()
            .floor(),
        lags.iter()
            .copied()
            .fold(0.1, f64::max)
            .log10()
            .ceil()
            .max(1.0),
    );
    let x = |v: f64| left + v / max_x * (w - left - right);
    let y = |v: f64| {
        h - bottom - (v.max(0.1).log10() - min_y) / (max_y - min_y).max(1e-9) * (h - top - bottom)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\">cron-scheduler: fire lag (Executor receive − scheduled_for) vs fires/s</text>\n",
        left
    );
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom, w - right, h - bottom, h - bottom
    ));
    let mut decade = min_y;
    while decade <= max_y {
        let v = 10f64.powf(decade);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{v} ms</text>\n",
            y(v), w - right, left - 6.0, y(v) + 4.0
        ));
        decade += 1.0;
    }
    for r in reports {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>\n",
            x(r.fires_per_s),
            h - bottom + 18.0,
            r.fires_per_s
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">fires per second (delivered)</text>\n",
        (left + w - right) / 2.0,
        h - 10.0
    ));
    for (i, (name, color)) in [("p50", "#1f77b4"), ("p95", "#ff7f0e"), ("p99", "#d62728")]
        .iter()
        .enumerate()
    {
        let pts: Vec<String> = reports
            .iter()
            .map(|r| {
                let v = [r.lag_p50_ms, r.lag_p95_ms, r.lag_p99_ms][i];
                format!("{:.1},{:.1}", x(r.fires_per_s), y(v))
            })
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        ));
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            svg.push_str(&format!(
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{color}\"/>\n"
            ));
        }
        let ly = top + 20.0 + i as f64 * 18.0;
        svg.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{ly}\" x2=\"{1}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{2}\" y=\"{3}\">{name}</text>\n",
            w - right + 15.0, w - right + 40.0, w - right + 46.0, ly + 4.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
