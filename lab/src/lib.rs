//! The lab: failover drills, load runs and scenario measurements against real processes
//! (`cron-scheduler-lab`).
//!
//! Scenarios, one file each: [`drill`] (faults), [`load`] (steady load, burst), [`sweep`]
//! (load at several rates, two configurations, SVG plot),
//! [`cohort`] (many schedules due in the same second), [`outage`] (catch-up after the
//! fleet was down), [`executor_outage`] (the Executor down under load), [`history`] (hot
//! paths against a large run history), [`retention`] (does `runs` stop growing).
//!
//! Shared pieces: here, replica processes of the `cron-scheduler` binary and a PostgreSQL
//! cluster of the lab's own; [`fleet`] (database + mock Executor + replicas), [`args`]
//! (command-line pieces), [`register`] (schedules through the API or in bulk by SQL),
//! [`ledger`] (what the `runs` table says), [`deliveries`] (what the Executor saw),
//! [`leadership`] (leader changes during a run), [`cpu`] (CPU split by process),
//! [`report`] (tables, JSON, lag percentiles).

pub mod args;
pub mod cohort;
pub mod cpu;
pub mod deliveries;
pub mod drill;
pub mod executor_outage;
pub mod fleet;
pub mod history;
pub mod leadership;
pub mod ledger;
pub mod load;
pub mod outage;
pub mod proxy;
pub mod register;
pub mod report;
pub mod retention;
pub mod sweep;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use sqlx::PgPool;

use cron_scheduler::db::{
    self,
    embedded::{EmbeddedOptions, EmbeddedPostgres, OnExit},
};

/// The `cron-scheduler` binary next to the running lab binary.
pub fn sibling_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("cron-scheduler")))
        .unwrap_or_else(|| PathBuf::from("cron-scheduler"))
}

/// A temporary working folder under `/tmp` that the `postgres` user can enter (removed
/// when dropped).
pub fn workdir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A lab database cluster (kept on a fixed port so a restart keeps its URL).
pub struct LabDb {
    pub pg: Option<EmbeddedPostgres>,
    opts: EmbeddedOptions,
    pub url: String,
    pub pool: PgPool,
}

impl LabDb {
    pub async fn start(dir: &Path, ephemeral: bool) -> anyhow::Result<Self> {
        let opts = EmbeddedOptions {
            dir: dir.join("postgres"),
            bin_dir: None,
            ephemeral,
            on_exit: OnExit::StopAndRemove,
            max_connections: 400,
            port: Some(free_port()),
        };
        let o = opts.clone();
        let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&o)).await??;
        db::create_database(&pg.url("postgres"), "lab").await?;
        let url = pg.url("lab");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await?;
        match std::env::var_os("SCHEDULER_LAB_SCHEMA_BIN") {
            // Measuring an older build: its schema is the one its own `migrate` applies
            // (a newer schema's migrations would stop it at start-up as unknown).
            Some(bin) => {
                let status = tokio::process::Command::new(&bin)
                    .arg("migrate")
                    .env("SCHEDULER_DATABASE_URL", &url)
                    .env("RUST_LOG", "warn")
                    .status()
                    .await?;
                anyhow::ensure!(status.success(), "{bin:?} migrate failed: {status}");
            }
            None => db::migrate(&pool).await?,
        }
        Ok(Self {
            pg: Some(pg),
            opts,
            url,
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.opts.port.unwrap_or_default()
    }

    /// The cluster's postmaster process, while it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        cpu::postmaster_pid(&self.pg.as_ref()?.dir().join("pgdata"))
    }

    /// Crashes PostgreSQL (immediate stop) and starts it again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Some(pg) = self.pg.take() {
            let _ = tokio::task::spawn_blocking(move || pg.crash()).await?;
        }
        let o = self.opts.clone();
        self.pg = Some(tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&o)).await??);
        Ok(started.elapsed())
    }
}

/// One replica process.
pub struct Replica {
    pub id: String,
    pub port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    pub frozen: bool,
}

impl Replica {
    pub fn spawn(
        bin: &Path,
        id: &str,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut r = Self {
            id: id.to_owned(),
            port: free_port(),
            bin: bin.to_owned(),
            env,
            log: log_dir.join(format!("{id}.log")),
            child: None,
            frozen: false,
        };
        r.start()?;
        Ok(r)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SCHEDULER_NODE_ID", &self.id)
            .env("SCHEDULER_HOST", "127.0.0.1")
            .env("SCHEDULER_PORT", self.port.to_string())
            .env("SCHEDULER_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        self.frozen = false;
        Ok(())
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    pub fn freeze(&mut self) {
        self.signal(Signal::SIGSTOP);
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        self.signal(Signal::SIGCONT);
        self.frozen = false;
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(
                Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
                Signal::SIGCONT,
            );
            let _ = c.kill();
            let _ = c.wait();
        }
        self.frozen = false;
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) {
        self.thaw();
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while let Some(c) = self.child.as_mut() {
            if matches!(c.try_wait(), Ok(Some(_))) {
                self.child = None;
                break;
            }
            if Instant::now() > deadline {
                self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn wait_ready(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = http
                .get(format!("{}/health/ready", self.base_url()))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} not ready; see {}",
                self.id,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// User + system CPU time so far, in clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        cpu::process_ticks(self.pid()?)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use cpu::CLK_TCK;

/// The `q` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Where the fleet's leader is, per the database.
pub async fn leader(pool: &PgPool) -> Option<(Option<String>, i64)> {
    sqlx::query_as(
        "select leader_node, leader_epoch from fleet_state where cluster_name = 'default'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

/// Environment every lab replica gets, plus `extra`. API rate limiting is off: the lab's
/// load generator and the mock Executor's completion reports are one client each, and
/// the limit is per client (see docs/PERFORMANCE.md).
pub fn replica_env(
    db_url: &str,
    executor: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env: HashMap<String, String> = [
        ("SCHEDULER_DATABASE_URL", db_url.to_owned()),
        ("SCHEDULER_EXECUTOR_URL", executor.to_owned()),
        ("SCHEDULER_AUTH", "off".to_owned()),
        ("SCHEDULER_WORKER_AUTOSTART", "true".to_owned()),
        ("SCHEDULER_RATE_LIMIT_PER_SEC", "0".to_owned()),
        ("RUST_LOG", "warn,cron_scheduler=info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), v.clone());
    }
    env.into_iter().collect()
}
