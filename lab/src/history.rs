//! The history scenario: do the hot paths cost what is in flight, or what is in the
//! ledger (DESIGN §2, invariant 5)? It times each operation on an empty `runs` table, then
//! again after `--rows` finished runs spread over `--schedules` schedules were inserted
//! (one `insert … select … generate_series` per chunk, progress printed), and prints both
//! medians and 95th percentiles and the ratio of the medians:
//! - a dispatcher claim of 256 due runs (`launcher::claim`, called in [`claim_due`] only);
//! - pause + unpause of a schedule with a large history (API);
//! - delete of such a schedule (API; recreated, untimed, between repetitions);
//! - the first page of its run listing (API);
//! - its run listing filtered by a rare status (`failed_launch`: the oldest `--rare` ticks
//!   of each schedule, so the rows sit at the far end of the history) (API).
//!
//! The fleet's worker is stopped, so nothing but the measured calls touches `runs`; the
//! claim runs under a cluster name of its own (`lab-claim`) whose switch is on.
//!
//! `--retention-run` measures something else: see [`super::retention`].

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::Serialize;

use cron_scheduler::{
    config::Config,
    launcher::{self, LaunchSettings},
    schedules::{CatchupPolicy, OverlapPolicy},
};

use super::{
    args::FleetArgs,
    fleet::{Fleet, WORKFLOW},
    quantile,
    register::{self, ScheduleDef},
    report, retention,
};

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Finished runs to insert before the second measurement.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Schedules the history is spread over.
    #[arg(long, default_value_t = 4)]
    pub schedules: u64,
    /// Rows of the rare status (`failed_launch`) per schedule, the oldest ticks.
    #[arg(long, default_value_t = 3)]
    pub rare: u64,
    /// Timed repetitions of each operation (after one untimed warm-up).
    #[arg(long, default_value_t = 30)]
    pub reps: usize,
    /// Rows per insert statement.
    #[arg(long, default_value_t = 1_000_000)]
    pub chunk: u64,
    /// Instead: a fleet with `SCHEDULER_RUN_RETENTION` under steady load, sampling the size
    /// of `runs`.
    #[arg(long)]
    pub retention_run: bool,
    #[command(flatten)]
    pub retention: retention::RetentionArgs,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct OpRow {
    pub operation: &'static str,
    pub empty: Timing,
    pub full: Timing,
    /// `full.p50 / empty.p50`.
    pub ratio_p50: f64,
}

#[derive(Debug, Serialize)]
pub struct HistoryReport {
    pub rows: u64,
    pub schedules: u64,
    pub reps: usize,
    pub insert_s: f64,
    pub runs_table_mib: f64,
    pub operations: Vec<OpRow>,
}

const OPS: [&str; 5] = [
    "claim 256 due runs",
    "pause + unpause (API)",
    "delete schedule (API)",
    "runs, first page (API)",
    "runs, status=failed_launch (API)",
];
const CLAIM_CLUSTER: &str = "lab-claim";
const CLAIM_BATCH: i64 = 256;

pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    if args.retention_run {
        let report = retention::run(&args.fleet, &args.retention).await?;
        return report::write_json(args.json.as_deref(), &report);
    }
    let report = history(&args).await?;
    report::write_json(args.json.as_deref(), &report)
}

/// The one place the lab calls the dispatcher's claim (its signature may change).
async fn claim_due(fleet: &Fleet, settings: &LaunchSettings) -> anyhow::Result<usize> {
    Ok(launcher::claim(&fleet.db.pool, settings, CLAIM_BATCH, true)
        .await?
        .runs
        .len())
}

fn claim_settings(fleet: &Fleet) -> anyhow::Result<LaunchSettings> {
    let url = fleet.db.url.clone();
    let config = Config::from_lookup(|k| match k {
        "SCHEDULER_DATABASE_URL" => Some(url.clone()),
        "SCHEDULER_AUTH" => Some("off".into()),
        "SCHEDULER_CLUSTER_NAME" => Some(CLAIM_CLUSTER.into()),
        "SCHEDULER_NODE_ID" => Some("lab-claim".into()),
        _ => None,
    })?;
    Ok(LaunchSettings::from_config(&config))
}

fn id(i: u64, of: u64) -> String {
    format!("hist-{}", i % of.max(1))
}

async fn history(args: &HistoryArgs) -> anyhow::Result<HistoryReport> {
    let mut fleet = Fleet::prepare("cron-scheduler-history-").await?;
    fleet.spawn_replicas(&args.fleet, &[]).await?;
    fleet.worker(false).await?;
    let pool = fleet.db.pool.clone();
    sqlx::query("insert into fleet_state (cluster_name, worker_enabled) values ($1, true)")
        .bind(CLAIM_CLUSTER)
        .execute(&pool)
        .await?;
    let defs: Vec<ScheduleDef> = (0..args.schedules.max(1))
        .map(|i| ScheduleDef {
            id: id(i, args.schedules),
            cron_expr: "0 0 * * * *".into(),
            timezone: "UTC".into(),
            overlap: Some(OverlapPolicy::Allow),
            catchup: Some(CatchupPolicy::None),
        })
        .collect();
    register::by_api(&fleet, &defs, 4).await?;
    let settings = claim_settings(&fleet)?;

    println!(
        "history: timing on an empty runs table ({} reps)",
        args.reps
    );
    let empty = measure_all(&fleet, &settings, &defs, args.reps).await?;

    let started = Instant::now();
    insert_history(&fleet, args).await?;
    let insert_s = started.elapsed().as_secs_f64();
    let size: i64 = sqlx::query_scalar("select pg_total_relation_size('runs')")
        .fetch_one(&pool)
        .await?;
    println!(
        "history: timing with {} finished runs ({} reps)",
        args.rows, args.reps
    );
    let full = measure_all(&fleet, &settings, &defs, args.reps).await?;
    fleet.stop();

    let operations: Vec<OpRow> = OPS
        .iter()
        .zip(empty.into_iter().zip(full))
        .map(|(op, (e, f))| OpRow {
            operation: op,
            ratio_p50: f.p50_ms / e.p50_ms,
            empty: e,
            full: f,
        })
        .collect();
    let report = HistoryReport {
        rows: args.rows,
        schedules: args.schedules,
        reps: args.reps,
        insert_s,
        runs_table_mib: size as f64 / (1024.0 * 1024.0),
        operations,
    };
    let full_label = format!("{} rows p50/p95 ms", args.rows);
    let rows: Vec<Vec<String>> = report
        .operations
        .iter()
        .map(|o| {
            vec![
                o.operation.to_owned(),
                format!(
                    "{} / {}",
                    report::ms(o.empty.p50_ms),
                    report::ms(o.empty.p95_ms)
                ),
                format!(
                    "{} / {}",
                    report::ms(o.full.p50_ms),
                    report::ms(o.full.p95_ms)
                ),
                format!("{:.1}x", o.ratio_p50),
            ]
        })
        .collect();
    report::print_table(
        &format!(
            "history: {} finished runs over {} schedules (runs table {:.0} MiB, inserted in {:.0} s)",
            report.rows, report.schedules, report.runs_table_mib, report.insert_s
        ),
        &["operation", "empty p50/p95 ms", &full_label, "ratio p50"],
        &rows,
    );
    Ok(report)
}

/// Inserts `args.rows` finished runs, one second apart per schedule going back from now,
/// the oldest `args.rare` of each schedule `failed_launch`, then vacuums and analyzes.
async fn insert_history(fleet: &Fleet, args: &HistoryArgs) -> anyhow::Result<()> {
    let pool = &fleet.db.pool;
    let k = i64::try_from(args.schedules.max(1))?;
    let total = i64::try_from(args.rows)?;
    let per_schedule = total / k;
    let chunk = i64::try_from(args.chunk.max(1))?;
    // One base instant for every chunk, so the ticks of successive chunks do not collide.
    let base: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select date_trunc('second', now())")
            .fetch_one(pool)
            .await?;
    let started = Instant::now();
    let mut lo = 0i64;
    while lo < total {
        let hi = (lo + chunk).min(total);
        sqlx::query(
            "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
               reason, workflow_id, version, user_id, idempotency_key, attempt, created_at, \
               updated_at, launched_at, finished_at) \
             select id, 'hist-' || (g % $3), t, t, \
               case when g / $3 >= $4 - $5 then 'failed_launch' else 'succeeded' end, \
               'schedule', case when g / $3 >= $4 - $5 then 'attempts_exhausted' end, \
               $6, 1, 'lab', id::text, 1, t, t, t, t + interval '1 second' \
             from (select gen_random_uuid() as id, g, \
                     $7::timestamptz - make_interval(secs => (g / $3) + 1) as t \
                   from generate_series($1::int8, $2::int8 - 1) as g) s",
        )
        .bind(lo)
        .bind(hi)
        .bind(k)
        .bind(per_schedule)
        .bind(i64::try_from(args.rare)?)
        .bind(WORKFLOW)
        .bind(base)
        .execute(pool)
        .await?;
        lo = hi;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  inserted {lo} of {total} finished runs ({:.0} s, {:.0} rows/s)",
            secs,
            lo as f64 / secs.max(1e-9)
        );
    }
    println!("  vacuum analyze runs");
    sqlx::query("vacuum analyze runs").execute(pool).await?;
    Ok(())
}

/// Times every operation of [`OPS`], in that order.
async fn measure_all(
    fleet: &Fleet,
    settings: &LaunchSettings,
    defs: &[ScheduleDef],
    reps: usize,
) -> anyhow::Result<Vec<Timing>> {
    let api = fleet.api_urls()[0].clone();
    let (a, b, c) = (&defs[0], &defs[1 % defs.len()], &defs[2 % defs.len()]);
    let mut out = Vec::new();
    for (op, name) in OPS.iter().enumerate() {
        let mut samples = Vec::with_capacity(reps);
        for rep in 0..=reps {
            let took = match op {
                0 => time_claim(fleet, settings).await?,
                1 => {
                    let t = Instant::now();
                    for paused in [true, false] {
                        fleet
                            .http
                            .post(format!("{api}/schedules/{}/pause", a.id))
                            .json(&serde_json::json!({ "paused": paused }))
                            .send()
                            .await?
                            .error_for_status()?;
                    }
                    t.elapsed()
                }
                2 => {
                    let t = Instant::now();
                    fleet
                        .http
                        .delete(format!("{api}/schedules/{}", b.id))
                        .send()
                        .await?
                        .error_for_status()?;
                    let took = t.elapsed();
                    register::by_api(fleet, std::slice::from_ref(b), 1).await?;
                    took
                }
                3 => get(fleet, &format!("{api}/schedules/{}/runs?limit=100", c.id)).await?,
                _ => {
                    get(
                        fleet,
                        &format!(
                            "{api}/schedules/{}/runs?limit=100&status=failed_launch",
                            c.id
                        ),
                    )
                    .await?
                }
            };
            if rep > 0 {
                samples.push(took.as_secs_f64() * 1000.0);
            }
        }
        samples.sort_by(f64::total_cmp);
        let t = Timing {
            p50_ms: quantile(&samples, 0.5),
            p95_ms: quantile(&samples, 0.95),
        };
        println!(
            "  {name:<34} p50 {} ms, p95 {} ms",
            report::ms(t.p50_ms),
            report::ms(t.p95_ms)
        );
        out.push(t);
    }
    Ok(out)
}

async fn get(fleet: &Fleet, url: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    fleet
        .http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(t.elapsed())
}

/// Puts 256 manual runs due now, times one claim of them, and removes them.
async fn time_claim(fleet: &Fleet, settings: &LaunchSettings) -> anyhow::Result<Duration> {
    let pool = &fleet.db.pool;
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key) \
         select id, null, now() - interval '1 second', now() - interval '1 second', 'pending', \
           'manual', $1, 1, 'lab', id::text \
         from (select gen_random_uuid() as id from generate_series(1, $2::int8)) s",
    )
    .bind(WORKFLOW)
    .bind(CLAIM_BATCH)
    .execute(pool)
    .await?;
    let t = Instant::now();
    let claimed = claim_due(fleet, settings).await?;
    let took = t.elapsed();
    anyhow::ensure!(
        claimed == usize::try_from(CLAIM_BATCH)?,
        "the claim took {claimed} runs, not {CLAIM_BATCH}"
    );
    sqlx::query("delete from runs where trigger = 'manual' and schedule_id is null")
        .execute(pool)
        .await?;
    Ok(took)
}
