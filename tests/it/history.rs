//! A long history must not slow the hot paths (DESIGN §2.5), and retention removes exactly
//! the runs that ended longer ago than `SCHEDULER_RUN_RETENTION`.
//!
//! The plan checks load one schedule with 200,000 finished runs (one `insert … select …
//! generate_series`), run each hot query's own text (the `const` the code runs) under
//! `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`, in a generic and in a custom plan, and bound
//! the rows its scans read by what is in flight or on the page.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use cron_scheduler::{
    db,
    fleet::{
        leader::NodeState,
        retention::{self, RetentionSettings, Walker},
    },
    launcher,
    runs::{RunStatus, store},
    telemetry::Metrics,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{TestApp, fresh_database, wait_for};

/// Finished runs in the long history.
const HISTORY: i64 = 200_000;

/// Inserts `n` finished runs of `schedule_id`, one a minute back from an hour ago, in one
/// statement: ids are UUID v7 of their tick (as if each was created at its tick), every
/// tenth run `failed`, four `timed_out` (a rare status), the rest `succeeded`.
async fn load_history(pool: &PgPool, schedule_id: &str, n: i64) {
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key, attempt, created_at, updated_at, \
           launched_at, finished_at) \
         select id, $1, t, t, status, 'schedule', 'wf', 1, 'alice', id::text, 1, t, \
           t + interval '1 minute', t, t + interval '1 minute' \
         from (select t, \
                 case when i % 50000 = 7 then 'timed_out' when i % 10 = 0 then 'failed' \
                      else 'succeeded' end as status, \
                 (lpad(to_hex(floor(extract(epoch from t) * 1000)::bigint), 12, '0') || '7' \
                   || substr(md5($1 || i), 1, 3) || '8' || substr(md5($1 || i), 4, 15))::uuid as id \
               from (select i, date_trunc('minute', now()) - interval '1 hour' \
                               - i * interval '1 minute' as t \
                     from generate_series(1, $2::int8) as i) g) h",
    )
    .bind(schedule_id)
    .bind(n)
    .execute(pool)
    .await
    .expect("load history");
}

/// Inserts one run with every field the tests vary; returns its id (UUID v7 of `created`).
#[allow(clippy::too_many_arguments)]
async fn insert_run(
    pool: &PgPool,
    schedule_id: Option<&str>,
    scheduled_for: DateTime<Utc>,
    status: &str,
    created: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    attempt: i32,
    exclusive_slot: bool,
) -> Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(created.timestamp()).unwrap(),
        created.timestamp_subsec_nanos(),
    );
    let run_id = Uuid::new_v7(ts);
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key, attempt, exclusive_slot, \
           lease_until, created_at, updated_at, finished_at) \
         values ($1, $2, $3, $3, $4, 'schedule', 'wf', 1, 'alice', $1::text, $5, $6, \
           case when $5 > 0 then now() + interval '1 minute' end, $7, $7, $8)",
    )
    .bind(run_id)
    .bind(schedule_id)
    .bind(scheduled_for)
    .bind(status)
    .bind(attempt)
    .bind(exclusive_slot)
    .bind(created)
    .bind(finished)
    .execute(pool)
    .await
    .expect("insert run");
    run_id
}

/// The pending runs a schedule with a long history has: four future ticks, and one tick
/// waiting to retry its launch (`attempt` 2) that holds the schedule's exclusive slot.
/// Plus one `running` run. Returns the pending ones.
async fn add_in_flight(pool: &PgPool, schedule_id: &str) -> Vec<Uuid> {
    let now = Utc::now();
    let mut pending = Vec::new();
    for h in 1..=4 {
        let tick = now + chrono::Duration::hours(h);
        pending.push(
            insert_run(
                pool,
                Some(schedule_id),
                tick,
                "pending",
                now,
                None,
                0,
                false,
            )
            .await,
        );
    }
    let retrying = now - chrono::Duration::seconds(30);
    pending.push(
        insert_run(
            pool,
            Some(schedule_id),
            retrying,
            "pending",
            now,
            None,
            2,
            true,
        )
        .await,
    );
    let running = now - chrono::Duration::minutes(20);
    insert_run(
        pool,
        Some(schedule_id),
        running,
        "running",
        now,
        None,
        1,
        false,
    )
    .await;
    pending
}

/// What `EXPLAIN ANALYZE` says a statement did.
#[derive(Debug)]
struct Explained {
    /// Rows the scans of tables read: returned plus removed by a filter or a recheck,
    /// times loops.
    rows_read: f64,
    /// Sequential scans of `runs` (there should be none).
    seq_scans: Vec<String>,
    /// Shared buffers hit or read (pages touched).
    pages: i64,
    plan: Value,
}

fn walk_plan(node: &Value, out: &mut Explained) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    // The subject is the history in `runs`: a small table joined in (`schedules`, empty
    // here) may be scanned.
    if kind == "Seq Scan" && node["Relation Name"] == "runs" {
        out.seq_scans
            .push(format!("{kind} on {}", node["Relation Name"]));
    }
    if node.get("Relation Name").is_some() && kind.ends_with("Scan") {
        let f = |k: &str| node[k].as_f64().unwrap_or(0.0);
        out.rows_read += f("Actual Loops")
            * (f("Actual Rows") + f("Rows Removed by Filter") + f("Rows Removed by Index Recheck"));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk_plan(child, out);
    }
}

/// How a statement under test is planned.
#[derive(Debug, Clone, Copy)]
enum Planning {
    /// A forced generic plan, as the plan cache may choose for a prepared statement.
    Generic,
    /// A forced custom plan, for the values at hand.
    Custom,
    /// As the hot path plans its batch transactions ([`db::plan_batch`]).
    Batch(db::BatchPlan),
}

/// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of `sql` prepared and executed with `args`
/// (SQL literals), planned as `planning` says, inside a transaction that is rolled back
/// (the statement really runs: an update or delete changes nothing after).
async fn explain(conn: &mut PgConnection, sql: &str, args: &str, planning: Planning) -> Explained {
    let mode = match planning {
        Planning::Generic => "force_generic_plan",
        Planning::Custom => "force_custom_plan",
        Planning::Batch(_) => "auto",
    };
    sqlx::raw_sql(&format!(
        "set plan_cache_mode = {mode}; prepare hot as {sql}; begin"
    ))
    .execute(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
    if let Planning::Batch(plan) = planning {
        db::plan_batch(&mut *conn, plan).await.unwrap();
    }
    let row = sqlx::raw_sql(&format!(
        "explain (analyze, buffers, format json) execute hot({args})"
    ))
    .fetch_one(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("explain {sql} with {args}: {e}"));
    sqlx::raw_sql("rollback; deallocate hot; reset plan_cache_mode")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Value = sqlx::Row::try_get::<sqlx::types::Json<Value>, _>(&row, 0)
        .expect("EXPLAIN answers JSON")
        .0;
    let top = &plan[0]["Plan"];
    let mut out = Explained {
        rows_read: 0.0,
        seq_scans: Vec::new(),
        pages: top["Shared Hit Blocks"].as_i64().unwrap_or(0)
            + top["Shared Read Blocks"].as_i64().unwrap_or(0),
        plan: plan.clone(),
    };
    walk_plan(top, &mut out);
    out
}

/// Statistics taken while every run was `pending` (a fresh deployment, or a table analyzed
/// just before a cohort was written) say that no run is `launching`. With them, a batch
/// joined to `runs` was planned as "every launching run, times the whole batch": 4,096
/// outcomes against 60,000 runs in flight took 12 s, leases ran out, and runs were sent
/// twice. The batch writes must read their batch whatever the statistics say.
#[tokio::test]
async fn batch_writes_read_their_batch_with_statistics_from_before_a_burst() {
    const IN_FLIGHT: i64 = 50_000;
    const BATCH: i64 = 2_000;
    let (_url, pool) = fresh_database().await;
    sqlx::query("alter table runs set (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .unwrap();
    let insert = |n: i64, status: &'static str, attempt: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
                   workflow_id, version, user_id, idempotency_key, attempt, launched_by, lease_until) \
                 select gen_random_uuid(), 's' || i, now() + i * interval '1 ms', \
                   now() + i * interval '1 ms', $2, 'schedule', 'wf', 1, 'alice', \
                   gen_random_uuid()::text, $3, case when $3 > 0 then 'n1' end, \
                   case when $3 > 0 then now() + interval '15 s' end \
                 from generate_series(1, $1) i",
            )
            .bind(n)
            .bind(status)
            .bind(attempt)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    insert(300, "pending", 0).await;
    sqlx::query("analyze runs").execute(&pool).await.unwrap();
    // The burst: the statistics above still say that every run is pending.
    insert(IN_FLIGHT, "launching", 1).await;
    let batch: Vec<Uuid> = sqlx::query_scalar(
        "select run_id from runs where status = 'launching' order by random() limit $1",
    )
    .bind(BATCH)
    .fetch_all(&pool)
    .await
    .unwrap();
    let ids = format!(
        "'{{{}}}'::uuid[]",
        batch
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let keys = format!(
        "'{{{}}}'::text[]",
        db::run_keys(batch.iter().map(|id| (id, 1))).join(",")
    );
    let cases = [
        (
            "record accepted launches",
            launcher::record::RECORD_ACCEPTED,
            format!("{ids}, {keys}, 3600"),
        ),
        (
            "renew leases",
            launcher::dispatch::RENEW,
            format!("{ids}, {keys}, 15000, 'n1'"),
        ),
    ];
    let mut conn = pool.acquire().await.unwrap();
    for (what, sql, args) in &cases {
        let e = explain(
            &mut conn,
            sql,
            args,
            Planning::Batch(db::BatchPlan::KeyLookups),
        )
        .await;
        println!("{what:<28} rows read {:>8}", e.rows_read);
        assert!(
            e.rows_read <= 2.0 * BATCH as f64,
            "{what} read {} rows for a batch of {BATCH} ({IN_FLIGHT} in flight)\n{:#}",
            e.rows_read,
            e.plan
        );
        assert!(
            e.rows_read >= BATCH as f64,
            "{what} did not find its batch: {} rows read\n{:#}",
            e.rows_read,
            e.plan
        );
    }
}

#[tokio::test]
async fn hot_queries_read_what_is_in_flight_or_on_the_page_not_the_history() {
    let (_url, pool) = fresh_database().await;
    load_history(&pool, "big", HISTORY).await;
    load_history(&pool, "other", 20_000).await;
    let pending = add_in_flight(&pool, "big").await;
    add_in_flight(&pool, "other").await;
    // What the rest of the fleet has in flight: 2,000 pending runs of 1,000 other
    // schedules. A query that reads every pending run (the dispatchers' due index) instead
    // of this schedule's shows up against this.
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key) \
         select gen_random_uuid(), 'p' || (i % 1000), now() + i * interval '1 second', \
           now() + i * interval '1 second', 'pending', 'schedule', 'wf', 1, 'alice', \
           gen_random_uuid()::text \
         from generate_series(1, 2000) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    // And a run whose replica died while launching it (its lease is over).
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key, attempt, lease_until) \
         values (gen_random_uuid(), 'p-dead', now(), now(), 'launching', 'schedule', 'wf', 1, \
           'alice', gen_random_uuid()::text, 1, now() - interval '1 second')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Statistics, as autovacuum keeps them in production. (Right after a bulk load without
    // them, the planner takes every schedule for a few rows: a custom plan of the listing
    // with a user filter then sorts the whole schedule instead of walking the index.)
    sqlx::query("analyze runs").execute(&pool).await.unwrap();
    let table_pages: i64 =
        sqlx::query_scalar("select relpages::int8 from pg_class where relname = 'runs'")
            .fetch_one(&pool)
            .await
            .unwrap();

    let retention = "interval '30 days'";
    let batch = retention::BATCH;
    // (what, SQL, arguments, most rows it may read)
    let cases: [(&str, &str, String, f64); 6] = [
        (
            "cancel pending",
            store::CANCEL_PENDING,
            "'big', 'paused'".into(),
            pending.len() as f64,
        ),
        (
            "first page",
            store::LIST,
            "'big', null, 101, null".into(),
            101.0,
        ),
        (
            "first page, one user",
            store::LIST,
            "'big', null, 101, 'alice'".into(),
            101.0,
        ),
        (
            "status filter, rare status",
            store::LIST_BY_STATUS,
            "'big', null, 101, null, 'timed_out'".into(),
            4.0,
        ),
        (
            "status filter, common status",
            store::LIST_BY_STATUS,
            "'big', null, 101, null, 'failed'".into(),
            101.0,
        ),
        (
            "retention batch",
            retention::DELETE_BATCH,
            format!("'{}', {retention}, {batch}", Uuid::nil()),
            // The ids it reads, then the same rows again to delete them.
            2.0 * batch as f64,
        ),
    ];
    // The dispatchers' queries walk what is in flight, whatever the history.
    let cases: Vec<(&str, &str, String, f64)> = cases
        .into_iter()
        .chain([
            (
                "claim candidates",
                launcher::claim::CANDIDATES,
                "100, 1.0".into(),
                100.0 + 10.0,
            ),
            (
                "claim reclaims",
                launcher::claim::EXPIRED,
                "100, 3600.0".into(),
                10.0,
            ),
            (
                "until next",
                launcher::maintenance::UNTIL_NEXT,
                "1.0".into(),
                10.0,
            ),
        ])
        .collect();
    let mut conn = pool.acquire().await.unwrap();
    println!(
        "history: {HISTORY} finished runs of one schedule, {} rows in runs, {table_pages} pages",
        HISTORY + 20_000 + 12
    );
    for (what, sql, args, most) in &cases {
        for generic in [true, false] {
            let planning = if generic {
                Planning::Generic
            } else {
                Planning::Custom
            };
            let e = explain(&mut conn, sql, args, planning).await;
            let plan = if generic { "generic" } else { "custom" };
            println!(
                "{what:<30} {plan:<8} rows read {:>6}  pages {:>5}",
                e.rows_read, e.pages
            );
            assert!(
                e.seq_scans.is_empty(),
                "{what} ({plan} plan): {:?}\n{:#}",
                e.seq_scans,
                e.plan
            );
            assert!(
                e.rows_read <= *most,
                "{what} ({plan} plan) read {} rows, at most {most} expected\n{:#}",
                e.rows_read,
                e.plan
            );
            assert!(
                e.rows_read > 0.0,
                "{what} ({plan} plan) read nothing: the case is wrong\n{:#}",
                e.plan
            );
        }
    }
}

#[tokio::test]
async fn pausing_a_schedule_with_a_long_history_cancels_exactly_its_pending_runs() {
    let app = TestApp::spawn_with(|c| c.run_retention = None).await;
    app.create_schedule(json!({"schedule_id": "big"})).await;
    app.create_schedule(json!({"schedule_id": "other"})).await;
    load_history(&app.pool, "big", HISTORY).await;
    let pending = add_in_flight(&app.pool, "big").await;
    let others = add_in_flight(&app.pool, "other").await;
    let counts = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, String, i64)>(
            "select schedule_id, status, count(*) from runs group by 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(schedule, status, n)| ((schedule, status), n))
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = counts(app.pool.clone()).await;

    let (status, body) = app
        .post("/schedules/big/pause", json!({"paused": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for run in &pending {
        let (status, reason, slot, finished): (
            String,
            Option<String>,
            bool,
            Option<DateTime<Utc>>,
        ) = sqlx::query_as(
            "select status, reason, exclusive_slot, finished_at from runs where run_id = $1",
        )
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), reason.as_deref()),
            ("cancelled", Some("paused"))
        );
        assert!(!slot, "a cancelled run keeps no exclusive slot");
        assert!(finished.is_some());
    }
    // The slot is free: another run of the schedule can take it.
    sqlx::query(
        "update runs set exclusive_slot = true \
         where schedule_id = 'big' and status = 'running'",
    )
    .execute(&app.pool)
    .await
    .expect("the cancelled retry freed the exclusive slot");
    for run in &others {
        assert_eq!(
            crate::common::run_status(&app.pool, *run).await.0,
            "pending"
        );
    }
    // Exactly the pending runs moved: every other count is what it was.
    let mut expected = before;
    let key = |status: &str| ("big".to_owned(), status.to_owned());
    expected.remove(&key("pending"));
    *expected.entry(key("cancelled")).or_default() += pending.len() as i64;
    assert_eq!(counts(app.pool.clone()).await, expected);
    app.stop().await;
}

/// `now() - d` on the database's clock.
async fn ago(pool: &PgPool, d: chrono::Duration) -> DateTime<Utc> {
    sqlx::query_scalar::<_, DateTime<Utc>>("select now()")
        .fetch_one(pool)
        .await
        .unwrap()
        - d
}

async fn remaining(pool: &PgPool) -> std::collections::BTreeSet<Uuid> {
    sqlx::query_scalar("select run_id from runs")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn retention_removes_runs_that_ended_before_it_and_nothing_in_flight() {
    let (_url, pool) = fresh_database().await;
    let hours = chrono::Duration::hours;
    let (created, ended, recently) = (
        ago(&pool, hours(3)).await,
        ago(&pool, hours(2)).await,
        ago(&pool, chrono::Duration::minutes(30)).await,
    );
    let mut expired = std::collections::BTreeSet::new();
    let mut kept = std::collections::BTreeSet::new();
    let mut tick = ago(&pool, hours(1000)).await;
    let mut next_tick = || {
        tick += chrono::Duration::minutes(1);
        tick
    };
    for status in RunStatus::ALL {
        // Every run here "ended" two hours ago, in flight or not: only the status may
        // protect a run in flight.
        let old = insert_run(
            &pool,
            Some("s"),
            next_tick(),
            status.as_str(),
            created,
            Some(ended),
            0,
            false,
        )
        .await;
        if status.is_terminal() {
            expired.insert(old);
            let young = insert_run(
                &pool,
                Some("s"),
                next_tick(),
                status.as_str(),
                created,
                Some(recently),
                0,
                false,
            )
            .await;
            kept.insert(young);
        } else {
            kept.insert(old);
        }
    }
    // In flight for ten days, and created ten days ago but ended just now (a revived tick).
    let ancient = ago(&pool, hours(240)).await;
    kept.insert(
        insert_run(
            &pool,
            Some("s"),
            next_tick(),
            "running",
            ancient,
            None,
            1,
            false,
        )
        .await,
    );
    let revived = insert_run(
        &pool,
        Some("s"),
        next_tick(),
        "succeeded",
        ancient,
        Some(recently),
        2,
        false,
    )
    .await;
    kept.insert(revived);
    // A manual launch (no schedule) that ended long ago.
    expired.insert(
        insert_run(
            &pool,
            None,
            next_tick(),
            "succeeded",
            ancient,
            Some(ended),
            1,
            false,
        )
        .await,
    );
    // Runs of the last minutes.
    let now = ago(&pool, chrono::Duration::zero()).await;
    for _ in 0..3 {
        kept.insert(
            insert_run(
                &pool,
                Some("s"),
                next_tick(),
                "succeeded",
                now,
                Some(now),
                1,
                false,
            )
            .await,
        );
    }

    // Small batches, so the pass takes several and resumes between them.
    let mut walker = Walker::new(Duration::from_secs(3600), 3);
    let deleted = walker.pass(&pool).await.unwrap();
    assert_eq!(deleted, expired.len() as u64);
    assert_eq!(
        remaining(&pool).await,
        kept,
        "exactly the expired runs are gone"
    );

    // The next pass starts at the first run the last one kept: once the revived tick has
    // ended long enough ago, it goes too.
    sqlx::query("update runs set finished_at = $2 where run_id = $1")
        .bind(revived)
        .bind(ended)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(walker.pass(&pool).await.unwrap(), 1);
    kept.remove(&revived);
    assert_eq!(remaining(&pool).await, kept);
    assert_eq!(
        walker.pass(&pool).await.unwrap(),
        0,
        "nothing left to remove"
    );
}

async fn deleted_total(app: &TestApp) -> Option<f64> {
    let text = app.metrics().await;
    text.lines()
        .find(|l| l.starts_with("scheduler_runs_deleted_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_leader_removes_expired_runs_and_zero_keeps_them_forever() {
    let removing = TestApp::spawn_with(|c| c.run_retention = Some(Duration::from_secs(3600))).await;
    let keeping = TestApp::spawn_with(|c| c.run_retention = None).await;
    for app in [&removing, &keeping] {
        load_history(&app.pool, "s", 1000).await;
        add_in_flight(&app.pool, "s").await;
    }
    let total = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("select count(*) from runs")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // The whole history ended more than an hour ago; the six runs in flight stay.
    let young = 6;
    wait_for(
        "the leader to remove expired runs",
        Duration::from_secs(20),
        || {
            let pool = removing.pool.clone();
            async move { total(pool).await == young }
        },
    )
    .await;
    assert_eq!(deleted_total(&removing).await, Some(1000.0));
    assert!(keeping.is_leader(), "the keeping replica leads too");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(total(keeping.pool.clone()).await, 1000 + 6);
    assert_eq!(deleted_total(&keeping).await, Some(0.0));

    // Retention off: the task ends at once and touches nothing.
    let off = RetentionSettings {
        retention: None,
        ..RetentionSettings::from_config(&crate::common::test_config())
    };
    let node = Arc::new(NodeState::new("n".into(), "c".into()));
    tokio::time::timeout(
        Duration::from_secs(1),
        retention::run(
            keeping.pool.clone(),
            off,
            node,
            Metrics::detached(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("retention off returns at once");
    assert_eq!(total(keeping.pool.clone()).await, 1000 + 6);
    removing.stop().await;
    keeping.stop().await;
}
