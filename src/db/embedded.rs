//! The embedded default: a PostgreSQL cluster of the service's own, made from the machine's
//! PostgreSQL binaries.
//!
//! `serve` with no database URL creates a cluster under its data folder on first start and
//! reuses it afterwards; the test harness makes a throwaway one per test process. Both go
//! through [`EmbeddedPostgres`].
//!
//! Decisions, and why:
//! - PostgreSQL refuses to run as root. When this process is root, every PostgreSQL binary
//!   runs as the `postgres` user, and the cluster directory is owned by that user.
//! - The server listens on `127.0.0.1` only, on a port picked free at each start, with Unix
//!   sockets switched off (a deep working directory would exceed the socket path limit).
//! - Authentication is `scram-sha-256` with a random password kept in the data folder
//!   (mode 0600), so other local users cannot reach the database.
//! - A watchdog process outlives this one: if the service is killed (SIGKILL), the
//!   watchdog stops the cluster, so the next start never finds it half-alive. A start that
//!   does find a cluster still running (a watchdog that lost the race) stops it first.
//! - Failure to find binaries is an error that says what to install.
//! - One process owns a cluster folder at a time: [`EmbeddedPostgres::start`] takes an
//!   exclusive `flock` on `<dir>/owner.lock` (holding the owner's pid) before touching the
//!   cluster, and keeps it until the value is dropped. A second start in the same folder
//!   fails at once with a message naming the folder and the owner, and leaves the running
//!   cluster alone. The kernel releases the lock when its holder dies, however it dies, so
//!   a stale lock is never an obstacle (the server a killed owner left running is then
//!   stopped and restarted as above).

use std::{
    fs,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

/// What to do with the cluster when the owning process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Stop the server and keep the data (the service's embedded default).
    Stop,
    /// Stop the server and delete the whole folder (test clusters).
    StopAndRemove,
}

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Folder that holds the cluster (`<dir>/pgdata`), its log and its password.
    pub dir: PathBuf,
    /// Folder with `initdb`, `pg_ctl` and `postgres`; `None` searches for it.
    pub bin_dir: Option<PathBuf>,
    /// Trade durability for speed (`fsync=off`): for throwaway test clusters only.
    pub ephemeral: bool,
    pub on_exit: OnExit,
    pub max_connections: u32,
    /// A fixed port (so a restarted cluster keeps its URL); `None` picks a free one.
    pub port: Option<u16>,
}

/// A running cluster. [`EmbeddedPostgres::stop`] stops it; the watchdog stops it too when
/// this process dies without calling `stop`.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    port: u16,
    password: String,
    on_exit: OnExit,
    watchdog: Option<std::process::Child>,
    /// Whether the cluster existed before this start (its data is reused).
    reused: bool,
    /// The folder's owner lock, held while this value lives.
    _owner: nix::fcntl::Flock<fs::File>,
}

const SUPERUSER: &str = "scheduler";
pub const DEFAULT_DATABASE: &str = "scheduler";

impl EmbeddedPostgres {
    /// Creates the cluster if the folder has none, then starts it. Blocking: call from
    /// `spawn_blocking` in async code.
    pub fn start(opts: &EmbeddedOptions) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir(opts.bin_dir.as_deref())?;
        let run_as = postgres_user_if_root()?;
        fs::create_dir_all(&opts.dir)
            .with_context(|| format!("cannot create data folder {}", opts.dir.display()))?;
        let dir = fs::canonicalize(&opts.dir)?;
        let owner = lock_owner(&dir)?;
        if let Some((uid, gid)) = run_as {
            check_reachable_by_postgres(&dir)?;
            nix::unistd::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("cannot give {} to the postgres user", dir.display()))?;
        }

        let mut pg = EmbeddedPostgres {
            dir,
            bin_dir,
            run_as,
            port: 0,
            password: String::new(),
            on_exit: opts.on_exit,
            watchdog: None,
            reused: false,
            _owner: owner,
        };
        let pgdata = pg.pgdata();
        pg.reused = pgdata.join("PG_VERSION").exists();
        if !pg.reused {
            pg.initdb()?;
        }
        pg.password = fs::read_to_string(pg.password_file())
            .context("the embedded cluster's password file is missing; delete the data folder to start afresh")?
            .trim()
            .to_owned();

        // A server left running by a process that died before its watchdog acted.
        if pgdata.join("postmaster.pid").exists() {
            let _ = pg.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"]);
        }

        // The port is picked free, then handed to the server: another process can take
        // it in between, so a failed start is retried on a fresh port.
        let log = pg.dir.join("postgres.log");
        let log_arg = log.to_str().context("non-UTF-8 data folder")?.to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            pg.port = match opts.port {
                Some(p) => p,
                None => free_port()?,
            };
            let mut server_opts = format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections={}",
                pg.port, opts.max_connections
            );
            if opts.ephemeral {
                server_opts
                    .push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
                // Profiling a throwaway cluster (docs/PERFORMANCE.md), e.g.
                // `-c shared_preload_libraries=pg_stat_statements`.
                if let Ok(extra) = std::env::var("SCHEDULER_LAB_PG_OPTIONS") {
                    server_opts.push(' ');
                    server_opts.push_str(&extra);
                }
            }
            let started = pg.pg_ctl(&[
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                &log_arg,
                "-o",
                &server_opts,
            ]);
            match started {
                Ok(()) => break,
                Err(e) if attempt >= 3 || opts.port.is_some() => {
                    let tail = fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                    return Err(e).with_context(|| {
                        format!(
                            "PostgreSQL did not start (log {}): {}",
                            log.display(),
                            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                        )
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "PostgreSQL did not start; retrying on another port");
                }
            }
        }
        pg.spawn_watchdog()?;
        Ok(pg)
    }

    /// URL of `database` on this cluster (the password is inside: do not log it).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this start found an existing cluster (and kept its data).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Stops the server (fast shutdown) and, for a throwaway cluster, removes its folder.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"])?;
        if self.on_exit == OnExit::StopAndRemove {
            let _ = fs::remove_dir_all(&self.dir);
        }
        Ok(())
    }

    /// Stops the server at once, as a crash would (`immediate` mode). Drills and tests of
    /// database loss use it.
    pub fn kill(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"])
    }

    /// Crashes the server ([`EmbeddedPostgres::kill`]) and gives up the folder, keeping
    /// its data: the watchdog is stopped and the owner lock released, so
    /// [`EmbeddedPostgres::start`] can bring the same cluster back (a database restart in
    /// a drill).
    pub fn crash(mut self) -> anyhow::Result<()> {
        let killed = self.kill();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        killed
    }

    fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let password = random_password();
        let pwfile = self.password_file();
        fs::write(&pwfile, &password)?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(&pwfile, Some(uid), Some(gid))?;
        }
        let pgdata = self.pgdata();
        self.run(
            "initdb",
            &[
                "-D",
                pgdata.to_str().context("non-UTF-8 data folder")?,
                "-U",
                SUPERUSER,
                "--pwfile",
                pwfile.to_str().context("non-UTF-8 data folder")?,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        .context("initdb failed")?;
        // The default database the service uses; `postgres` stays for maintenance.
        let conf = pgdata.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf)?;
        // Autovacuum looks at each table once a minute by default; the run queue churns
        // faster than that (see migrations/0003_load.sql).
        text.push_str(
            "\n# cron-scheduler embedded defaults\nlog_min_messages = warning\n\
             autovacuum_naptime = 10s\n",
        );
        fs::write(&conf, text)?;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let pgdata = self.pgdata();
        let mut all = vec!["-D", pgdata.to_str().context("non-UTF-8 data folder")?];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // The child's working directory must be readable by the user it runs as.
        cmd.current_dir(&self.dir).env_remove("PGDATA");
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.bin_dir.join(program).display()))?;
        if !out.status.success() {
            bail!(
                "{program} exited with {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A small shell process that waits for this process to end, then stops the server
    /// it was made for (and removes a throwaway folder). It signals that server's
    /// postmaster by pid (SIGINT: fast shutdown), not the data folder, so a service that
    /// restarts on the same folder at once never has its new server stopped by the old
    /// watchdog.
    fn spawn_watchdog(&mut self) -> anyhow::Result<()> {
        let pidfile = fs::read_to_string(self.pgdata().join("postmaster.pid"))
            .context("PostgreSQL started but wrote no postmaster.pid")?;
        let postmaster: u32 = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("unreadable postmaster.pid")?;
        let remove = match self.on_exit {
            OnExit::StopAndRemove => format!(
                "while kill -0 {postmaster} 2>/dev/null; do sleep 0.1; done; rm -rf {}",
                shell_quote(&self.dir)
            ),
            OnExit::Stop => String::new(),
        };
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; kill -INT {postmaster} 2>/dev/null; {remove}",
            pid = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C to the service must not kill the watchdog
            // before the service has stopped the server itself.
            .process_group(0)
            .spawn()
            .context("cannot start the cluster watchdog")?;
        self.watchdog = Some(child);
        Ok(())
    }
}

/// Takes the folder's exclusive owner lock, or says who holds it.
fn lock_owner(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("owner.lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut file = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(locked) => locked,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let who = if owner.is_empty() {
                "another process".to_owned()
            } else {
                format!("another process ({owner})")
            };
            bail!(
                "the data folder {} is in use by {who}: one cron-scheduler at a time owns an \
                 embedded database. Stop that one first, or set SCHEDULER_DATA_DIR to use \
                 another folder",
                dir.display()
            );
        }
        Err((_, errno)) => {
            return Err(errno).with_context(|| format!("cannot lock {}", path.display()));
        }
    };
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "pid {}", std::process::id())?;
    file.flush()?;
    Ok(file)
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        // Reap the watchdog if it was stopped, so it does not linger as a zombie.
        if let Some(child) = self.watchdog.as_mut() {
            let _ = child.try_wait();
        }
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn random_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

/// The folder with the server binaries: the configured one, the newest
/// `/usr/lib/postgresql/<version>/bin`, or the one on `PATH` that has `initdb`.
pub fn find_bin_dir(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(dir) = configured {
        if has_all(dir) {
            return Ok(dir.to_owned());
        }
        bail!(
            "SCHEDULER_PG_BIN_DIR={} does not hold initdb, pg_ctl and postgres",
            dir.display()
        );
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_all(d))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                return Ok(dir);
            }
        }
    }
    bail!(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found for the embedded \
         database. Install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf \
         install postgresql-server), point SCHEDULER_PG_BIN_DIR at them, or set \
         SCHEDULER_DATABASE_URL to an existing PostgreSQL."
    )
}

fn postgres_user_if_root() -> anyhow::Result<Option<(nix::unistd::Uid, nix::unistd::Gid)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?.context(
        "running as root, but there is no `postgres` user to run the embedded PostgreSQL \
         (PostgreSQL refuses to run as root); install the postgresql package, which creates it",
    )?;
    Ok(Some((user.uid, user.gid)))
}

/// Where the embedded cluster should live when `preferred` cannot be used: when this
/// process is root and the `postgres` user cannot walk to `preferred` (a checkout under
/// `/root`, which is 0700), a folder under `/var/lib/cron-scheduler` named after
/// `preferred`, so each checkout keeps its own data across restarts. `None`: use
/// `preferred`.
pub fn fallback_dir(preferred: &Path) -> anyhow::Result<Option<PathBuf>> {
    if postgres_user_if_root()?.is_none() {
        return Ok(None);
    }
    fs::create_dir_all(preferred)
        .with_context(|| format!("cannot create data folder {}", preferred.display()))?;
    let canonical = fs::canonicalize(preferred)?;
    if check_reachable_by_postgres(&canonical).is_ok() {
        return Ok(None);
    }
    let name: String = canonical
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(Some(
        Path::new("/var/lib/cron-scheduler").join(name.trim_start_matches('_')),
    ))
}

/// The postgres user must be able to walk to the data folder: a folder under a private
/// home (`/root` is 0700) would make initdb fail with a cryptic message.
fn check_reachable_by_postgres(dir: &Path) -> anyhow::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "the embedded PostgreSQL runs as the `postgres` user, which cannot enter {} \
                 (mode {:o}); set SCHEDULER_DATA_DIR to a folder it can reach (for example \
                 under /var/lib or /tmp), or set SCHEDULER_DATABASE_URL",
                ancestor.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}
