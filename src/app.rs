//! Wiring: from a [`Config`] to a serving replica, and back down on shutdown.
//!
//! [`Replica::start`] serves on a listener it is given until a cancellation token fires, so tests
//! bind port 0 and stop it at will; [`serve`] is the binary's lifecycle around it
//! (embedded database, migrations, signals).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState, auth::Role},
    config::Config,
    db::{
        self, PoolSettings,
        embedded::{self, DEFAULT_DATABASE, EmbeddedOptions, EmbeddedPostgres, OnExit},
    },
    fleet::{
        Fleet,
        leader::NodeState,
        retention::{self, RetentionSettings},
    },
    launcher,
    retry::Backoff,
    telemetry::Telemetry,
};

/// A running replica: the API on its listener plus its part in the fleet.
pub struct Replica {
    /// This replica's role, as the fleet tasks see it.
    pub node: Arc<NodeState>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    /// Starts serving on `listener`, joins the fleet and starts retention (which works
    /// while this replica leads). Everything stops when `shutdown` is cancelled: in-flight requests finish and the leader hands over (both bounded by
    /// the configured grace period).
    pub fn start(
        config: Arc<Config>,
        pool: PgPool,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Self {
        let grace = config.shutdown_grace;
        let header_read_timeout = config.header_read_timeout;
        let telemetry = match Telemetry::new(&config) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::error!(error = %e, "metrics pipeline failed; OTLP export disabled");
                let mut plain = (*config).clone();
                plain.otlp_metrics = None;
                Arc::new(Telemetry::new(&plain).expect("a Prometheus-only pipeline builds"))
            }
        };
        telemetry.observe_pool(pool.clone());
        let fleet = Fleet::start(&pool, &config, &shutdown, telemetry.metrics.clone());
        let launcher = launcher::start(&pool, &config, telemetry.metrics.clone(), &shutdown);
        let node = fleet.state.clone();
        let retention = tokio::spawn(retention::run(
            pool.clone(),
            RetentionSettings::from_config(&config),
            node.clone(),
            telemetry.metrics.clone(),
            shutdown.clone(),
        ));
        let app = api::router(AppState::new(pool, config, node.clone(), telemetry.clone()));
        let task = tokio::spawn(async move {
            let server = tokio::spawn(api::server::serve(
                listener,
                app,
                header_read_timeout,
                shutdown.clone(),
            ));
            shutdown.cancelled().await;
            let server = async { anyhow::Ok(server.await.context("HTTP server task failed")??) };
            let background = async {
                fleet.join().await;
                if let Some(launcher) = launcher {
                    if let Err(e) = launcher.await {
                        tracing::error!(error = %e, "launcher task failed");
                    }
                }
                if let Err(e) = retention.await {
                    tracing::error!(error = %e, "retention task failed");
                }
            };
            let drained = drain(grace, server, background).await;
            // Last: the final counts (shutdown's included) reach the collector (bounded by
            // telemetry::FLUSH_TIMEOUT, after the grace).
            telemetry.flush().await;
            drained
        });
        Self { node, task }
    }

    /// Waits until the replica has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("replica task panicked")?
    }
}

/// Waits for the HTTP server to finish its in-flight requests, then for the background
/// tasks (hand-over, launches, retention), all within ONE `grace` counted from the call: a
/// replica stops within `SCHEDULER_SHUTDOWN_GRACE_MS` of SIGTERM, which is what the Helm
/// chart derives the pod's termination grace period from. What is still running at the
/// deadline is left behind with a warning (the process exits).
async fn drain(
    grace: Duration,
    server: impl Future<Output = anyhow::Result<()>>,
    background: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + grace;
    match tokio::time::timeout_at(deadline, server).await {
        Ok(served) => served?,
        Err(_) => tracing::warn!(
            ?grace,
            "requests still in flight after the shutdown grace period"
        ),
    }
    if tokio::time::timeout_at(deadline, background).await.is_err() {
        tracing::warn!(
            ?grace,
            "background tasks still running after the shutdown grace period"
        );
    }
    Ok(())
}

pub fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
        application_name: format!("cron-scheduler/{}", config.node_id),
    }
}

/// The database URL to use: the configured one, or the embedded default started here.
async fn resolve_database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Some(url) = &config.database_url {
        return Ok((url.expose().to_owned(), None));
    }
    let mut dir = config.data_dir.join("postgres");
    if let Some(alt) = embedded::fallback_dir(&dir)? {
        tracing::warn!(
            preferred = %dir.display(),
            using = %alt.display(),
            "the postgres user cannot reach the data folder; keeping the embedded cluster \
             elsewhere (set SCHEDULER_DATA_DIR to choose)"
        );
        dir = alt;
    }
    let opts = EmbeddedOptions {
        dir,
        bin_dir: config.pg_bin_dir.clone(),
        ephemeral: false,
        on_exit: OnExit::Stop,
        max_connections: 200,
        port: None,
    };
    tracing::info!(dir = %opts.dir.display(), "no database URL set: starting the embedded PostgreSQL");
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    if pg.reused() {
        tracing::info!(
            dir = %pg.dir().display(),
            "reusing the embedded PostgreSQL cluster found in the data folder: schedules and \
             runs from earlier starts are kept (delete the folder, or set SCHEDULER_DATA_DIR, \
             to start afresh)"
        );
    } else {
        tracing::info!(dir = %pg.dir().display(), "created a new embedded PostgreSQL cluster");
    }
    db::create_database(&pg.url("postgres"), DEFAULT_DATABASE).await?;
    tracing::info!(port = pg.port(), "embedded PostgreSQL is up");
    Ok((pg.url(DEFAULT_DATABASE), Some(pg)))
}

/// Applies migrations, retrying while the database is unreachable (a replica may start
/// before PostgreSQL does).
async fn migrate_with_retry(pool: &PgPool, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let delay = match db::migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) if db::is_unavailable(&e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "database unreachable; retrying migrations");
                delay
            }
            Err(e) => return Err(e).context("migrations failed"),
        };
        tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("shut down before the database was reachable"),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
}

/// The embedded default's Executor: an in-process mock on a local port that reports
/// completions back to this replica. Only when neither a database nor an Executor is
/// configured, so a production replica never sends runs to a mock by mistake.
async fn embedded_executor(
    config: &mut Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    use crate::mock_executor::{Behaviour, MockExecutor};
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let callback_host = if config.host.is_unspecified() {
        "127.0.0.1".parse()?
    } else {
        config.host
    };
    let callback: url::Url = format!(
        "http://{}/",
        std::net::SocketAddr::new(callback_host, config.port)
    )
    .parse()?;
    // With auth on, the mock reports completions with an executor token of its own.
    let callback_token = if config.auth_enabled()? {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        config
            .api_tokens
            .insert(Role::Executor, &token)
            .map_err(|e| anyhow::anyhow!("mock Executor token: {e}"))?;
        Some(token)
    } else {
        None
    };
    MockExecutor::new(Behaviour {
        callback_url: Some(callback),
        callback_after_ms: 1000,
        callback_token,
        ..Behaviour::default()
    })
    .spawn(listener, shutdown.clone());
    config.executor_url = Some(format!("http://{addr}/").parse()?);
    tracing::warn!(
        executor = %addr,
        "no SCHEDULER_EXECUTOR_URL: runs go to the built-in mock Executor (it reports each run \
         succeeded after 1 s; see GET http://{addr}/received)"
    );
    Ok(())
}

/// Says, as loudly as a log can, that the API is open.
fn warn_auth_off(config: &Config) {
    let why = if config.database_url.is_none() {
        "the embedded default with no API token configured"
    } else {
        "SCHEDULER_AUTH=off"
    };
    tracing::warn!(
        reason = why,
        "AUTHENTICATION IS OFF: anyone who can reach {}:{} can read, change and delete every \
         schedule. Set SCHEDULER_API_TOKENS (or SCHEDULER_API_TOKENS_FILE) to require tokens.",
        config.host,
        config.port
    );
    if config.host_loopback_default {
        tracing::warn!(
            host = %config.host,
            "authentication is off, so the API listens on this machine only (127.0.0.1). To \
             serve other machines, configure tokens (SCHEDULER_API_TOKENS), or set \
             SCHEDULER_HOST=0.0.0.0 to serve them without authentication"
        );
    } else if !config.host.is_loopback() {
        tracing::warn!(
            host = %config.host,
            "AUTHENTICATION IS OFF and the API listens beyond this machine; set \
             SCHEDULER_HOST=127.0.0.1 for a local-only playground"
        );
    }
}

/// `cron-scheduler serve`: the whole replica lifecycle.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    if config.database_url.is_none() && config.executor_url.is_none() {
        embedded_executor(&mut config, &shutdown).await?;
    }
    if !config.auth_enabled()? {
        warn_auth_off(&config);
    }
    let config = Arc::new(config);

    let (url, embedded) = resolve_database(&config).await?;
    let result = async {
        let pool = db::connect_lazy(&url, &pool_settings(&config))?;
        migrate_with_retry(&pool, &shutdown).await?;
        let addr = (config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            node_id = %config.node_id,
            cluster = %config.cluster_name,
            "cron-scheduler serving"
        );
        Replica::start(config.clone(), pool.clone(), listener, shutdown.clone())
            .wait()
            .await?;
        pool.close().await;
        anyhow::Ok(())
    }
    .await;

    if let Some(pg) = embedded {
        tracing::info!("stopping the embedded PostgreSQL");
        let dir = pg.dir().to_owned();
        match tokio::task::spawn_blocking(move || pg.stop()).await? {
            Ok(()) => tracing::info!(
                dir = %dir.display(),
                "embedded PostgreSQL stopped; its data stays in the folder for the next start"
            ),
            Err(e) => tracing::warn!(error = %e, "embedded PostgreSQL did not stop cleanly"),
        }
    }
    result
}

/// `cron-scheduler migrate`: applies migrations and exits.
pub async fn migrate_only(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let (url, embedded) = resolve_database(&config).await?;
    let pool = db::connect_lazy(&url, &pool_settings(&config))?;
    let result = migrate_with_retry(&pool, &shutdown).await;
    pool.close().await;
    if let Some(pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    result?;
    tracing::info!("migrations applied");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::drain;

    /// Requests that never finish and background tasks that never finish share one grace:
    /// shutdown takes the grace once, not once per stage.
    #[tokio::test]
    async fn shutdown_waits_one_grace_in_total() {
        let grace = Duration::from_millis(400);
        let started = Instant::now();
        drain(
            grace,
            std::future::pending::<anyhow::Result<()>>(),
            std::future::pending::<()>(),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert!(took >= grace, "returned before the grace: {took:?}");
        assert!(took < grace * 3 / 2, "waited more than one grace: {took:?}");
    }

    /// Time the server takes is not given again to the background tasks.
    #[tokio::test]
    async fn a_slow_server_leaves_the_background_only_the_rest_of_the_grace() {
        let grace = Duration::from_millis(400);
        let started = Instant::now();
        drain(
            grace,
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert!(took < grace * 3 / 2, "waited more than one grace: {took:?}");
    }

    #[tokio::test]
    async fn a_server_error_is_reported_after_a_prompt_drain() {
        let started = Instant::now();
        let err = drain(
            Duration::from_secs(5),
            async { anyhow::bail!("bind lost") },
            async {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("bind lost"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
