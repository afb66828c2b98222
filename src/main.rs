//! The `cron-scheduler` binary: subcommands over the library.

use clap::{Parser, Subcommand};
use cron_scheduler::{app, config::Config, telemetry};

/// mimalloc: the service allocates per request and per run (HTTP bodies, JSON, rows), from
/// several threads at once, which glibc's allocator serves markedly slower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the Executor stand-in (see the `mock_executor` module): it records launches and
    /// can be told to be slow, fail, or call back completions.
    MockExecutor(MockExecutorArgs),
    /// Exit 0 if a replica answers 200 on its readiness endpoint, else 1 with the reason
    /// (for container health checks; reads only `SCHEDULER_HOST` and `SCHEDULER_PORT`).
    Healthcheck {
        /// Default: `http://127.0.0.1:${SCHEDULER_PORT:-8001}/health/ready`.
        #[arg(long)]
        url: Option<String>,
    },
    /// A client of the REST API of a running fleet: schedules (apply files as code),
    /// the worker switch, cron previews. `SCHEDULER_URL` and `SCHEDULER_TOKEN` say where
    /// and as whom; `-o json` prints JSON for scripts. See docs/CLI.md.
    Ctl(cron_scheduler::ctl::CtlArgs),
}

#[derive(Debug, clap::Args)]
struct MockExecutorArgs {
    /// Address to listen on.
    #[arg(long, env = "SCHEDULER_MOCK_HOST", default_value = "0.0.0.0")]
    host: std::net::IpAddr,
    /// Port to listen on.
    #[arg(long, env = "SCHEDULER_MOCK_PORT", default_value_t = 8002)]
    port: u16,
    /// Scheduler base URL to report completions to (none: no reports).
    #[arg(long, env = "SCHEDULER_MOCK_CALLBACK_URL")]
    callback_url: Option<url::Url>,
    /// Delay before each completion report, in milliseconds.
    #[arg(long, env = "SCHEDULER_MOCK_CALLBACK_AFTER_MS", default_value_t = 100)]
    callback_after_ms: u64,
    /// Bearer token for completion reports.
    #[arg(long, env = "SCHEDULER_MOCK_CALLBACK_TOKEN")]
    callback_token: Option<String>,
    /// Delay before answering each launch, in milliseconds.
    #[arg(long, env = "SCHEDULER_MOCK_DELAY_MS", default_value_t = 0)]
    delay_ms: u64,
    /// Answer launches with this status instead of accepting them.
    #[arg(long, env = "SCHEDULER_MOCK_FAIL_STATUS")]
    fail_status: Option<u16>,
    /// Fraction of launches that fail (with --fail-status), 0 to 1; 0 means all.
    #[arg(long, env = "SCHEDULER_MOCK_FAIL_FRACTION", default_value_t = 0.0)]
    fail_fraction: f64,
}

async fn mock_executor(args: MockExecutorArgs) -> anyhow::Result<()> {
    use cron_scheduler::mock_executor::{Behaviour, MockExecutor};
    let shutdown = tokio_util::sync::CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let listener = tokio::net::TcpListener::bind((args.host, args.port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "mock executor serving");
    let mock = MockExecutor::new(Behaviour {
        delay_ms: args.delay_ms,
        fail_status: args.fail_status,
        fail_fraction: args.fail_fraction,
        callback_url: args.callback_url,
        callback_after_ms: args.callback_after_ms,
        callback_token: args.callback_token,
        ..Behaviour::default()
    });
    mock.serve(listener, shutdown).await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before the configuration is read: a health check and a client of the API must not
    // depend on the service's variables, nor print log lines.
    let command = match cli.command {
        Some(Command::Healthcheck { url }) => return cron_scheduler::healthcheck::run(url),
        Some(Command::Ctl(args)) => return cron_scheduler::ctl::run(args),
        other => other,
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cron-scheduler: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Serving an open API by accident is a configuration error, caught before anything
    // starts (other subcommands serve no API and need no credentials).
    if matches!(command, None | Some(Command::Serve)) {
        if let Err(e) = config.auth_enabled() {
            eprintln!("cron-scheduler: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cron-scheduler: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Inside the runtime: the OTLP exporter's connections live on it.
        let tracing = telemetry::init(&config);
        let result = match command.unwrap_or(Command::Serve) {
            Command::Serve => app::serve(config).await,
            Command::Migrate => app::migrate_only(config).await,
            Command::MockExecutor(args) => mock_executor(args).await,
            Command::Healthcheck { .. } | Command::Ctl(_) => {
                unreachable!("answered before the configuration")
            }
        };
        // The last spans (shutdown's own included) reach the collector before exit.
        tracing.flush().await;
        result
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
