//! `cron-scheduler ctl`: a command-line client of the REST API, for people (aligned
//! tables) and scripts (`--output json`, exit codes).
//!
//! It speaks only the public HTTP API (`SCHEDULER_URL`, any replica or the load balancer,
//! and `SCHEDULER_TOKEN`), so it works against a remote fleet as against a local replica;
//! it reads no server configuration and opens no database. From the domain it borrows only
//! the pure schedule validation (`schedules::model`), so `apply` can refuse a bad file,
//! naming the file and the field, before it writes anything.
//!
//! Exit codes: 0 done; 1 a request failed (unreachable, 401/403/409, 5xx); 2 usage or bad
//! input (a bad file, a 400 or 422 naming the field); 3 not found (404). The reference is
//! `docs/CLI.md`.

mod apply;
mod client;
mod commands;
mod files;
mod table;

use std::{fmt, process::ExitCode, time::Duration};

use clap::{Args, Subcommand, ValueEnum};

pub use client::Client;

/// `ctl`'s options and commands.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Base URL of the API: any replica, or the load balancer in front of the fleet.
    #[arg(
        long,
        env = "SCHEDULER_URL",
        default_value = "http://127.0.0.1:8001",
        global = true
    )]
    pub url: String,
    /// Bearer token (an admin token, or a user token for that user's schedules).
    #[arg(long, env = "SCHEDULER_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 30, global = true)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Schedules: list, get, apply files, pause, resume, delete, trigger, backfill, runs.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// The fleet-wide worker switch and the fleet's status (admin).
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Cron expressions.
    #[command(subcommand)]
    Cron(CronCommand),
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule the token may see, in id order (follows the pages).
    List {
        /// Only this user's schedules.
        #[arg(long)]
        user: Option<String>,
        /// Only this workflow's schedules.
        #[arg(long)]
        workflow: Option<String>,
        /// Only paused (`true`) or unpaused (`false`) schedules.
        #[arg(long)]
        paused: Option<bool>,
        /// Only schedules in this state.
        #[arg(long, value_parser = ["active", "paused", "completed"])]
        status: Option<String>,
        /// Only schedules of this health.
        #[arg(long, value_parser = ["ok", "late", "failing"])]
        health: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One schedule.
    Get { schedule_id: String },
    /// Create or update the schedules of YAML or JSON files (or folders of them); report
    /// each as created, changed or unchanged.
    Apply {
        /// A schedule file (`.yaml`, `.yml`, `.json`) or a folder of them; repeatable.
        #[arg(
            short = 'f',
            long = "file",
            required = true,
            value_name = "FILE_OR_DIR"
        )]
        files: Vec<std::path::PathBuf>,
        /// Report what would happen; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete the schedules of the files' users that no file names.
        #[arg(long)]
        prune: bool,
    },
    /// Pause a schedule (its pending runs are cancelled).
    Pause { schedule_id: String },
    /// Unpause a schedule (it fires from its next future tick).
    Resume { schedule_id: String },
    /// Delete a schedule (its run history stays readable).
    Delete { schedule_id: String },
    /// Run a schedule's workflow now.
    Trigger {
        schedule_id: String,
        /// The same key again names the same run instead of starting another.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Run a schedule's past ticks in [FROM, TO] (RFC 3339).
    Backfill {
        schedule_id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// A schedule's runs, newest tick first.
    Runs {
        schedule_id: String,
        /// Only runs with this status (`pending`, `succeeded`, `failed`, ...).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// The switch, the leader, live nodes, due and pending counts, launch lag.
    Status,
    /// Switch the fleet's worker on.
    Start,
    /// Switch the fleet's worker off: no ticks are materialized until it starts again.
    Stop,
}

#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// What an expression means and when it fires next.
    Preview {
        /// 5 fields (minute first), 6 (second first), or an alias such as `@daily`; or an
        /// ISO 8601 interval such as `PT90M` (an interval schedule's ticks).
        expr: String,
        /// The instant an interval counts from (RFC 3339; default the Unix epoch).
        #[arg(long)]
        anchor: Option<String>,
        /// A calendar whose excluded dates the ticks are checked against (repeatable).
        #[arg(long = "calendar")]
        calendars: Vec<String>,
        /// What an excluded tick does: skip, next_business_day or previous_business_day.
        #[arg(long)]
        on_excluded: Option<String>,
        /// IANA timezone (default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// How many fire times, 1 to 100.
        #[arg(long, default_value_t = 5)]
        count: u32,
        /// Start from this instant (RFC 3339; default now).
        #[arg(long)]
        from: Option<String>,
    },
}

/// How a command ends when it does not succeed; the exit code says which kind.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Exit 1: the request failed (unreachable, refused, a server error).
    Request,
    /// Exit 2: bad usage or input (a bad file, a 400 or 422 from the server).
    Input,
    /// Exit 3: what was named does not exist (404).
    NotFound,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Request => 1,
            FailureKind::Input => 2,
            FailureKind::NotFound => 3,
        }
    }
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn input(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Input, message)
    }

    pub fn request(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Request, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs one command; what it prints goes to stdout, errors to stderr.
pub fn run(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = Client::new(
            &args.url,
            args.token.as_deref(),
            Duration::from_secs(args.timeout.max(1)),
        )?;
        commands::run(&client, args.output, args.command).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.kind.exit_code())
        }
    }
}
