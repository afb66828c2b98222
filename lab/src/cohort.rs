//! The cohort scenario: N schedules due in the same second (`0 * * * * *` by default: second
//! 0 of every minute), registered the way users do, with `catchup_policy = none` and the
//! service's default overlap policy (`skip`), completions reported after `--completion-ms`.
//! It watches `--cohorts` consecutive ticks and reports, per cohort: ticks expected, rows,
//! launches the Executor accepted, `missed` / `skipped` / `failed_launch` rows, fire lag,
//! drain time (last delivery − due instant), and whether every tick was materialized
//! before it was due (`created_at < scheduled_for` for every row; the earliest and latest
//! lead). For the run: leader changes, duplicate rows, duplicate deliveries, CPU split.
//!
//! The measured cohorts are the first ticks at least 10 s after registration ended, so no
//! measured cohort is partly registered. `--daily-in-s 300` instead makes a once-a-day
//! cohort (`S M H * * *`, UTC) whose one tick falls ~300 s after the run starts (the
//! 1,000,000-schedule case; register those `--via-sql`).

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use cron_scheduler::schedules::{CatchupPolicy, CronSpec};

use super::{
    args::{FleetArgs, RegisterArgs},
    cpu::CpuSplit,
    deliveries::{self, Deliveries},
    fleet::Fleet,
    leadership::{LeaderChanges, LeaderWatch},
    ledger::{self, Scope, StatusCounts},
    register::{self, Registration, ScheduleDef},
    report::{self, Lag},
};

const PREFIX: &str = "cohort-";

#[derive(Debug, Clone, clap::Args)]
pub struct CohortArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub register: RegisterArgs,
    /// Schedules in the cohort.
    #[arg(long, default_value_t = 100_000)]
    pub schedules: usize,
    /// Consecutive ticks to measure.
    #[arg(long, default_value_t = 3)]
    pub cohorts: usize,
    /// Cron expression of every schedule (UTC).
    #[arg(long, default_value = "0 * * * * *")]
    pub expr: String,
    /// Instead of `--expr`: a once-a-day expression whose tick falls this many seconds
    /// from now (one cohort).
    #[arg(long)]
    pub daily_in_s: Option<u64>,
    /// The mock reports `succeeded` this many ms after each accepted launch (0: never).
    #[arg(long, default_value_t = 1000)]
    pub completion_ms: u64,
    /// Give up on a cohort this long after it was due.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout_s: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct CohortResult {
    pub due: DateTime<Utc>,
    pub ticks_expected: usize,
    pub rows: i64,
    pub statuses: StatusCounts,
    pub missed: i64,
    pub skipped: i64,
    pub failed_launch: i64,
    pub delivered: Deliveries,
    /// Last delivery − due instant.
    pub drain_s: Option<f64>,
    /// Every expected tick has a row, and every row was created before its tick was due.
    pub all_materialized_before_due: bool,
    /// Rows created at or after their tick was due.
    pub materialized_late: i64,
    /// Largest `scheduled_for − created_at`, seconds (the first rows written).
    pub lead_earliest_s: Option<f64>,
    /// Smallest `scheduled_for − created_at`, seconds (negative: written late).
    pub lead_latest_s: Option<f64>,
    /// The cohort was still open (rows missing or runs pending) at the drain timeout.
    pub timed_out: bool,
}

#[derive(Debug, Serialize)]
pub struct CohortReport {
    pub schedules: usize,
    pub expr: String,
    pub replicas: usize,
    pub completion_ms: u64,
    pub registration: Registration,
    pub cohorts: Vec<CohortResult>,
    pub leader: LeaderChanges,
    pub duplicate_rows: i64,
    pub duplicate_deliveries: u64,
    pub completions_sent: u64,
    pub completions_failed: u64,
    pub replica_rss_max_mib: f64,
    /// From registration start to the end; "runs" = launches accepted by the Executor.
    pub cpu: CpuSplit,
}

/// `S M H * * *` for the UTC instant `at`.
fn daily_expr(at: DateTime<Utc>) -> String {
    at.format("%-S %-M %-H * * *").to_string()
}

pub async fn run(args: CohortArgs) -> anyhow::Result<CohortReport> {
    let mut fleet = Fleet::prepare("cron-scheduler-cohort-").await?;
    let pool = fleet.db.pool.clone();
    fleet.spawn_replicas(&args.fleet, &[]).await?;
    fleet.complete_after(args.completion_ms)?;
    let watch = LeaderWatch::start(&pool);
    let cpu0 = fleet.cpu();

    let start = ledger::db_now(&pool).await?;
    let (expr, cohorts) = match args.daily_in_s {
        Some(s) => (
            daily_expr(start + TimeDelta::seconds(i64::try_from(s).unwrap_or(300))),
            1,
        ),
        None => (args.expr.clone(), args.cohorts.max(1)),
    };
    let spec = CronSpec::parse(&expr, "UTC").map_err(|e| anyhow::anyhow!("{expr}: {e}"))?;
    println!(
        "cohort: registering {} schedules `{expr}` ({})",
        args.schedules,
        if args.register.via_sql {
            "SQL"
        } else {
            "REST API"
        }
    );
    let defs = ScheduleDef::many(
        PREFIX.trim_end_matches('-'),
        args.schedules,
        &expr,
        None,
        Some(CatchupPolicy::None),
    );
    let registration = register::register(&fleet, &defs, &args.register, start).await?;
    println!("cohort: {}", registration.cell());
    let registered = ledger::db_now(&pool).await?;
    let first_from = if args.daily_in_s.is_some() {
        registered
    } else {
        registered + TimeDelta::seconds(10)
    };
    let dues: Vec<DateTime<Utc>> = spec.iter_from(first_from).take(cohorts).collect();
    if let (Some(s), Some(d)) = (args.daily_in_s, dues.first()) {
        anyhow::ensure!(
            *d <= start + TimeDelta::seconds(i64::try_from(s).unwrap_or(0) + 1),
            "registration took {:.0} s, past the daily tick: raise --daily-in-s",
            registration.seconds
        );
    }

    let mut rss_max = 0u64;
    let mut results = Vec::new();
    for (k, due) in dues.iter().enumerate() {
        println!("cohort {}: due {due}", k + 1);
        let deadline = *due + TimeDelta::seconds(i64::try_from(args.drain_timeout_s)?);
        // The mock's count is free; the database is asked every 10 s only (a count over
        // a large `runs` table is work the CPU figures would include).
        let expected = i64::try_from(args.schedules)?;
        let mut polls = 0u32;
        let timed_out = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            polls += 1;
            rss_max = rss_max.max(fleet.replica_rss_max_kib());
            let now = Utc::now();
            if now <= *due {
                continue;
            }
            let delivered = fleet.executor.mock.inspect_received(|all| {
                all.iter()
                    .filter(|r| r.status == 202 && r.scheduled_for == Some(*due))
                    .count()
            });
            if delivered >= args.schedules {
                break false;
            }
            if polls % 10 == 0 {
                let (rows, open): (i64, i64) = sqlx::query_as(
                    "select count(*), count(*) filter (where status in ('pending', 'launching')) \
                     from runs where starts_with(schedule_id, $1) and scheduled_for = $2",
                )
                .bind(PREFIX)
                .bind(due)
                .fetch_one(&pool)
                .await?;
                if rows >= expected && open == 0 {
                    break false;
                }
                println!(
                    "cohort {}: {rows} rows, {delivered} delivered, {open} open",
                    k + 1
                );
            }
            if now > deadline {
                break true;
            }
        };
        results.push(measure(&fleet, *due, args.schedules, timed_out).await?);
        let r = results.last().expect("just pushed");
        println!(
            "cohort {}: {} rows, {} delivered, drain {} s{}",
            k + 1,
            r.rows,
            r.delivered.accepted,
            report::secs(r.drain_s),
            if r.timed_out { " (timed out)" } else { "" }
        );
    }
    // Let the last completion reports arrive, so the counts below are final.
    if args.completion_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.completion_ms + 2000)).await;
    }
    let leader = watch.finish().await;
    let cpu1 = fleet.cpu();
    let stats = fleet.executor.mock.stats();
    let report = CohortReport {
        schedules: args.schedules,
        expr,
        replicas: args.fleet.replicas,
        completion_ms: args.completion_ms,
        registration,
        cohorts: results,
        leader,
        duplicate_rows: ledger::duplicate_rows(&pool, Scope::default()).await?,
        duplicate_deliveries: stats.duplicate_deliveries,
        completions_sent: stats.callbacks_sent,
        completions_failed: stats.callbacks_failed,
        replica_rss_max_mib: rss_max as f64 / 1024.0,
        cpu: CpuSplit::between(cpu0, cpu1, stats.accepted),
    };
    fleet.stop();
    print_report(&report);
    report::write_json(args.json.as_deref(), &report)?;
    Ok(report)
}

async fn measure(
    fleet: &Fleet,
    due: DateTime<Utc>,
    expected: usize,
    timed_out: bool,
) -> anyhow::Result<CohortResult> {
    let pool = &fleet.db.pool;
    let scope = Scope {
        prefix: Some(PREFIX),
        from: Some(due),
        until: Some(due + TimeDelta::microseconds(1)),
    };
    let statuses = ledger::status_counts(pool, scope).await?;
    let (late, earliest, latest): (i64, Option<f64>, Option<f64>) = sqlx::query_as(
        "select count(*) filter (where created_at >= scheduled_for), \
           extract(epoch from max(scheduled_for - created_at))::float8, \
           extract(epoch from min(scheduled_for - created_at))::float8 \
         from runs where starts_with(schedule_id, $1) and scheduled_for = $2",
    )
    .bind(PREFIX)
    .bind(due)
    .fetch_one(pool)
    .await?;
    let delivered = deliveries::summarize(&fleet.executor.mock, |r| {
        r.scheduled_for == Some(due) && deliveries::of_prefix(PREFIX)(r)
    });
    let rows = statuses.total();
    Ok(CohortResult {
        due,
        ticks_expected: expected,
        rows,
        missed: statuses.get("missed"),
        skipped: statuses.get("skipped"),
        failed_launch: statuses.get("failed_launch"),
        statuses,
        drain_s: delivered
            .last_at
            .map(|l| report::millis_between(due, l) / 1000.0),
        delivered,
        all_materialized_before_due: late == 0 && rows >= i64::try_from(expected)?,
        materialized_late: late,
        lead_earliest_s: earliest,
        lead_latest_s: latest,
        timed_out,
    })
}

fn print_report(r: &CohortReport) {
    let header: Vec<String> = std::iter::once(String::new())
        .chain((1..=r.cohorts.len()).map(|k| format!("cohort {k}")))
        .collect();
    let row = |name: &str, f: &dyn Fn(&CohortResult) -> String| -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain(r.cohorts.iter().map(f))
            .collect()
    };
    let lead = |v: Option<f64>| v.map_or_else(|| "-".into(), |s| format!("{s:.1}"));
    let lag = |l: &Lag| l.cell();
    let rows = vec![
        row("due (UTC)", &|c| c.due.format("%H:%M:%S").to_string()),
        row("ticks expected", &|c| c.ticks_expected.to_string()),
        row("rows", &|c| c.rows.to_string()),
        row("delivered", &|c| c.delivered.accepted.to_string()),
        row("missed", &|c| c.missed.to_string()),
        row("skipped", &|c| c.skipped.to_string()),
        row("failed_launch", &|c| c.failed_launch.to_string()),
        row("lag p50/p99/max ms", &|c| lag(&c.delivered.lag)),
        row("drain s", &|c| report::secs(c.drain_s)),
        row("all materialized before due", &|c| {
            c.all_materialized_before_due.to_string()
        }),
        row("rows written late", &|c| c.materialized_late.to_string()),
        row("lead earliest s", &|c| lead(c.lead_earliest_s)),
        row("lead latest s", &|c| lead(c.lead_latest_s)),
        row("duplicate deliveries", &|c| {
            c.delivered.duplicates.to_string()
        }),
        row("timed out", &|c| c.timed_out.to_string()),
    ];
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    report::print_table(
        &format!(
            "cohort: {} schedules `{}`, {} replicas, completions after {} ms",
            r.schedules, r.expr, r.replicas, r.completion_ms
        ),
        &header,
        &rows,
    );
    let mut pairs: Vec<(String, String)> = vec![
        ("registration".into(), r.registration.cell()),
        ("leader changes".into(), r.leader.cell()),
        ("duplicate rows".into(), r.duplicate_rows.to_string()),
        (
            "duplicate deliveries".into(),
            r.duplicate_deliveries.to_string(),
        ),
        (
            "completions sent / failed".into(),
            format!("{} / {}", r.completions_sent, r.completions_failed),
        ),
        (
            "replica RSS max (MiB)".into(),
            format!("{:.1}", r.replica_rss_max_mib),
        ),
    ];
    pairs.extend(r.cpu.rows());
    report::print_pairs("run", &pairs);
}
