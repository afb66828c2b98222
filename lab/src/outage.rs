//! The outage scenario: what catch-up costs after the fleet was down for `--days`.
//!
//! `--schedules` schedules, half every second (`* * * * * *`), half every minute
//! (`0 * * * * *`), with the catch-up policy under test and the default overlap policy,
//! are registered; then `POST /worker/stop`, their runs are deleted, every `next_due_at`
//! is moved back by the outage length by SQL (as if the fleet had been down that long;
//! `claim_at` is reset too where it exists), and `POST /worker/start` is the restart
//! instant. Measured:
//! - time until every schedule is due in the future again (`count(*) where next_due_at <=
//!   now()` reaches 0), and when that count first fell below 1 %;
//! - rows written per schedule for ticks before the restart instant (max and total),
//!   against the bound `SCHEDULER_MAX_CATCHUP_RUNS` (10 unless set with `--env`), by
//!   status; `missed_uncounted` totals; and whether every nominal tick of the outage is
//!   accounted for (rows + `missed_uncounted` = ticks the schedules should have had);
//! - leader changes, duplicate rows;
//! - the live ticks right after: fire lag of the ticks due in the `--live-s` seconds after
//!   catch-up finished.
//!
//! `--policy all` runs `none`, `fire_immediately` and `spread` one after another, each on
//! a fresh cluster.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use cron_scheduler::schedules::CatchupPolicy;

use super::{
    args::{FleetArgs, RegisterArgs},
    cpu::CpuSplit,
    deliveries::{self, Deliveries},
    fleet::Fleet,
    leadership::{LeaderChanges, LeaderWatch},
    ledger::{self, Scope, StatusCounts},
    register::{self, Registration, ScheduleDef},
    report,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyChoice {
    #[value(name = "none")]
    None,
    #[value(name = "fire_immediately")]
    FireImmediately,
    #[value(name = "spread")]
    Spread,
    /// The three, one after another, each on a fresh cluster.
    #[value(name = "all")]
    All,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutageArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub register: RegisterArgs,
    /// Schedules: half every second, half every minute.
    #[arg(long, default_value_t = 10_000)]
    pub schedules: usize,
    /// Length of the simulated outage, in days (fractions allowed: 0.01 is 14.4 min).
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Catch-up policy of every schedule.
    #[arg(long, value_enum, default_value_t = PolicyChoice::All)]
    pub policy: PolicyChoice,
    /// The mock reports `succeeded` this many ms after each accepted launch (0: never).
    #[arg(long, default_value_t = 1000)]
    pub completion_ms: u64,
    /// Seconds of live ticks measured after catch-up finished.
    #[arg(long, default_value_t = 30)]
    pub live_s: u64,
    /// Give up waiting for catch-up after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_s: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct OutageResult {
    pub policy: CatchupPolicy,
    pub schedules: usize,
    pub outage_days: f64,
    pub registration: Registration,
    pub restart_at: DateTime<Utc>,
    /// Seconds from the restart until fewer than 1 % of schedules were due.
    pub below_1pct_s: Option<f64>,
    /// Seconds from the restart until no schedule was due (`next_due_at <= now()`).
    pub all_future_s: Option<f64>,
    /// `SCHEDULER_MAX_CATCHUP_RUNS` in force (10 unless overridden with `--env`).
    pub bound_per_schedule: i64,
    /// Rows for ticks before the restart, most for one schedule.
    pub rows_per_schedule_max: i64,
    /// The same for ticks older than the restart − `SCHEDULER_MISFIRE_GRACE_MS` (the ticks
    /// the catch-up policy governs).
    pub rows_per_schedule_max_past_grace: i64,
    pub rows_before_restart: i64,
    /// `rows_per_schedule_max_past_grace <= bound_per_schedule`.
    pub rows_within_bound: bool,
    pub rows_before_restart_by_status: StatusCounts,
    pub missed_uncounted_total: i64,
    /// Ticks the schedules should have had between their (moved) next due tick and the
    /// restart.
    pub nominal_ticks: i64,
    /// `rows_before_restart + missed_uncounted_total − nominal_ticks` (0: every tick is a
    /// row or a count).
    pub unaccounted: i64,
    pub leader: LeaderChanges,
    pub duplicate_rows: i64,
    /// Ticks due in the `live_s` seconds after catch-up finished: delivered and lag.
    pub live: Option<Deliveries>,
    pub live_rows: StatusCounts,
    /// From the restart to the end; "runs" = rows written since the restart.
    pub cpu: CpuSplit,
}

pub async fn run(args: OutageArgs) -> anyhow::Result<Vec<OutageResult>> {
    let policies: Vec<CatchupPolicy> = match args.policy {
        PolicyChoice::None => vec![CatchupPolicy::None],
        PolicyChoice::FireImmediately => vec![CatchupPolicy::FireImmediately],
        PolicyChoice::Spread => vec![CatchupPolicy::Spread],
        PolicyChoice::All => CatchupPolicy::ALL.to_vec(),
    };
    let mut results = Vec::new();
    for policy in policies {
        println!("\noutage: policy {policy}");
        results.push(one(&args, policy).await?);
    }
    print_report(&results);
    report::write_json(args.json.as_deref(), &results)?;
    Ok(results)
}

async fn one(args: &OutageArgs, policy: CatchupPolicy) -> anyhow::Result<OutageResult> {
    let mut fleet = Fleet::prepare("cron-scheduler-outage-").await?;
    let pool = fleet.db.pool.clone();
    fleet.spawn_replicas(&args.fleet, &[]).await?;
    fleet.complete_after(args.completion_ms)?;
    let half = args.schedules / 2;
    let mut defs = ScheduleDef::many("sec", half, "* * * * * *", None, Some(policy));
    defs.extend(ScheduleDef::many(
        "min",
        args.schedules - half,
        "0 * * * * *",
        None,
        Some(policy),
    ));
    let registration =
        register::register(&fleet, &defs, &args.register, ledger::db_now(&pool).await?).await?;
    println!("outage: {}", registration.cell());

    // The outage: nothing fires, no run is left, every schedule is `days` behind.
    fleet.worker(false).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sqlx::query("delete from runs").execute(&pool).await?;
    // Whole seconds, so every-second schedules stay on their ticks.
    let by = TimeDelta::seconds((args.days * 86_400.0).round() as i64);
    register::shift_next_due_back(&fleet, by).await?;

    let watch = LeaderWatch::start(&pool);
    let cpu0 = fleet.cpu();
    let restart_at = ledger::db_now(&pool).await?;
    // Ticks the schedules should have had before the restart: every second or minute from
    // each one's (moved) next due tick.
    let nominal: i64 = sqlx::query_scalar(
        "select coalesce(sum(greatest(0, ceil(extract(epoch from $1) / p) \
           - ceil(extract(epoch from next_due_at) / p))), 0)::int8 \
         from (select next_due_at, case when starts_with(schedule_id, 'sec-') then 1 else 60 end as p \
               from schedules where next_due_at is not null) s",
    )
    .bind(restart_at)
    .fetch_one(&pool)
    .await?;
    fleet.worker(true).await?;
    let started = Instant::now();

    let total = i64::try_from(args.schedules)?;
    let mut below_1pct_s = None;
    let mut all_future_s = None;
    let mut last_print = Instant::now();
    while started.elapsed() < Duration::from_secs(args.timeout_s) {
        let due: i64 = sqlx::query_scalar(
            "select count(*) from schedules \
             where not paused and next_due_at is not null and next_due_at <= now()",
        )
        .fetch_one(&pool)
        .await?;
        let t = started.elapsed().as_secs_f64();
        if below_1pct_s.is_none() && due * 100 < total {
            below_1pct_s = Some(t);
        }
        if due == 0 {
            all_future_s = Some(t);
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!("outage: {t:.0} s after restart, {due} schedules still due");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let caught_up = all_future_s.map(|_| Utc::now());
    if let Some(t) = all_future_s {
        println!("outage: every schedule due in the future {t:.1} s after restart");
        // The live window, plus time for its last ticks to be delivered.
        tokio::time::sleep(Duration::from_secs(args.live_s + 5)).await;
    } else {
        println!(
            "outage: catch-up did not finish within {} s",
            args.timeout_s
        );
    }
    let leader = watch.finish().await;
    let cpu1 = fleet.cpu();

    let before = Scope {
        prefix: None,
        from: None,
        until: Some(restart_at),
    };
    let by_status = ledger::status_counts(&pool, before).await?;
    let (per_max, rows_before) = rows_per_schedule(&pool, restart_at).await?;
    let uncounted: i64 =
        sqlx::query_scalar("select coalesce(sum(missed_uncounted), 0)::int8 from schedules")
            .fetch_one(&pool)
            .await?;
    let written_since: i64 = sqlx::query_scalar("select count(*) from runs where created_at >= $1")
        .bind(restart_at)
        .fetch_one(&pool)
        .await?;
    let bound: i64 = args.fleet.env_or("SCHEDULER_MAX_CATCHUP_RUNS", 10);
    // Unset, the service derives the grace from the lease and the lookahead (at least 5 s).
    let derived = (args.fleet.env_or("SCHEDULER_LEADER_LEASE_MS", 5000_i64)
        + args.fleet.env_or("SCHEDULER_LOOKAHEAD_MS", 2500_i64))
    .max(5000);
    let grace_ms: i64 = args.fleet.env_or("SCHEDULER_MISFIRE_GRACE_MS", derived);
    // Ticks inside the misfire grace before the restart are not missed: they run as usual.
    let (per_max_past_grace, _) =
        rows_per_schedule(&pool, restart_at - TimeDelta::milliseconds(grace_ms)).await?;
    let live_s = TimeDelta::seconds(i64::try_from(args.live_s)?);
    let live_window = caught_up.map(|c| (c, c + live_s));
    let live = live_window.map(|(from, until)| {
        deliveries::summarize(&fleet.executor.mock, |r| {
            r.scheduled_for.is_some_and(|s| s >= from && s < until)
        })
    });
    let live_rows = match live_window {
        Some((from, until)) => {
            ledger::status_counts(
                &pool,
                Scope {
                    prefix: None,
                    from: Some(from),
                    until: Some(until),
                },
            )
            .await?
        }
        None => StatusCounts::default(),
    };
    let result = OutageResult {
        policy,
        schedules: args.schedules,
        outage_days: args.days,
        registration,
        restart_at,
        below_1pct_s,
        all_future_s,
        bound_per_schedule: bound,
        rows_per_schedule_max: per_max,
        rows_before_restart: rows_before,
        rows_per_schedule_max_past_grace: per_max_past_grace,
        rows_within_bound: per_max_past_grace <= bound,
        rows_before_restart_by_status: by_status,
        missed_uncounted_total: uncounted,
        nominal_ticks: nominal,
        unaccounted: rows_before + uncounted - nominal,
        leader,
        duplicate_rows: ledger::duplicate_rows(&pool, Scope::default()).await?,
        live,
        live_rows,
        cpu: CpuSplit::between(cpu0, cpu1, u64::try_from(written_since)?),
    };
    fleet.stop();
    Ok(result)
}

/// Rows for ticks before `before`: most for one schedule, and in all.
async fn rows_per_schedule(
    pool: &sqlx::PgPool,
    before: DateTime<Utc>,
) -> anyhow::Result<(i64, i64)> {
    let (max, total): (Option<i64>, Option<i64>) = sqlx::query_as(
        "select max(n), sum(n)::int8 from (select count(*) n from runs where scheduled_for < $1 \
         group by schedule_id) c",
    )
    .bind(before)
    .fetch_one(pool)
    .await?;
    Ok((max.unwrap_or(0), total.unwrap_or(0)))
}

fn print_report(results: &[OutageResult]) {
    let Some(first) = results.first() else {
        return;
    };
    let header: Vec<String> = std::iter::once(String::new())
        .chain(results.iter().map(|r| r.policy.to_string()))
        .collect();
    let row = |name: &str, f: &dyn Fn(&OutageResult) -> String| -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain(results.iter().map(f))
            .collect()
    };
    let rows = vec![
        row("registration", &|r| r.registration.cell()),
        row("below 1 % due after s", &|r| report::secs(r.below_1pct_s)),
        row("all due in future after s", &|r| {
            report::secs(r.all_future_s)
        }),
        row("rows/schedule before restart, max", &|r| {
            format!(
                "{} (bound {})",
                r.rows_per_schedule_max, r.bound_per_schedule
            )
        }),
        row("  older than restart − grace, max", &|r| {
            r.rows_per_schedule_max_past_grace.to_string()
        }),
        row("  within bound", &|r| r.rows_within_bound.to_string()),
        row("rows before restart, total", &|r| {
            r.rows_before_restart.to_string()
        }),
        row("  by status", &|r| r.rows_before_restart_by_status.cell()),
        row("missed_uncounted total", &|r| {
            r.missed_uncounted_total.to_string()
        }),
        row("nominal ticks of the outage", &|r| {
            r.nominal_ticks.to_string()
        }),
        row("unaccounted ticks", &|r| r.unaccounted.to_string()),
        row("leader changes", &|r| r.leader.cell()),
        row("duplicate rows", &|r| r.duplicate_rows.to_string()),
        row("live ticks delivered", &|r| {
            r.live
                .as_ref()
                .map_or_else(|| "-".into(), |l| l.accepted.to_string())
        }),
        row("live rows", &|r| r.live_rows.cell()),
        row("live lag p50/p99/max ms", &|r| {
            r.live.as_ref().map_or_else(|| "-".into(), |l| l.lag.cell())
        }),
        row("CPU s/1000 rows pg/replicas/lab", &|r| {
            format!(
                "{:.2} / {:.2} / {:.2}",
                r.cpu.postgres_s_per_1000_runs,
                r.cpu.replicas_s_per_1000_runs,
                r.cpu.lab_s_per_1000_runs
            )
        }),
    ];
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    report::print_table(
        &format!(
            "outage: {} schedules (half every second, half every minute), {} days down",
            first.schedules, first.outage_days
        ),
        &header,
        &rows,
    );
}
