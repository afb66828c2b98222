//! The `cron-scheduler` binary: subcommands over the library.

use clap::{Parser, Subcommand};
use cron_scheduler::{app, config::Config, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "cron-scheduler",
    version,
    about = "Keeps time for a workflow engine."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and take part in the fleet (the default). Configured by `SCHEDULER_*`
    /// environment variables; with no database URL it starts an embedded PostgreSQL.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cron-scheduler: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init_logging(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cron-scheduler: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => app::serve(config).await,
            Command::Migrate => app::migrate_only(config).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cron-scheduler failed");
            eprintln!("cron-scheduler: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
