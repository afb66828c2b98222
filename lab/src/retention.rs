//! The retention run (`history --retention-run`): a fleet with `SCHEDULER_RUN_RETENTION`
//! (default `2m`) under a steady load of `--rate` every-second schedules with completions,
//! sampling `count(*)` of `runs`, `pg_total_relation_size('runs')` and the finished runs
//! older than the retention every `--sample-s` seconds. With retention working, the table
//! stops growing once the first runs pass the retention age: the report says whether it
//! did (the samples after retention + 60 s, split in halves: the later half's largest count
//! within 5 % of the earlier half's, and its largest size within 10 %).

use std::time::{Duration, Instant};

use serde::Serialize;

use cron_scheduler::schedules::OverlapPolicy;

use super::{
    args::{FleetArgs, RegisterArgs, parse_duration},
    fleet::Fleet,
    ledger,
    register::{self, ScheduleDef},
    report,
};

#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub register: RegisterArgs,
    /// Retention run: `SCHEDULER_RUN_RETENTION` given to the replicas.
    #[arg(long, default_value = "2m")]
    pub retention: String,
    /// Retention run: every-second schedules (fires per second).
    #[arg(long, default_value_t = 1000)]
    pub rate: usize,
    /// Retention run: how long, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Retention run: seconds between samples.
    #[arg(long, default_value_t = 30)]
    pub sample_s: u64,
    /// Retention run: overlap policy (default: the service default, `skip`).
    #[arg(long)]
    pub overlap: Option<OverlapPolicy>,
    /// Retention run: the mock reports `succeeded` this many ms after each launch.
    #[arg(long, default_value_t = 500)]
    pub completion_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rows: i64,
    pub total_mib: f64,
    /// Finished runs older than the retention (what retention should have removed).
    pub past_retention: i64,
}

#[derive(Debug, Serialize)]
pub struct RetentionReport {
    pub retention: String,
    pub rate: usize,
    pub replicas: usize,
    pub minutes: f64,
    pub samples: Vec<Sample>,
    /// `yes`, `no`, or why it cannot tell (run too short).
    pub stopped_growing: String,
}

pub async fn run(fleet_args: &FleetArgs, args: &RetentionArgs) -> anyhow::Result<RetentionReport> {
    let retention = parse_duration(&args.retention).map_err(anyhow::Error::msg)?;
    let mut fleet = Fleet::prepare("cron-scheduler-retention-").await?;
    fleet
        .spawn_replicas(
            fleet_args,
            &[("SCHEDULER_RUN_RETENTION", args.retention.clone())],
        )
        .await?;
    fleet.complete_after(args.completion_ms)?;
    let defs = ScheduleDef::many("sec", args.rate, "* * * * * *", args.overlap, None);
    let reg = register::register(
        &fleet,
        &defs,
        &args.register,
        ledger::db_now(&fleet.db.pool).await?,
    )
    .await?;
    println!("retention: {}", reg.cell());

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.minutes * 60.0);
    let mut samples = Vec::new();
    loop {
        let (rows, size, past): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from runs), pg_total_relation_size('runs'), \
               (select count(*) from runs where finished_at < now() - make_interval(secs => $1))",
        )
        .bind(retention.as_secs_f64())
        .fetch_one(&fleet.db.pool)
        .await?;
        let s = Sample {
            t_s: started.elapsed().as_secs_f64(),
            rows,
            total_mib: size as f64 / (1024.0 * 1024.0),
            past_retention: past,
        };
        println!(
            "  {:>6.0} s  {:>10} rows  {:>9.1} MiB  {:>9} past retention",
            s.t_s, s.rows, s.total_mib, s.past_retention
        );
        samples.push(s);
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_secs(args.sample_s).min(end - Instant::now())).await;
    }
    fleet.stop();
    let report = RetentionReport {
        retention: args.retention.clone(),
        rate: args.rate,
        replicas: fleet_args.replicas,
        minutes: args.minutes,
        stopped_growing: verdict(&samples, retention.as_secs_f64() + 60.0),
        samples,
    };
    report::print_pairs(
        "retention",
        &[
            ("SCHEDULER_RUN_RETENTION".into(), report.retention.clone()),
            ("fires/s offered".into(), report.rate.to_string()),
            ("samples".into(), report.samples.len().to_string()),
            ("stopped growing".into(), report.stopped_growing.clone()),
        ],
    );
    Ok(report)
}

/// Whether `runs` stopped growing after `settle_s` seconds (see the module docs).
fn verdict(samples: &[Sample], settle_s: f64) -> String {
    let later: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= settle_s).collect();
    if later.len() < 4 {
        return format!("cannot tell: fewer than 4 samples after {settle_s:.0} s (run longer)");
    }
    let (a, b) = later.split_at(later.len() / 2);
    let max_rows = |h: &[&Sample]| h.iter().map(|s| s.rows).max().unwrap_or(0) as f64;
    let max_mib = |h: &[&Sample]| h.iter().map(|s| s.total_mib).fold(0.0, f64::max);
    let rows_flat = max_rows(b) <= max_rows(a) * 1.05;
    let size_flat = max_mib(b) <= max_mib(a) * 1.10;
    match (rows_flat, size_flat) {
        (true, true) => "yes".into(),
        (false, _) => format!(
            "no: rows grew from {:.0} to {:.0}",
            max_rows(a),
            max_rows(b)
        ),
        (true, false) => format!(
            "no: rows flat, size grew from {:.1} to {:.1} MiB",
            max_mib(a),
            max_mib(b)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: f64, rows: i64, total_mib: f64) -> Sample {
        Sample {
            t_s,
            rows,
            total_mib,
            past_retention: 0,
        }
    }

    #[test]
    fn the_verdict_needs_enough_samples_and_sees_growth() {
        assert!(verdict(&[s(200.0, 1, 1.0)], 180.0).starts_with("cannot tell"));
        let flat: Vec<Sample> = (0..6)
            .map(|i| s(180.0 + 30.0 * f64::from(i), 1000, 10.0))
            .collect();
        assert_eq!(verdict(&flat, 180.0), "yes");
        let growing: Vec<Sample> = (0..6)
            .map(|i| s(180.0 + 30.0 * f64::from(i), 1000 * i64::from(i + 1), 10.0))
            .collect();
        assert!(verdict(&growing, 180.0).starts_with("no: rows grew"));
    }
}
