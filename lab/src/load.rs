//! The load harness: registers schedules of a realistic mix straight into the database,
//! runs a fleet of replica processes against the in-process mock Executor for a set time,
//! and reports fires/s sustained, fire lag percentiles (Executor receive time −
//! scheduled_for), replica RSS, CPU seconds per 1,000 runs split into PostgreSQL, replicas
//! and the lab process, the rows the window ended as (`missed`, `skipped`, ...), duplicate
//! rows, and the database size, as a table and as JSON.
//!
//! It measures what users run: `--overlap` (default `skip`, the service default) and
//! `--completion-ms` (the mock reports `succeeded` that long after each accepted launch, to
//! the replicas in turn; default 1000; 0: never, so runs stay `running`). With `skip` and
//! every-second schedules whose runs take a second, about every other tick ends `skipped`:
//! that is the policy working, and the report counts them.
//!
//! Modes: `steady` (every-second schedules firing `--rate` times a second, plus a
//! background of minutely, hourly and daily schedules across timezones), `burst`
//! (`--burst` schedules whose one tick falls in the same second), and any mode with
//! `--background` extra schedules (e.g. 1,000,000) that are registered but rarely fire.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use cron_scheduler::{
    mock_executor::Received,
    schedules::{CatchupPolicy, OverlapPolicy},
};

use super::{
    CLK_TCK,
    args::FleetArgs,
    cpu::CpuSplit,
    deliveries,
    fleet::Fleet,
    ledger::{self, Scope, StatusCounts},
    register::{self, ScheduleDef},
    report::{self, Lag},
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
    #[command(flatten)]
    pub fleet: FleetArgs,
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
    /// Overlap policy of every registered schedule.
    #[arg(long, default_value_t = OverlapPolicy::Skip)]
    pub overlap: OverlapPolicy,
    /// The mock reports `succeeded` this many ms after each accepted launch (0: never).
    #[arg(long, default_value_t = 1000)]
    pub completion_ms: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub replicas: usize,
    pub overlap: OverlapPolicy,
    pub completion_ms: u64,
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
    /// CPU over the window; "runs" = launches the Executor accepted in the window.
    pub cpu: CpuSplit,
    /// Rows of ticks due in the window, by status (at the end of the run).
    pub window_rows: StatusCounts,
    pub missed_rows: i64,
    pub skipped_rows: i64,
    pub duplicate_rows: i64,
    pub db_size_mib: f64,
    pub duplicate_deliveries: u64,
    pub completions_sent: u64,
    pub completions_failed: u64,
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

fn background_specs(n: usize, overlap: OverlapPolicy) -> Vec<ScheduleDef> {
    (0..n)
        .map(|i| {
            let expr = match i % 10 {
                0 => format!("{} * * * *", i % 60),
                1..=4 => format!("{} {} * * *", i % 60, (i / 60) % 24),
                _ => format!("{} {} * * {}", i % 60, (i / 60) % 24, i % 7),
            };
            ScheduleDef {
                id: format!("bg-{i}"),
                cron_expr: expr,
                timezone: TIMEZONES[i % TIMEZONES.len()].into(),
                overlap: Some(overlap),
                catchup: Some(CatchupPolicy::FireImmediately),
            }
        })
        .collect()
}

pub async fn run(args: LoadArgs) -> anyhow::Result<LoadReport> {
    let mut fleet = Fleet::prepare("cron-scheduler-load-").await?;
    let pool = fleet.db.pool.clone();
    let now = ledger::db_now(&pool).await?;
    let registering = Instant::now();
    register::by_sql(&pool, &background_specs(args.background, args.overlap), now).await?;
    let (firing, burst_at) = match args.mode {
        Mode::Steady => {
            let specs: Vec<ScheduleDef> = (0..args.rate)
                .map(|i| ScheduleDef {
                    id: format!("sec-{i}"),
                    cron_expr: "* * * * * *".into(),
                    timezone: TIMEZONES[i % TIMEZONES.len()].into(),
                    overlap: Some(args.overlap),
                    catchup: Some(CatchupPolicy::FireImmediately),
                })
                .collect();
            register::by_sql(&pool, &specs, now + TimeDelta::seconds(3)).await?;
            (args.rate, None)
        }
        Mode::Burst => {
            // One tick for all of them, in the same second, ~25 s from now.
            let at = now + TimeDelta::seconds(25);
            let expr = at.format("%-S %-M %-H %-d %-m *").to_string();
            let specs = ScheduleDef::many(
                "burst",
                args.burst,
                &expr,
                Some(args.overlap),
                Some(CatchupPolicy::FireImmediately),
            );
            register::by_sql(&pool, &specs, now).await?;
            (args.burst, Some(floor_second(at)))
        }
    };
    let registered = args.background + firing;
    println!(
        "load: {registered} schedules registered in {:.1?}",
        registering.elapsed()
    );

    fleet
        .spawn_replicas(&args.fleet, &[("RUST_LOG", "warn".into())])
        .await?;
    fleet.complete_after(args.completion_ms)?;
    let mock = fleet.executor.mock.clone();

    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Utc::now();
    let cpu0: Vec<u64> = fleet
        .replicas
        .iter()
        .map(|r| r.cpu_ticks().unwrap_or(0))
        .collect();
    let split0 = fleet.cpu();
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
        rss_max_kib = rss_max_kib.max(fleet.replica_rss_max_kib());
        if let (Some(at), None) = (burst_at, burst_done) {
            if mock.stats().accepted as usize >= args.burst {
                burst_done = Some((Utc::now() - at).num_milliseconds() as f64 / 1000.0);
                break;
            }
        }
    }
    let elapsed = wall0.elapsed().as_secs_f64();
    let split1 = fleet.cpu();
    let cpu: Vec<f64> = fleet
        .replicas
        .iter()
        .zip(&cpu0)
        .map(|(r, c0)| (r.cpu_ticks().unwrap_or(*c0) - c0) as f64 / CLK_TCK / elapsed * 100.0)
        .collect();
    let t1 = Utc::now();
    let db_size: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&pool)
        .await?;
    fleet.stop();

    // Deliveries in the window: lag = receive time − scheduled_for.
    let in_window = |r: &Received| r.received_at >= t0 && r.received_at <= t1;
    let delivered = deliveries::summarize(&mock, in_window);
    let per_second: BTreeMap<i64, usize> = mock.inspect_received(|all| {
        let mut m = BTreeMap::new();
        for r in all.iter().filter(|r| r.status == 202 && in_window(r)) {
            *m.entry(r.received_at.timestamp()).or_default() += 1;
        }
        m
    });
    // Whole seconds strictly inside the window.
    let worst_second = per_second
        .iter()
        .filter(|(s, _)| **s > t0.timestamp() && **s < t1.timestamp())
        .map(|(_, n)| *n)
        .min()
        .unwrap_or(0);
    let window = Scope {
        prefix: None,
        from: Some(t0),
        until: Some(t1),
    };
    let window_rows = ledger::status_counts(&pool, window).await?;
    let stats = mock.stats();
    let Lag {
        min_ms,
        p50_ms,
        p95_ms,
        p99_ms,
        max_ms,
        ..
    } = delivered.lag;
    let report = LoadReport {
        mode: args.mode,
        replicas: args.fleet.replicas,
        overlap: args.overlap,
        completion_ms: args.completion_ms,
        registered_schedules: registered,
        target_fires_per_s: if args.mode == Mode::Steady {
            args.rate
        } else {
            0
        },
        measured_s: elapsed,
        delivered: delivered.accepted,
        fires_per_s: delivered.accepted as f64 / elapsed,
        fires_per_s_min_1s: worst_second as f64,
        lag_min_ms: min_ms,
        lag_p50_ms: p50_ms,
        lag_p95_ms: p95_ms,
        lag_p99_ms: p99_ms,
        lag_max_ms: max_ms,
        burst_delivered_in_s: burst_done,
        replica_rss_max_mib: rss_max_kib as f64 / 1024.0,
        replica_cpu_percent: cpu,
        cpu: CpuSplit::between(split0, split1, delivered.accepted as u64),
        missed_rows: window_rows.get("missed"),
        skipped_rows: window_rows.get("skipped"),
        window_rows,
        duplicate_rows: ledger::duplicate_rows(&pool, Scope::default()).await?,
        db_size_mib: db_size as f64 / (1024.0 * 1024.0),
        duplicate_deliveries: stats.duplicate_deliveries,
        completions_sent: stats.callbacks_sent,
        completions_failed: stats.callbacks_failed,
    };
    print_report(&report);
    report::write_json(args.json.as_deref(), &report)?;
    Ok(report)
}

fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn print_report(r: &LoadReport) {
    let f = |v: f64| format!("{v:.1}");
    let mut rows: Vec<(String, String)> = vec![
        ("mode".into(), format!("{:?}", r.mode)),
        ("replicas".into(), r.replicas.to_string()),
        ("overlap policy".into(), r.overlap.to_string()),
        (
            "completion after (ms)".into(),
            if r.completion_ms == 0 {
                "never".into()
            } else {
                r.completion_ms.to_string()
            },
        ),
        (
            "registered schedules".into(),
            r.registered_schedules.to_string(),
        ),
        ("target fires/s".into(), r.target_fires_per_s.to_string()),
        ("measured (s)".into(), f(r.measured_s)),
        ("delivered".into(), r.delivered.to_string()),
        ("fires/s sustained".into(), format!("{:.0}", r.fires_per_s)),
        (
            "fires/s worst second".into(),
            format!("{:.0}", r.fires_per_s_min_1s),
        ),
        ("lag min (ms)".into(), f(r.lag_min_ms)),
        ("lag p50 (ms)".into(), f(r.lag_p50_ms)),
        ("lag p95 (ms)".into(), f(r.lag_p95_ms)),
        ("lag p99 (ms)".into(), f(r.lag_p99_ms)),
        ("lag max (ms)".into(), f(r.lag_max_ms)),
        (
            "burst delivered in (s)".into(),
            report::secs(r.burst_delivered_in_s),
        ),
        ("replica RSS max (MiB)".into(), f(r.replica_rss_max_mib)),
        (
            "replica CPU (%)".into(),
            r.replica_cpu_percent
                .iter()
                .map(|c| format!("{c:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
        ),
    ];
    rows.extend(r.cpu.rows());
    rows.extend([
        ("rows due in window".into(), r.window_rows.cell()),
        ("missed rows".into(), r.missed_rows.to_string()),
        ("skipped rows".into(), r.skipped_rows.to_string()),
        ("duplicate rows".into(), r.duplicate_rows.to_string()),
        ("database size (MiB)".into(), f(r.db_size_mib)),
        (
            "duplicate deliveries".into(),
            r.duplicate_deliveries.to_string(),
        ),
        (
            "completions sent / failed".into(),
            format!("{} / {}", r.completions_sent, r.completions_failed),
        ),
    ]);
    report::print_pairs("load", &rows);
}
