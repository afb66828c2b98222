//! `cron-scheduler-lab`: failover drills, load runs and scenario measurements against real
//! replica processes of the `cron-scheduler` binary, a PostgreSQL cluster of the lab's own,
//! a TCP fault proxy and an in-process mock Executor. It is a workspace member of its own,
//! so none of it ships with the service: it depends only on the service crate's public API
//! (`cron_scheduler::...`), like any other client would.
//!
//! Build with `cargo build --release -p cron-scheduler -p cron-scheduler-lab` (the replicas
//! run the `cron-scheduler` binary next to this one in `target/release/`); the scenarios
//! live in the library half of this package; see docs/PERFORMANCE.md.

use clap::{Parser, Subcommand};
use cron_scheduler_lab::{cohort, drill, executor_outage, history, load, outage, sweep};

/// mimalloc: the service allocates per request and per run (HTTP bodies, JSON, rows), from
/// several threads at once, which glibc's allocator serves markedly slower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "cron-scheduler-lab",
    about = "Failover drills, load runs and scenario measurements for cron-scheduler."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inject faults into a fleet for a while, then check every tick.
    Drill(drill::DrillArgs),
    /// Measure throughput, fire lag, CPU per run and footprint.
    Load(load::LoadArgs),
    /// Steady load at several rates, two configurations; plots lag against fires/s (SVG).
    Sweep(sweep::SweepArgs),
    /// Many schedules due in the same second: materialized in time, delivered, drained.
    Cohort(cohort::CohortArgs),
    /// Catch-up after the fleet was down for days, per catch-up policy.
    Outage(outage::OutageArgs),
    /// The Executor down under steady load: nothing lost, backlog drained.
    ExecutorOutage(executor_outage::ExecutorOutageArgs),
    /// Hot-path latency against a large run history; or (--retention-run) run retention.
    History(history::HistoryArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cron-scheduler-lab: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Drill(args) => drill::run(args).await.map(|r| {
                serde_json::to_value(&r)
                    .ok()
                    .and_then(|v| v["passed"].as_bool())
                    .unwrap_or(false)
            }),
            Command::Load(args) => load::run(args).await.map(|_| true),
            Command::Sweep(args) => sweep::run(args).await.map(|_| true),
            Command::Cohort(args) => cohort::run(args).await.map(|_| true),
            Command::Outage(args) => outage::run(args).await.map(|_| true),
            Command::ExecutorOutage(args) => executor_outage::run(args).await.map(|_| true),
            Command::History(args) => history::run(args).await.map(|()| true),
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("cron-scheduler-lab: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
