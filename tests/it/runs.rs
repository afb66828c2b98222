//! Run history over the API: a run by id, and a schedule's runs newest tick first, paged
//! by cursor, filtered by status. Runs are inserted with SQL, as the leader would.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

/// Inserts a run of `schedule_id` for the tick `scheduled_for` with `status`; returns its id.
async fn insert_run(
    pool: &PgPool,
    schedule_id: &str,
    scheduled_for: DateTime<Utc>,
    status: &str,
) -> Uuid {
    let run_id = Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key) \
         values ($1, $2, $3, $3, $4, 'schedule', 'wf', 1, 'alice', $1::text)",
    )
    .bind(run_id)
    .bind(schedule_id)
    .bind(scheduled_for)
    .bind(status)
    .execute(pool)
    .await
    .expect("insert run");
    run_id
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ticks(page: &Value) -> Vec<DateTime<Utc>> {
    page["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {page}"))
        .iter()
        .map(|r| r["scheduled_for"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Follows `next_cursor` from `first` to the last page; returns every tick seen, in order,
/// and the number of pages.
async fn walk(app: &TestApp, first: &str) -> (Vec<DateTime<Utc>>, usize) {
    let mut seen = Vec::new();
    let mut path = first.to_owned();
    for pages in 1..=100 {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        seen.extend(ticks(&page));
        match &page["next_cursor"] {
            Value::Null => return (seen, pages),
            Value::String(c) => {
                let sep = if first.contains('?') { '&' } else { '?' };
                path = format!("{first}{sep}cursor={}", url_encode(c));
            }
            other => panic!("next_cursor is {other}"),
        }
    }
    panic!("pagination did not end");
}

/// Query-string escaping, so the test does not depend on what a cursor is made of.
fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn runs_are_listed_newest_tick_first() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "s"})).await;
    // Inserted out of order, so neither run id nor insertion order gives the answer.
    let inserted = [
        "2030-01-01T02:00:00Z",
        "2031-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z",
        "2030-06-01T00:00:00Z",
        "2030-01-01T01:00:00Z",
    ];
    for t in inserted {
        insert_run(&app.pool, "s", at(t), "pending").await;
    }
    let (status, page) = app.get("/schedules/s/runs").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut expected: Vec<_> = inserted.iter().map(|t| at(t)).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(ticks(&page), expected);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn pages_return_every_run_exactly_once() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "p"})).await;
    app.create_schedule(json!({"schedule_id": "other"})).await;
    // Pairs of ticks one microsecond apart: a cursor that lost any precision would skip
    // or repeat a run at a page boundary.
    let base = at("2030-01-01T00:00:00Z");
    let mut expected: Vec<_> = (0..24)
        .map(|i| base + Duration::minutes(i / 2) + Duration::microseconds(i % 2))
        .collect();
    for (i, t) in expected.iter().enumerate().rev() {
        let status = if i % 3 == 0 { "failed" } else { "succeeded" };
        insert_run(&app.pool, "p", *t, status).await;
        // Same ticks on another schedule, which must not show up.
        insert_run(&app.pool, "other", *t, status).await;
    }
    expected.sort_by(|a, b| b.cmp(a));

    for limit in [1, 5, 7, 24, 25] {
        let (seen, pages) = walk(&app, &format!("/schedules/p/runs?limit={limit}")).await;
        assert_eq!(seen, expected, "limit {limit}");
        assert_eq!(
            pages,
            24_usize.div_ceil(limit),
            "limit {limit}: no empty last page"
        );
    }

    // The filter and the cursor combine.
    let (failed, _) = walk(&app, "/schedules/p/runs?status=failed&limit=3").await;
    let (all, _) = walk(&app, "/schedules/p/runs?limit=1000").await;
    assert_eq!(all, expected);
    assert_eq!(failed.len(), 8);
    assert!(failed.windows(2).all(|w| w[0] > w[1]), "{failed:?}");
}

#[tokio::test]
async fn the_default_page_is_100_runs() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "many"})).await;
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
           workflow_id, version, user_id, idempotency_key) \
         select gen_random_uuid(), 'many', t, t, 'succeeded', 'schedule', 'wf', 1, 'alice', \
           'many-' || t::text \
         from generate_series(timestamptz '2030-01-01', timestamptz '2030-01-01' + interval '100 minutes', \
           interval '1 minute') as t",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, page) = app.get("/schedules/many/runs").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ticks(&page).len(), 100);
    assert_eq!(ticks(&page)[0], at("2030-01-01T01:40:00Z"));
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, last) = app
        .get(&format!(
            "/schedules/many/runs?cursor={}",
            url_encode(cursor)
        ))
        .await;
    assert_eq!(ticks(&last), [at("2030-01-01T00:00:00Z")]);
    assert_eq!(last["next_cursor"], Value::Null);
}

#[tokio::test]
async fn status_filter_returns_only_that_status() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "f"})).await;
    let base = at("2030-01-01T00:00:00Z");
    let statuses = [
        "succeeded",
        "failed",
        "succeeded",
        "skipped",
        "failed_launch",
        "failed",
    ];
    for (i, s) in statuses.iter().enumerate() {
        insert_run(&app.pool, "f", base + Duration::hours(i as i64), s).await;
    }
    let statuses_of = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, failed) = app.get("/schedules/f/runs?status=failed").await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(statuses_of(&failed), ["failed", "failed"]);
    assert_eq!(
        ticks(&failed),
        [base + Duration::hours(5), base + Duration::hours(1)]
    );
    let (_, launch) = app.get("/schedules/f/runs?status=failed_launch").await;
    assert_eq!(statuses_of(&launch), ["failed_launch"]);
    // A known schedule with nothing matching is an empty page, not a 404.
    let (status, none) = app.get("/schedules/f/runs?status=running").await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none, json!({"runs": [], "next_cursor": null}));
}

#[tokio::test]
async fn a_run_has_its_fields_and_not_its_internal_ones() {
    let app = TestApp::spawn().await;
    let run_id = Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, reason, \
           workflow_id, version, user_id, idempotency_key, attempt, last_error, leader_epoch, \
           created_by, launched_by, lease_until, launched_at, finished_at) \
         values ($1, 'nightly', '2030-01-02T03:04:05.123456Z', '2030-01-02T03:04:06.5Z', \
           'failed_launch', 'catchup', 'executor_rejected', 'report', 7, 'bob', \
           'secret-idempotency-key', 3, 'HTTP 400: bad dag', 42, 'node-a', 'node-b', \
           '2030-01-02T03:05:00Z', '2030-01-02T03:04:07Z', '2030-01-02T03:04:09.000001Z')",
    )
    .bind(run_id)
    .execute(&app.pool)
    .await
    .unwrap();

    let (status, run) = app.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let mut keys: Vec<&str> = run
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = vec![
        "run_id",
        "schedule_id",
        "scheduled_for",
        "fire_at",
        "status",
        "trigger",
        "reason",
        "workflow_id",
        "version",
        "user_id",
        "attempt",
        "last_error",
        "leader_epoch",
        "created_by",
        "launched_by",
        "created_at",
        "updated_at",
        "launched_at",
        "finished_at",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert!(!run.to_string().contains("secret-idempotency-key"), "{run}");
    let want = json!({
        "run_id": run_id.to_string(),
        "schedule_id": "nightly",
        "scheduled_for": "2030-01-02T03:04:05.123456Z",
        "fire_at": "2030-01-02T03:04:06.500Z",
        "status": "failed_launch",
        "trigger": "catchup",
        "reason": "executor_rejected",
        "workflow_id": "report",
        "version": 7,
        "user_id": "bob",
        "attempt": 3,
        "last_error": "HTTP 400: bad dag",
        "leader_epoch": 42,
        "created_by": "node-a",
        "launched_by": "node-b",
        "launched_at": "2030-01-02T03:04:07Z",
        "finished_at": "2030-01-02T03:04:09.000001Z",
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&run[k], v, "{k}");
    }
    for k in ["created_at", "updated_at"] {
        let t = run[k].as_str().unwrap();
        assert!(t.ends_with('Z'), "{k} = {t}");
        let t: DateTime<Utc> = t.parse().unwrap();
        assert!((Utc::now() - t).num_minutes().abs() < 5, "{k} = {t}");
    }

    // A manual run belongs to no schedule; its unset fields are null.
    let manual = Uuid::now_v7();
    sqlx::query(
        "insert into runs (run_id, scheduled_for, fire_at, status, trigger, workflow_id, \
           version, user_id, idempotency_key) \
         values ($1, now(), now(), 'pending', 'manual', 'wf', 1, 'u', 'k2')",
    )
    .bind(manual)
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, run) = app.get(&format!("/runs/{manual}")).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["attempt"], 0);
    for k in [
        "schedule_id",
        "reason",
        "last_error",
        "leader_epoch",
        "launched_at",
        "finished_at",
    ] {
        assert_eq!(run[k], Value::Null, "{k}");
    }
}

#[tokio::test]
async fn unknown_runs_and_schedules_are_404() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "empty"})).await;
    insert_run(
        &app.pool,
        "empty-not",
        at("2030-01-01T00:00:00Z"),
        "pending",
    )
    .await;
    for path in [
        format!("/runs/{}", Uuid::now_v7()),
        "/runs/not-a-uuid".to_owned(),
        "/runs/12345".to_owned(),
        "/schedules/nope/runs".to_owned(),
        "/schedules/bad%20id/runs".to_owned(),
        "/schedules/empt/runs".to_owned(),
        // Parameters are checked, but an unknown schedule is still unknown.
        "/schedules/nope/runs?status=failed&limit=5".to_owned(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    // A schedule with no runs yet has an empty history, not a 404.
    let (status, body) = app.get("/schedules/empty/runs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"runs": [], "next_cursor": null}));
}

#[tokio::test]
async fn bad_parameters_are_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "q"})).await;
    insert_run(&app.pool, "q", at("2030-01-01T00:00:00Z"), "pending").await;
    for (query, field) in [
        ("status=bogus", "status"),
        ("status=Pending", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=2030-01-01", "cursor"),
        ("cursor=2030-13-01T00:00:00.000000Z", "cursor"),
    ] {
        let (status, body) = app.get(&format!("/schedules/q/runs?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    for query in ["limit=1", "limit=1000", "status=pending"] {
        let (status, body) = app.get(&format!("/schedules/q/runs?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(ticks(&body).len(), 1, "{query}");
    }
}

#[tokio::test]
async fn a_deleted_schedules_history_stays_listed() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "gone"})).await;
    app.create_schedule(json!({"schedule_id": "gone-empty"}))
        .await;
    let done = insert_run(&app.pool, "gone", at("2020-01-01T00:00:00Z"), "succeeded").await;
    let pending = insert_run(&app.pool, "gone", at("2099-01-01T00:00:00Z"), "pending").await;

    assert_eq!(
        app.delete("/schedules/gone").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/schedules/gone-empty").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/schedules/gone").await.0, StatusCode::NOT_FOUND);

    let (status, page) = app.get("/schedules/gone/runs").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{page}");
    assert_eq!(runs[0]["run_id"], pending.to_string());
    assert_eq!(runs[0]["status"], "cancelled");
    assert_eq!(runs[0]["reason"], "deleted");
    assert_eq!(runs[1]["run_id"], done.to_string());
    assert_eq!(runs[1]["status"], "succeeded");
    let (status, run) = app.get(&format!("/runs/{done}")).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["schedule_id"], "gone");

    // Filtered to nothing, the history is still known.
    let (status, _) = app.get("/schedules/gone/runs?status=running").await;
    assert_eq!(status, StatusCode::OK);
    // A deleted schedule that never ran leaves nothing behind.
    let (status, _) = app.get("/schedules/gone-empty/runs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_openapi_document_lists_the_run_endpoints() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/openapi.json").await;
    for path in ["/runs/{run_id}", "/schedules/{schedule_id}/runs"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    let schemas = &doc["components"]["schemas"];
    for schema in ["Run", "RunList", "RunStatus", "RunTrigger"] {
        assert!(schemas.get(schema).is_some(), "schema {schema} missing");
    }
    let run = &schemas["Run"]["properties"];
    assert!(run.get("scheduled_for").is_some());
    assert!(run.get("idempotency_key").is_none());
}
