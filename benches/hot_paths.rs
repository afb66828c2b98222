//! Criterion benchmarks of the hot paths: next-tick computation, counting and locating
//! missed ticks after an outage, tick planning for a batch (the CPU side of
//! materialization), the ticker's batch transaction and the dispatcher's claim transaction
//! against a real PostgreSQL (a throwaway embedded cluster).
//!
//! `cargo bench --bench hot_paths` (figures in docs/PERFORMANCE.md).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use cron_scheduler::{
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres, OnExit},
    },
    fleet::{
        ticker::{TickSettings, tick_once},
        ticks::{CatchupLimits, Lead, plan},
    },
    launcher::{LaunchSettings, claim},
    schedules::{
        CatchupPolicy, CronSpec, Window,
        count::{count_ticks, last_ticks_before},
        exclusions::Exclusions,
    },
    telemetry::Metrics,
};
use sqlx::{Connection, PgPool};

fn next_tick(c: &mut Criterion) {
    let from: DateTime<Utc> = "2026-03-08T06:59:30Z".parse().unwrap();
    let mut group = c.benchmark_group("next_tick");
    for (name, expr, tz) in [
        ("every_second_utc", "* * * * * *", "UTC"),
        ("daily_new_york_dst_day", "30 2 * * *", "America/New_York"),
        (
            "last_friday_lord_howe",
            "0 9 * * 5#L",
            "Australia/Lord_Howe",
        ),
        (
            "weekday_business_hours",
            "*/15 9-17 * * MON-FRI",
            "Europe/London",
        ),
    ] {
        let spec = CronSpec::parse(expr, tz).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| spec.next(std::hint::black_box(from), false))
        });
    }
    group.finish();
}

/// An every-second schedule in a DST zone, a week and a year behind: the cost must not
/// grow with the 604,800 or 31.5 million missed ticks.
fn missed_ticks(c: &mut Criterion) {
    let w = Window {
        spec: CronSpec::parse("* * * * * *", "America/New_York").unwrap(),
        start_at: None,
        end_at: None,
    };
    let now: DateTime<Utc> = "2027-01-01T05:00:00Z".parse().unwrap();
    let mut group = c.benchmark_group("missed_ticks");
    for (name, behind) in [
        ("7_days", TimeDelta::days(7)),
        ("1_year", TimeDelta::days(365)),
    ] {
        let from = now - behind;
        group.bench_function(BenchmarkId::new("count_every_second", name), |b| {
            b.iter(|| count_ticks(&w, std::hint::black_box(from), now, 100))
        });
    }
    let from = now - TimeDelta::days(365);
    group.bench_function("last_10_every_second_1_year", |b| {
        b.iter(|| last_ticks_before(&w, std::hint::black_box(from), now, 10))
    });
    group.finish();
}

fn limits() -> CatchupLimits {
    CatchupLimits {
        misfire_grace: Duration::from_secs(5),
        max_catchup_runs: 10,
        spread: Duration::from_secs(60),
    }
}

fn plan_batch(c: &mut Criterion) {
    let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let windows: Vec<(String, Window)> = (0..500)
        .map(|i| {
            let expr = if i % 2 == 0 {
                "* * * * * *"
            } else {
                "0 * * * * *"
            };
            let w = Window {
                spec: CronSpec::parse(expr, "Europe/Berlin").unwrap(),
                start_at: None,
                end_at: None,
            };
            (format!("s{i}"), w)
        })
        .collect();
    c.bench_function("plan_500_schedules_2s_lookahead", |b| {
        b.iter(|| {
            let mut runs = 0;
            for (id, w) in &windows {
                let p = plan(
                    id,
                    w,
                    250,
                    CatchupPolicy::FireImmediately,
                    now,
                    now,
                    &Lead {
                        min: Duration::from_secs(2),
                        max: Duration::from_secs(600),
                    },
                    &limits(),
                    &Exclusions::none(),
                );
                runs += p.runs.len();
            }
            runs
        });
    });
}

struct Db {
    _pg: EmbeddedPostgres,
    url: String,
    pool: PgPool,
}

fn database(rt: &tokio::runtime::Runtime) -> Db {
    let dir = std::env::temp_dir().join(format!(
        "cron-scheduler-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let pg = EmbeddedPostgres::start(&EmbeddedOptions {
        dir,
        bin_dir: None,
        ephemeral: true,
        on_exit: OnExit::StopAndRemove,
        max_connections: 50,
        port: None,
    })
    .expect("bench PostgreSQL");
    rt.block_on(async {
        db::create_database(&pg.url("postgres"), "bench").await.unwrap();
        let url = pg.url("bench");
        let pool = PgPool::connect(&url).await.unwrap();
        db::migrate(&pool).await.unwrap();
        sqlx::query("insert into fleet_state (cluster_name, worker_enabled, leader_epoch) values ('default', true, 1)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("insert into workflow_versions (workflow_id, version, dag) values ('wf', 1, '{}')")
            .execute(&pool)
            .await
            .unwrap();
        Db { _pg: pg, url, pool }
    })
}

fn database_paths(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = database(&rt);
    let metrics = Arc::new(Metrics::detached());

    // The ticker: 500 due every-second schedules, one pass writes their next 2 s of ticks.
    rt.block_on(async {
        sqlx::query(
            "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, timezone, \
               overlap_policy, catchup_policy, next_due_at) \
             select 't' || g, 'wf', 1, 'u', '* * * * * *', 'UTC', 'allow', 'none', now() \
             from generate_series(1, 500) g",
        )
        .execute(&db.pool)
        .await
        .unwrap();
    });
    let settings = TickSettings {
        lookahead: Duration::from_secs(2),
        cohort_lookahead: Duration::from_secs(600),
        limits: limits(),
        max_rows: 10_000,
        batch_target: Duration::from_millis(250),
        statement_timeout: Duration::from_secs(10),
        max_queued: 100,
        notify_within: Duration::from_secs(2),
    };
    let mut group = c.benchmark_group("database");
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("tick_pass", "500_schedules"), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let url = db.url.clone();
            let pool = db.pool.clone();
            let settings = settings.clone();
            let metrics = metrics.clone();
            async move {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    sqlx::query(
                        "update schedules set next_due_at = now() where schedule_id like 't%'",
                    )
                    .execute(&pool)
                    .await
                    .unwrap();
                    sqlx::query("delete from runs")
                        .execute(&pool)
                        .await
                        .unwrap();
                    let started = std::time::Instant::now();
                    tick_once(&mut conn, &settings, "default", "bench", 1, &metrics)
                        .await
                        .unwrap();
                    total += started.elapsed();
                }
                total
            }
        });
    });

    // The dispatcher's claim: 256 due runs out of 10,000 pending.
    let launch = LaunchSettings {
        cluster_name: "default".into(),
        node_id: "bench".into(),
        batch: 256,
        concurrency: 256,
        arm_window: Duration::from_secs(1),
        lease: Duration::from_secs(15),
        executor_timeout: Duration::from_secs(10),
        retry_for: Duration::from_secs(3600),
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        run_timeout: Duration::from_secs(3600),
        idle_poll: Duration::from_millis(500),
        dag_cache_bytes: cron_scheduler::launcher::dags::DEFAULT_CACHE_BYTES,
    };
    group.bench_function(BenchmarkId::new("claim", "256_of_10000"), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pool = db.pool.clone();
            let launch = launch.clone();
            async move {
                sqlx::query("delete from runs").execute(&pool).await.unwrap();
                sqlx::query(
                    "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
                       workflow_id, version, user_id, idempotency_key) \
                     select gen_random_uuid(), null, now() - g * interval '1 ms', now() - g * interval '1 ms', \
                       'pending', 'manual', 'wf', 1, 'u', gen_random_uuid()::text \
                     from generate_series(1, 10000) g",
                )
                .execute(&pool)
                .await
                .unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = std::time::Instant::now();
                    let claimed = claim(&pool, &launch, 256, true).await.unwrap();
                    total += started.elapsed();
                    assert_eq!(claimed.runs.len(), 256);
                    sqlx::query("update runs set status = 'pending' where status = 'launching'")
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                total
            }
        });
    });
    group.finish();
}

criterion_group!(benches, next_tick, missed_ticks, plan_batch, database_paths);
criterion_main!(benches);
