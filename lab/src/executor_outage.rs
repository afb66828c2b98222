//! The Executor-outage scenario: a steady load (`--rate` every-second schedules), then the
//! Executor is down for `--minutes` (`--mode refuse`: its listener is closed, so launches
//! get "connection refused", and the same port is bound again afterwards; `--mode 503`:
//! it answers every launch 503), then back; the run goes on until every run scheduled
//! before the return has left `pending`/`launching`.
//!
//! Reported: `failed_launch` rows (target 0: retries are bounded by time, and an outage
//! shorter than `SCHEDULER_LAUNCH_RETRY_FOR` must lose nothing), the runs scheduled during
//! the outage by status and how many the Executor accepted after it returned, the drain
//! time after the return, a histogram of launch attempts, duplicate rows and duplicate
//! deliveries, leader changes.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use cron_scheduler::schedules::OverlapPolicy;

use super::{
    args::{FleetArgs, RegisterArgs},
    deliveries::{self, Deliveries},
    fleet::Fleet,
    leadership::{LeaderChanges, LeaderWatch},
    ledger::{self, Scope, StatusCounts},
    register::{self, Registration, ScheduleDef},
    report,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum DownMode {
    /// Close the listener: connections are refused.
    #[value(name = "refuse")]
    Refuse,
    /// Answer every launch 503.
    #[value(name = "503")]
    Unavailable,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorOutageArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub register: RegisterArgs,
    /// Every-second schedules (fires per second).
    #[arg(long, default_value_t = 100)]
    pub rate: usize,
    /// Seconds of normal operation before the outage.
    #[arg(long, default_value_t = 30)]
    pub warmup_s: u64,
    /// Length of the outage, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    #[arg(long, value_enum, default_value_t = DownMode::Refuse)]
    pub mode: DownMode,
    /// Overlap policy of the schedules (default: the service default, `skip`).
    #[arg(long)]
    pub overlap: Option<OverlapPolicy>,
    /// The mock reports `succeeded` this many ms after each accepted launch (0: never).
    #[arg(long, default_value_t = 1000)]
    pub completion_ms: u64,
    /// Give up waiting for the backlog this long after the Executor returned.
    #[arg(long, default_value_t = 900)]
    pub drain_timeout_s: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct ExecutorOutageReport {
    pub rate: usize,
    pub replicas: usize,
    pub mode: DownMode,
    pub overlap: Option<OverlapPolicy>,
    pub registration: Registration,
    pub down_at: DateTime<Utc>,
    pub up_at: DateTime<Utc>,
    /// Every row of the run, by status.
    pub all_rows: StatusCounts,
    pub failed_launch_rows: i64,
    /// Rows of ticks due while the Executor was down, by status.
    pub outage_rows: StatusCounts,
    /// Of those, what the Executor accepted after it returned.
    pub outage_delivered_after: Deliveries,
    /// Seconds from the return until no run due before it was `pending`/`launching`.
    pub drained_after_s: Option<f64>,
    /// Seconds from the return to the last delivery of a run due during the outage.
    pub last_outage_delivery_after_s: Option<f64>,
    /// Runs due during the outage by launch attempts made.
    pub attempts_histogram: BTreeMap<i32, i64>,
    pub executor_refusals: u64,
    pub duplicate_rows: i64,
    pub duplicate_deliveries: u64,
    pub leader: LeaderChanges,
}

pub async fn run(args: ExecutorOutageArgs) -> anyhow::Result<ExecutorOutageReport> {
    let mut fleet = Fleet::prepare("cron-scheduler-executor-outage-").await?;
    let pool = fleet.db.pool.clone();
    fleet.spawn_replicas(&args.fleet, &[]).await?;
    fleet.complete_after(args.completion_ms)?;
    let defs = ScheduleDef::many("sec", args.rate, "* * * * * *", args.overlap, None);
    let registration =
        register::register(&fleet, &defs, &args.register, ledger::db_now(&pool).await?).await?;
    println!("executor-outage: {}", registration.cell());
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;

    let watch = LeaderWatch::start(&pool);
    let mock = fleet.executor.mock.clone();
    let healthy = mock.behaviour();
    let down_at = Utc::now();
    match args.mode {
        DownMode::Refuse => fleet.executor.down(),
        DownMode::Unavailable => {
            let mut b = healthy.clone();
            b.fail_status = Some(503);
            b.fail_fraction = 0.0;
            mock.set_behaviour(b);
        }
    }
    println!(
        "executor-outage: Executor down ({:?}) for {} min",
        args.mode, args.minutes
    );
    let outage = Duration::from_secs_f64(args.minutes * 60.0);
    let until = Instant::now() + outage;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(30).min(until - Instant::now())).await;
        let open: i64 = sqlx::query_scalar(
            "select count(*) from runs where status in ('pending', 'launching') and fire_at <= now()",
        )
        .fetch_one(&pool)
        .await?;
        println!("executor-outage: {open} runs due and not launched");
    }
    let up_at = Utc::now();
    match args.mode {
        DownMode::Refuse => fleet.executor.up().await?,
        DownMode::Unavailable => mock.set_behaviour(healthy),
    }
    println!("executor-outage: Executor back; waiting for the backlog");
    let back = Instant::now();
    let mut drained_after_s = None;
    while back.elapsed() < Duration::from_secs(args.drain_timeout_s) {
        let open: i64 = sqlx::query_scalar(
            "select count(*) from runs where scheduled_for < $1 and status in ('pending', 'launching')",
        )
        .bind(up_at)
        .fetch_one(&pool)
        .await?;
        if open == 0 {
            drained_after_s = Some(back.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let leader = watch.finish().await;
    let outage_scope = Scope {
        prefix: None,
        from: Some(down_at),
        until: Some(up_at),
    };
    let all_rows = ledger::status_counts(&pool, Scope::default()).await?;
    let outage_delivered_after = deliveries::summarize(&mock, |r| {
        r.received_at >= up_at && r.scheduled_for.is_some_and(|s| s >= down_at && s < up_at)
    });
    let stats = mock.stats();
    let report = ExecutorOutageReport {
        rate: args.rate,
        replicas: args.fleet.replicas,
        mode: args.mode,
        overlap: args.overlap,
        registration,
        down_at,
        up_at,
        failed_launch_rows: all_rows.get("failed_launch"),
        all_rows,
        outage_rows: ledger::status_counts(&pool, outage_scope).await?,
        last_outage_delivery_after_s: outage_delivered_after
            .last_at
            .map(|l| report::millis_between(up_at, l) / 1000.0),
        outage_delivered_after,
        drained_after_s,
        attempts_histogram: ledger::attempts_histogram(&pool, outage_scope).await?,
        executor_refusals: stats.failed,
        duplicate_rows: ledger::duplicate_rows(&pool, Scope::default()).await?,
        duplicate_deliveries: stats.duplicate_deliveries,
        leader,
    };
    fleet.stop();
    print_report(&report);
    report::write_json(args.json.as_deref(), &report)?;
    Ok(report)
}

fn print_report(r: &ExecutorOutageReport) {
    let rows: Vec<(String, String)> = vec![
        ("schedules (every second)".into(), r.rate.to_string()),
        ("replicas".into(), r.replicas.to_string()),
        ("mode".into(), format!("{:?}", r.mode)),
        (
            "overlap policy".into(),
            r.overlap
                .map_or_else(|| "service default".into(), |p| p.to_string()),
        ),
        (
            "outage (s)".into(),
            format!("{:.0}", report::millis_between(r.down_at, r.up_at) / 1000.0),
        ),
        (
            "failed_launch rows (target 0)".into(),
            r.failed_launch_rows.to_string(),
        ),
        ("all rows".into(), r.all_rows.cell()),
        ("rows due during the outage".into(), r.outage_rows.cell()),
        (
            "  delivered after the return".into(),
            r.outage_delivered_after.accepted.to_string(),
        ),
        (
            "  their lag p50/p99/max ms".into(),
            r.outage_delivered_after.lag.cell(),
        ),
        (
            "backlog drained after (s)".into(),
            report::secs(r.drained_after_s),
        ),
        (
            "last outage run delivered after (s)".into(),
            report::secs(r.last_outage_delivery_after_s),
        ),
        (
            "attempts (outage runs)".into(),
            r.attempts_histogram
                .iter()
                .map(|(a, n)| format!("{a}:{n}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "Executor refusals (503 mode)".into(),
            r.executor_refusals.to_string(),
        ),
        ("duplicate rows".into(), r.duplicate_rows.to_string()),
        (
            "duplicate deliveries".into(),
            r.duplicate_deliveries.to_string(),
        ),
        ("leader changes".into(), r.leader.cell()),
    ];
    report::print_pairs("executor-outage", &rows);
}
