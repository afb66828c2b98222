//! A lab fleet: a PostgreSQL cluster of its own, the in-process mock Executor on a port
//! that survives restarts, and N `cron-scheduler serve` replica processes, with the
//! helpers every scenario needs (the API round-robin, the worker switch, completions sent
//! back to the replicas in turn, CPU samples, an orderly stop).
//!
//! Order of use: [`Fleet::prepare`] (database, Executor, the lab workflow), optionally
//! bulk inserts that must precede the replicas, [`Fleet::spawn_replicas`], then the
//! scenario, then [`Fleet::stop`].

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use url::Url;

use cron_scheduler::{
    db::Channel,
    mock_executor::{Behaviour, MockExecutor},
};

use super::{LabDb, Replica, args::FleetArgs, cpu::CpuSample, replica_env};

/// The workflow every lab schedule runs (stored by [`Fleet::prepare`]).
pub const WORKFLOW: &str = "lab";

/// The mock Executor on a fixed local port: [`MockServer::down`] closes the listener
/// (launches are refused at the TCP level) and [`MockServer::up`] binds the same port again.
pub struct MockServer {
    pub mock: MockExecutor,
    pub port: u16,
    token: Option<CancellationToken>,
}

impl MockServer {
    pub async fn start(behaviour: Behaviour) -> anyhow::Result<Self> {
        let mut server = Self {
            mock: MockExecutor::new(behaviour),
            port: super::free_port(),
            token: None,
        };
        server.up().await?;
        Ok(server)
    }

    /// Serves again on the same port (no-op when already up).
    pub async fn up(&mut self) -> anyhow::Result<()> {
        if self.token.is_some() {
            return Ok(());
        }
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], self.port)))?;
        let listener = socket.listen(1024)?;
        let token = CancellationToken::new();
        self.mock.clone().spawn(listener, token.clone());
        self.token = Some(token);
        Ok(())
    }

    /// Stops listening: new connections are refused, open ones close after their request.
    pub fn down(&mut self) {
        if let Some(t) = self.token.take() {
            t.cancel();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.down();
    }
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub db: LabDb,
    pub http: reqwest::Client,
    pub executor: MockServer,
    pub replicas: Vec<Replica>,
    next_api: AtomicUsize,
}

impl Fleet {
    /// The database (migrated), the Executor, and the lab workflow; no replica yet.
    pub async fn prepare(prefix: &str) -> anyhow::Result<Self> {
        let dir = super::workdir(prefix)?;
        let db = LabDb::start(dir.path(), true).await?;
        sqlx::query(
            "insert into workflow_versions (workflow_id, version, dag) values ($1, 1, '{\"tasks\": []}')",
        )
        .bind(WORKFLOW)
        .execute(&db.pool)
        .await?;
        let executor = MockServer::start(Behaviour::default()).await?;
        Ok(Self {
            dir,
            db,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            executor,
            replicas: Vec::new(),
            next_api: AtomicUsize::new(0),
        })
    }

    /// Starts `args.replicas` replicas with `extra` environment (then `--env` on top) and
    /// waits until every one is ready.
    pub async fn spawn_replicas(
        &mut self,
        args: &FleetArgs,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let bin = args.bin.clone().unwrap_or_else(super::sibling_binary);
        let user = args.env_pairs();
        let mut all: Vec<(&str, String)> = extra.to_vec();
        all.extend(user.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let env = replica_env(&self.db.url, &self.executor.url(), &all);
        let first = self.replicas.len();
        for i in first..first + args.replicas {
            self.replicas.push(Replica::spawn(
                &bin,
                &format!("r{i}"),
                env.clone(),
                self.dir.path(),
            )?);
        }
        for r in &self.replicas[first..] {
            r.wait_ready(&self.http, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Base URLs of the replicas.
    pub fn api_urls(&self) -> Vec<String> {
        self.replicas.iter().map(Replica::base_url).collect()
    }

    /// The next replica's base URL, round-robin (as a load balancer would spread calls).
    pub fn api(&self) -> String {
        let i = self.next_api.fetch_add(1, Ordering::Relaxed);
        self.replicas[i % self.replicas.len()].base_url()
    }

    /// The mock reports `succeeded` about `ms` after each accepted launch, to the
    /// replicas in turn; 0: no completion reports.
    pub fn complete_after(&self, ms: u64) -> anyhow::Result<()> {
        let mut b = self.executor.mock.behaviour();
        b.callback_url = None;
        b.callback_after_ms = ms;
        b.callback_urls = if ms == 0 {
            Vec::new()
        } else {
            self.api_urls()
                .iter()
                .map(|u| Url::parse(&format!("{u}/")))
                .collect::<Result<_, _>>()?
        };
        self.executor.mock.set_behaviour(b);
        Ok(())
    }

    /// The fleet-wide worker switch, through the API.
    pub async fn worker(&self, on: bool) -> anyhow::Result<()> {
        let verb = if on { "start" } else { "stop" };
        self.http
            .post(format!("{}/worker/{verb}", self.api()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Wakes the leader after the lab changed schedules by SQL (which sends no NOTIFY).
    pub async fn notify_schedule_change(&self) -> anyhow::Result<()> {
        sqlx::query("select pg_notify($1, '')")
            .bind(Channel::Schedules.name())
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// CPU so far: PostgreSQL, replicas, this process.
    pub fn cpu(&self) -> CpuSample {
        let pids: Vec<i32> = self.replicas.iter().filter_map(Replica::pid).collect();
        CpuSample::take(self.db.postmaster_pid(), &pids)
    }

    /// Largest resident memory of a replica right now, KiB.
    pub fn replica_rss_max_kib(&self) -> u64 {
        self.replicas
            .iter()
            .filter_map(Replica::rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// SIGTERM every replica (they drain), then stop the Executor.
    pub fn stop(&mut self) {
        for r in &mut self.replicas {
            r.terminate(Duration::from_secs(10));
        }
        self.executor.down();
    }
}
