//! The failover drill: a fleet of real replica processes on a lab PostgreSQL, each reaching
//! the database through its own [`FaultProxy`], launching to the in-process mock Executor.
//! For a set time it injects faults at random (the leader most of all): SIGKILL, SIGSTOP
//! then SIGCONT, killing a follower, a silent partition of the leader's database traffic,
//! cutting a replica's connections, taking the Executor down and up, and crashing
//! PostgreSQL. Then it lets the fleet settle and checks every tick of every schedule
//! (every-second cron schedules, interval schedules and calendar schedules, their ticks
//! computed from their rules): exactly one run row, none missing, none at an instant that
//! is not a tick; each tick's row as its calendar says (today is a holiday: `skipped` with
//! reason `calendar`, or pending at tomorrow's same time for `next_business_day`); every
//! run that came due delivered to the Executor. It prints takeover times
//! per fault and the duplicate deliveries the Executor saw (harmless: same key).

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use chrono::{NaiveDate, Timelike};
use cron_scheduler::{
    kinds::{OnExcluded, RunReason, RunStatus},
    mock_executor::Behaviour,
    schedules::{
        CronSpec, Window,
        exclusions::{CalendarRules, Exclusions, TickFate},
        interval::Interval,
    },
};

use super::{
    LabDb, Replica, fleet::MockServer, leader, proxy::FaultProxy, proxy::Mode, quantile,
    replica_env,
};

#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// Replicas in the fleet.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// How long to inject faults, in seconds.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Every-second schedules to check.
    #[arg(long, default_value_t = 20)]
    pub schedules: usize,
    /// Interval schedules to check besides (`PT2S`, `PT3S`, `PT5S`, `PT7S` in turn, each
    /// anchored at a different second).
    #[arg(long, default_value_t = 8)]
    pub intervals: usize,
    /// Calendar schedules besides, half and half: every-second schedules whose calendar
    /// excludes today (every tick recorded `skipped`, reason `calendar`), and fixed-time
    /// schedules due during the drill that move to the next business day (one pending run
    /// each, at tomorrow's same time).
    #[arg(long, default_value_t = 8)]
    pub calendar_schedules: usize,
    /// Leader lease in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub lease_ms: u64,
    /// Seconds between faults (a random pause from half to one and a half of this).
    #[arg(long, default_value_t = 4)]
    pub every: u64,
    /// The `cron-scheduler` binary (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
enum Fault {
    KillLeader,
    FreezeLeader,
    KillFollower,
    PartitionLeader,
    CutReplica,
    ExecutorDown,
    RestartPostgres,
}

#[derive(Debug, Serialize)]
struct FaultStats {
    count: usize,
    takeover_p50_ms: Option<f64>,
    takeover_max_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct DrillReport {
    duration_s: u64,
    replicas: usize,
    schedules: usize,
    interval_schedules: usize,
    calendar_schedules: usize,
    faults: BTreeMap<String, FaultStats>,
    leader_kills_and_freezes: usize,
    ticks_checked: i64,
    run_rows: i64,
    duplicate_run_rows: i64,
    missing_ticks: i64,
    /// Run rows at an instant that is not one of their schedule's ticks.
    unexpected_ticks: i64,
    /// Ticks a calendar excludes, recorded `skipped` (reason `calendar`).
    calendar_skipped: i64,
    /// Ticks a calendar moved, pending at their moved time.
    calendar_moved: i64,
    /// Rows whose status or fire time is not what the calendar says of their tick.
    wrong_calendar_fates: i64,
    undelivered_runs: usize,
    executor_requests: u64,
    duplicate_deliveries: u64,
    passed: bool,
}

/// A tiny deterministic random source (xorshift), seeded from the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The drill's schedules: id, the rule part of its upsert body, its ticks as the lab
/// computes them (to check the rows against), and what its holiday does (`None`: it names
/// no calendar). `now` places the fixed-time calendar schedules' ticks inside the drill.
type DrillSchedule = (String, serde_json::Value, Window, Option<OnExcluded>);

/// A run row as the check reads it: tick, status, reason, fire time.
type TickRow = (DateTime<Utc>, RunStatus, Option<RunReason>, DateTime<Utc>);

fn drill_schedules(args: &DrillArgs, now: DateTime<Utc>) -> anyhow::Result<Vec<DrillSchedule>> {
    let window = |spec: CronSpec| Window {
        spec,
        start_at: None,
        end_at: None,
    };
    let mut out = Vec::new();
    for i in 0..args.schedules {
        out.push((
            format!("d{i}"),
            serde_json::json!({"cron_expr": "* * * * * *"}),
            window(CronSpec::parse("* * * * * *", "UTC")?),
            None,
        ));
    }
    let skipping = args.calendar_schedules.div_ceil(2);
    for i in 0..skipping {
        out.push((
            format!("c{i}"),
            serde_json::json!({"cron_expr": "* * * * * *", "exclude_calendars": ["drill-holiday"]}),
            window(CronSpec::parse("* * * * * *", "UTC")?),
            Some(OnExcluded::Skip),
        ));
    }
    // Fixed-time ticks spread over the drill, from 20 s in to 10 s before its end.
    let moving = args.calendar_schedules - skipping;
    let span = i64::try_from(args.duration)?.saturating_sub(30).max(1);
    for i in 0..moving {
        let offset = 20 + span * i64::try_from(i)? / i64::try_from(moving.max(1))?;
        let at = now + chrono::TimeDelta::seconds(offset);
        let expr = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
        out.push((
            format!("m{i}"),
            serde_json::json!({"cron_expr": expr, "exclude_calendars": ["drill-holiday"],
                               "on_excluded": "next_business_day"}),
            window(CronSpec::parse(&expr, "UTC")?),
            Some(OnExcluded::NextBusinessDay),
        ));
    }
    for i in 0..args.intervals {
        let period = [2, 3, 5, 7][i % 4];
        let anchor = DateTime::from_timestamp(1_767_225_600 + i64::try_from(i)?, 0)
            .ok_or_else(|| anyhow::anyhow!("anchor"))?;
        out.push((
            format!("i{i}"),
            serde_json::json!({"interval": format!("PT{period}S"), "anchor": anchor}),
            window(CronSpec::every(
                Interval::new(period, Some(anchor)).map_err(anyhow::Error::msg)?,
                "UTC",
            )?),
            None,
        ));
    }
    Ok(out)
}

/// Waits until the cluster's epoch passes `old_epoch` with another leader; the time it took.
async fn takeover(
    db: &LabDb,
    old_leader: &str,
    old_epoch: i64,
    since: Instant,
) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((Some(node), epoch)) = leader(&db.pool).await {
            if epoch > old_epoch && node != old_leader {
                return Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

pub async fn run(args: DrillArgs) -> anyhow::Result<DrillReport> {
    let dir = super::workdir("cron-scheduler-drill-")?;
    let bin = args.bin.clone().unwrap_or_else(super::sibling_binary);
    let mut db = LabDb::start(dir.path(), true).await?;
    let http = reqwest::Client::new();

    let mut mock_server = MockServer::start(Behaviour::default()).await?;
    let mock = mock_server.mock.clone();
    let executor = mock_server.url();

    let upstream = SocketAddr::from(([127, 0, 0, 1], db.port()));
    let mut proxies = Vec::new();
    let mut fleet = Vec::new();
    for i in 0..args.replicas {
        let proxy = FaultProxy::start(upstream).await?;
        let url = db.url.replace(
            &format!(":{}/", db.port()),
            &format!(":{}/", proxy.addr().port()),
        );
        let env = replica_env(
            &url,
            &executor,
            &[
                ("SCHEDULER_LEADER_LEASE_MS", args.lease_ms.to_string()),
                ("SCHEDULER_LOOKAHEAD_MS", "1000".into()),
                ("SCHEDULER_MAX_CATCHUP_RUNS", "100000".into()),
                (
                    "SCHEDULER_DEFAULT_CATCHUP_POLICY",
                    "fire_immediately".into(),
                ),
                ("SCHEDULER_DEFAULT_OVERLAP_POLICY", "allow".into()),
                ("SCHEDULER_LAUNCH_BACKOFF_MAX_MS", "1000".into()),
                ("SCHEDULER_LAUNCH_BACKOFF_MS", "200".into()),
                ("SCHEDULER_EXECUTOR_TIMEOUT_MS", "2000".into()),
                ("SCHEDULER_DB_ACQUIRE_TIMEOUT_MS", "2000".into()),
            ],
        );
        fleet.push(Replica::spawn(&bin, &format!("r{i}"), env, dir.path())?);
        proxies.push(proxy);
    }
    for r in &fleet {
        r.wait_ready(&http, Duration::from_secs(60)).await?;
    }
    let api = fleet[0].base_url();
    http.put(format!("{api}/workflows/drill/versions/1"))
        .json(&serde_json::json!({"tasks": []}))
        .send()
        .await?
        .error_for_status()?;
    // The calendar: today (the database's UTC date) is a holiday.
    let today: NaiveDate = sqlx::query_scalar("select (now() at time zone 'UTC')::date")
        .fetch_one(&db.pool)
        .await?;
    http.put(format!("{api}/calendars/drill-holiday"))
        .json(&serde_json::json!({"user_id": "drill", "timezone": "UTC",
                                   "excluded_dates": [today.to_string()]}))
        .send()
        .await?
        .error_for_status()?;
    let holiday = CalendarRules::new("drill-holiday", chrono_tz::UTC, vec![today], vec![], &[]);
    let db_now: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&db.pool)
        .await?;
    let schedules = drill_schedules(&args, db_now)?;
    for (id, body, _, _) in &schedules {
        let mut body = body.clone();
        body["schedule_id"] = serde_json::json!(id);
        for (k, v) in [
            ("workflow_id", serde_json::json!("drill")),
            ("version", serde_json::json!(1)),
            ("user_id", serde_json::json!("drill")),
            ("overlap_policy", serde_json::json!("allow")),
            ("catchup_policy", serde_json::json!("fire_immediately")),
        ] {
            body[k] = v;
        }
        http.post(format!("{api}/schedules/upsert"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    let started_at: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&db.pool)
        .await?;
    println!(
        "drill: {} replicas, {} every-second, {} interval and {} calendar schedules, {} s of faults",
        args.replicas, args.schedules, args.intervals, args.calendar_schedules, args.duration
    );

    let mut rng =
        Rng(u64::try_from(Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1) | 1);
    let mut takeovers: BTreeMap<Fault, Vec<Duration>> = BTreeMap::new();
    let mut counts: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut last_pg_restart = Instant::now();
    let end = Instant::now() + Duration::from_secs(args.duration);
    let lease = Duration::from_millis(args.lease_ms);
    while Instant::now() < end {
        let pause = args.every * 500 + rng.below(args.every * 1000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let Some((Some(current), epoch)) = leader(&db.pool).await else {
            continue;
        };
        let Some(li) = fleet.iter().position(|r| r.id == current) else {
            continue;
        };
        let roll = rng.below(100);
        let fault = match roll {
            0..=37 => Fault::KillLeader,
            38..=69 => Fault::FreezeLeader,
            70..=76 => Fault::KillFollower,
            77..=84 => Fault::PartitionLeader,
            85..=89 => Fault::CutReplica,
            90..=95 => Fault::ExecutorDown,
            _ if last_pg_restart.elapsed() > Duration::from_secs(60) => Fault::RestartPostgres,
            _ => Fault::KillLeader,
        };
        *counts.entry(fault).or_default() += 1;
        let t0 = Instant::now();
        match fault {
            Fault::KillLeader => {
                fleet[li].kill();
                if let Some(t) = takeover(&db, &current, epoch, t0).await {
                    takeovers.entry(fault).or_default().push(t);
                }
                fleet[li].restart()?;
            }
            Fault::FreezeLeader => {
                fleet[li].freeze();
                if let Some(t) = takeover(&db, &current, epoch, t0).await {
                    takeovers.entry(fault).or_default().push(t);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                fleet[li].thaw();
            }
            Fault::KillFollower => {
                let fi =
                    (li + 1 + usize::try_from(rng.below(args.replicas as u64 - 1)).unwrap_or(0))
                        % args.replicas;
                fleet[fi].kill();
                tokio::time::sleep(Duration::from_millis(500)).await;
                fleet[fi].restart()?;
            }
            Fault::PartitionLeader => {
                proxies[li].set(Mode::Blackhole);
                if let Some(t) = takeover(&db, &current, epoch, t0).await {
                    takeovers.entry(fault).or_default().push(t);
                }
                tokio::time::sleep(lease).await;
                proxies[li].set(Mode::Pass);
                proxies[li].cut();
            }
            Fault::CutReplica => {
                let ri = usize::try_from(rng.below(args.replicas as u64)).unwrap_or(0);
                proxies[ri].set(Mode::Refuse);
                proxies[ri].cut();
                tokio::time::sleep(Duration::from_secs(2)).await;
                proxies[ri].set(Mode::Pass);
            }
            Fault::ExecutorDown => {
                mock_server.down();
                tokio::time::sleep(Duration::from_secs(3)).await;
                mock_server.up().await?;
            }
            Fault::RestartPostgres => {
                last_pg_restart = Instant::now();
                let took = db.restart().await?;
                println!("drill: PostgreSQL crashed and restarted in {took:?}");
                if let Some(t) = takeover(&db, "", epoch, t0).await {
                    takeovers.entry(fault).or_default().push(t);
                }
            }
        }
        println!(
            "drill: {fault:?} (leader was {current}) -> {:?}",
            takeovers.get(&fault).and_then(|v| v.last())
        );
    }

    // Settle: everyone up and connected, then wait for every tick up to the cutoff to be
    // delivered.
    for (r, p) in fleet.iter_mut().zip(&proxies) {
        p.set(Mode::Pass);
        if r.frozen {
            r.thaw();
        }
        if !r.is_running() {
            r.restart()?;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cutoff: DateTime<Utc> = sqlx::query_scalar("select now() - interval '2 seconds'")
        .fetch_one(&db.pool)
        .await?;
    let settle = Instant::now() + Duration::from_secs(180);
    loop {
        // Runs moved to the next business day wait until tomorrow: not due here.
        let open: i64 = sqlx::query_scalar(
            "select count(*) from runs where scheduled_for <= $1 and status in ('pending', 'launching') \
             and fire_at < now() + interval '1 hour'",
        )
        .bind(cutoff)
        .fetch_one(&db.pool)
        .await?;
        if open == 0 || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Check every tick: from each schedule's first run to the cutoff, the ticks its rule
    // gives (computed here from the rule, not read back) against the rows.
    let mut ticks_checked = 0i64;
    let mut missing = 0i64;
    let mut unexpected = 0i64;
    let (mut calendar_skipped, mut calendar_moved, mut wrong_fates) = (0i64, 0i64, 0i64);
    for (id, _, window, on_excluded) in &schedules {
        let rows: Vec<TickRow> = sqlx::query_as(
            "select scheduled_for, status, reason, fire_at from runs where schedule_id = $1 \
                 and scheduled_for <= $2 order by 1",
        )
        .bind(id)
        .bind(cutoff)
        .fetch_all(&db.pool)
        .await?;
        let Some(first_tick) = rows.first().map(|r| r.0) else {
            println!("drill: {id} has no run at all");
            missing += 1;
            continue;
        };
        // What the calendar makes of each tick, computed here with the service's own
        // (pure) rules, against the row.
        let exclusions = match on_excluded {
            Some(policy) => {
                Exclusions::resolve(&["drill-holiday".to_owned()], *policy, |_| Some(&holiday))
            }
            None => Exclusions::none(),
        };
        for (tick, status, reason, fire_at) in &rows {
            let right = match exclusions.fate(*tick, &window.spec) {
                TickFate::Fire => *reason != Some(RunReason::Calendar),
                TickFate::Skipped { .. } => {
                    calendar_skipped += 1;
                    *status == RunStatus::Skipped && *reason == Some(RunReason::Calendar)
                }
                TickFate::Moved { to, .. } => {
                    calendar_moved += 1;
                    *fire_at == to && *status == RunStatus::Pending
                }
            };
            if !right {
                println!(
                    "drill: {id} tick {tick}: {status} {reason:?} at {fire_at}, not its calendar fate"
                );
                wrong_fates += 1;
            }
        }
        let expected: HashSet<DateTime<Utc>> = window
            .ticks_from(first_tick)
            .take_while(|t| *t <= cutoff)
            .collect();
        let present: HashSet<DateTime<Utc>> = rows.iter().map(|r| r.0).collect();
        ticks_checked += i64::try_from(expected.len()).unwrap_or(i64::MAX);
        missing += i64::try_from(expected.difference(&present).count()).unwrap_or(i64::MAX);
        unexpected += i64::try_from(present.difference(&expected).count()).unwrap_or(i64::MAX);
    }
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct (schedule_id, scheduled_for)) from runs where scheduled_for <= $1",
    )
    .bind(cutoff)
    .fetch_one(&db.pool)
    .await?;
    // Every run that was due (not one a calendar skipped or moved to tomorrow) reached the
    // Executor.
    let run_ids: Vec<Uuid> = sqlx::query_scalar(
        "select run_id from runs where scheduled_for <= $1 and reason is distinct from 'calendar' \
         and fire_at < now() + interval '1 hour'",
    )
    .bind(cutoff)
    .fetch_all(&db.pool)
    .await?;
    let accepted: HashSet<Uuid> = mock
        .received()
        .into_iter()
        .filter(|r| r.status == 202 || r.status == 409)
        .map(|r| r.run_id)
        .collect();
    let undelivered = run_ids.iter().filter(|id| !accepted.contains(id)).count();
    let stats = mock.stats();

    for r in &mut fleet {
        r.terminate(Duration::from_secs(10));
    }
    let _ = started_at;
    let faults = counts
        .iter()
        .map(|(f, n)| {
            let mut ms: Vec<f64> = takeovers
                .get(f)
                .map(|v| v.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
                .unwrap_or_default();
            ms.sort_by(f64::total_cmp);
            let stats = FaultStats {
                count: *n,
                takeover_p50_ms: (!ms.is_empty()).then(|| quantile(&ms, 0.5)),
                takeover_max_ms: ms.last().copied(),
            };
            (format!("{f:?}"), stats)
        })
        .collect();
    let report = DrillReport {
        duration_s: args.duration,
        replicas: args.replicas,
        schedules: args.schedules,
        interval_schedules: args.intervals,
        calendar_schedules: args.calendar_schedules,
        faults,
        leader_kills_and_freezes: counts.get(&Fault::KillLeader).copied().unwrap_or(0)
            + counts.get(&Fault::FreezeLeader).copied().unwrap_or(0),
        ticks_checked,
        run_rows: rows,
        duplicate_run_rows: rows - distinct,
        missing_ticks: missing,
        unexpected_ticks: unexpected,
        calendar_skipped,
        calendar_moved,
        wrong_calendar_fates: wrong_fates,
        undelivered_runs: undelivered,
        executor_requests: stats.requests,
        duplicate_deliveries: stats.duplicate_deliveries,
        passed: missing == 0
            && unexpected == 0
            && wrong_fates == 0
            && rows == distinct
            && undelivered == 0,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

fn print_report(r: &DrillReport) {
    println!();
    println!(
        "{:<18} {:>6} {:>16} {:>16}",
        "fault", "count", "takeover p50 ms", "takeover max ms"
    );
    for (name, s) in &r.faults {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        println!(
            "{:<18} {:>6} {:>16} {:>16}",
            name,
            s.count,
            f(s.takeover_p50_ms),
            f(s.takeover_max_ms)
        );
    }
    println!();
    println!("leader kills + freezes   {}", r.leader_kills_and_freezes);
    println!("ticks checked            {}", r.ticks_checked);
    println!("run rows                 {}", r.run_rows);
    println!("duplicate run rows       {}", r.duplicate_run_rows);
    println!("missing ticks            {}", r.missing_ticks);
    println!("unexpected ticks         {}", r.unexpected_ticks);
    println!(
        "calendar: skipped {}, moved {}, wrong fates {}",
        r.calendar_skipped, r.calendar_moved, r.wrong_calendar_fates
    );
    println!("undelivered runs         {}", r.undelivered_runs);
    println!("executor requests        {}", r.executor_requests);
    println!(
        "duplicate deliveries     {} (same Idempotency-Key; the Executor deduplicates)",
        r.duplicate_deliveries
    );
    println!(
        "result                   {}",
        if r.passed { "PASS" } else { "FAIL" }
    );
}
