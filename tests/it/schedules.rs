//! The schedules API against a real database: create, replace, read, list, pause, delete,
//! and the pending runs each change cancels.

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, insert_pending_run, run_status, schedule_ids};

fn times(schedule: &Value) -> Vec<DateTime<Utc>> {
    schedule["next_fire_times"]
        .as_array()
        .expect("next_fire_times")
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn create_returns_201_with_next_fire_times_then_replace_returns_200() {
    let app = TestApp::spawn().await;
    let body = json!({
        "schedule_id": "nightly",
        "workflow_id": "report",
        "version": 1,
        "user_id": "alice",
        "cron_expr": "0 0 * * *",
    });
    let before = Utc::now();
    let (status, created) = app.post("/schedules/upsert", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["overlap_policy"], "skip");
    let next = times(&created);
    assert_eq!(next.len(), 5);
    // Daily at midnight UTC: five consecutive midnights, the first within a day.
    assert!(next[0] > before && next[0] <= before + Duration::days(1));
    for (i, t) in next.iter().enumerate() {
        assert_eq!((t.hour(), t.minute(), t.second()), (0, 0, 0), "{t}");
        if i > 0 {
            assert_eq!(*t - next[i - 1], Duration::days(1));
        }
    }
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let mut replaced = body;
    replaced["cron_expr"] = json!("30 6 * * MON");
    let (status, again) = app.post("/schedules/upsert", replaced).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["cron_expr"], "30 6 * * MON");
    assert_eq!(again["created_at"], created["created_at"]);
    assert_ne!(again["updated_at"], created["updated_at"]);
    for t in times(&again) {
        assert_eq!(t.format("%a %H:%M").to_string(), "Mon 06:30");
    }

    let (status, fetched) = app.get("/schedules/nightly").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["cron_expr"], "30 6 * * MON");
    assert_eq!(fetched["next_fire_times"], again["next_fire_times"]);
    let count: i64 = sqlx::query_scalar("select count(*) from schedules")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_fetched_schedule_can_be_sent_back_unchanged() {
    let app = TestApp::spawn().await;
    let created = app
        .create_schedule(json!({"schedule_id": "roundtrip", "jitter_ms": 250}))
        .await;
    let (status, again) = app.post("/schedules/upsert", created.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["jitter_ms"], 250);
    assert_eq!(again["created_at"], created["created_at"]);
}

#[tokio::test]
async fn an_id_is_generated_when_none_is_given() {
    let app = TestApp::spawn().await;
    let a = app.create_schedule(json!({})).await;
    let b = app.create_schedule(json!({})).await;
    let (a, b) = (
        a["schedule_id"].as_str().unwrap(),
        b["schedule_id"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(a).is_ok(), "{a}");
}

#[tokio::test]
async fn fire_times_follow_the_timezone_and_the_bounds() {
    let app = TestApp::spawn().await;
    let ny = app
        .create_schedule(json!({"cron_expr": "0 9 * * *", "timezone": "America/New_York"}))
        .await;
    let tz: Tz = "America/New_York".parse().unwrap();
    for t in times(&ny) {
        let local = t.with_timezone(&tz);
        assert_eq!(
            (local.hour(), local.minute()),
            (9, 0),
            "{t} is {local} in New York"
        );
    }

    // start_at is inclusive: a start exactly on a tick fires at the start.
    let start = "2040-05-01T10:00:00Z";
    let bounded = app
        .create_schedule(json!({
            "cron_expr": "0 * * * *",
            "start_at": start,
            "end_at": "2040-05-01T12:00:00Z",
        }))
        .await;
    let expected: Vec<DateTime<Utc>> = [
        "2040-05-01T10:00:00Z",
        "2040-05-01T11:00:00Z",
        "2040-05-01T12:00:00Z",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(times(&bounded), expected, "inclusive start and end");
    assert_eq!(bounded["start_at"], start);
}

#[tokio::test]
async fn a_schedule_past_its_end_is_completed() {
    let app = TestApp::spawn().await;
    let end = Utc::now() + Duration::seconds(2);
    let s = app
        .create_schedule(json!({"schedule_id": "short", "cron_expr": "* * * * * *", "end_at": end}))
        .await;
    assert_eq!(s["status"], "active");
    assert!(!times(&s).is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    let (_, s) = app.get("/schedules/short").await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(times(&s), Vec::<DateTime<Utc>>::new());

    // Pausing or unpausing a schedule with no future fire time is accepted (a switch, not
    // a spec change): 200, and it stays `completed`, firing nothing.
    let runs_before = app.get("/schedules/short/runs").await.1["runs"]
        .as_array()
        .unwrap()
        .len();
    for paused in [true, false] {
        let (status, s) = app
            .post("/schedules/short/pause", json!({"paused": paused}))
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(s["paused"], paused, "{s}");
        assert_eq!(times(&s), Vec::<DateTime<Utc>>::new());
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let runs_after = app.get("/schedules/short/runs").await.1["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        runs_after, runs_before,
        "an unpaused completed schedule fires nothing"
    );
}

#[tokio::test]
async fn list_filters_and_paginates_in_id_order() {
    let app = TestApp::spawn().await;
    for (id, user, wf, paused) in [
        ("a1", "alice", "w1", false),
        ("a2", "alice", "w2", true),
        ("a3", "alice", "w1", false),
        ("b1", "bob", "w1", false),
        ("b2", "bob", "w2", false),
    ] {
        app.create_schedule(
            json!({"schedule_id": id, "user_id": user, "workflow_id": wf, "paused": paused}),
        )
        .await;
    }
    let ids = schedule_ids;
    let (_, all) = app.get("/schedules").await;
    assert_eq!(ids(&all), ["a1", "a2", "a3", "b1", "b2"]);
    assert_eq!(all["next_cursor"], Value::Null);
    let (_, alice) = app.get("/schedules?user_id=alice").await;
    assert_eq!(ids(&alice), ["a1", "a2", "a3"]);
    let (_, w1) = app.get("/schedules?workflow_id=w1&user_id=alice").await;
    assert_eq!(ids(&w1), ["a1", "a3"]);
    let (_, paused) = app.get("/schedules?paused=true").await;
    assert_eq!(ids(&paused), ["a2"]);

    let mut seen = Vec::new();
    let mut path = "/schedules?limit=2".to_owned();
    for _ in 0..10 {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/schedules?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a1", "a2", "a3", "b1", "b2"]);
}

#[tokio::test]
async fn pause_cancels_pending_runs_and_unpause_resumes() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "p"})).await;
    let run = insert_pending_run(&app.pool, "p", "2099-01-01T00:00:00Z").await;

    let (status, paused) = app
        .post("/schedules/p/pause", json!({"paused": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["paused"], true);
    assert_eq!(times(&paused), Vec::<DateTime<Utc>>::new());
    assert_eq!(
        run_status(&app.pool, run).await,
        ("cancelled".into(), Some("paused".into()))
    );

    let (status, resumed) = app
        .post("/schedules/p/pause", json!({"paused": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["status"], "active");
    let next = times(&resumed);
    assert_eq!(next.len(), 5);
    assert!(next[0] > Utc::now() - Duration::seconds(5));
    let next_due: Option<DateTime<Utc>> =
        sqlx::query_scalar("select next_due_at from schedules where schedule_id = 'p'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(next_due, Some(next[0]), "resumes from the next future tick");
}

#[tokio::test]
async fn spec_changes_cancel_pending_runs_policy_changes_do_not() {
    let app = TestApp::spawn().await;
    let s = app.create_schedule(json!({"schedule_id": "s"})).await;
    let run = insert_pending_run(&app.pool, "s", "2099-01-01T00:00:00Z").await;

    let mut policy_only = s.clone();
    policy_only["overlap_policy"] = json!("queue");
    policy_only["catchup_policy"] = json!("spread");
    let (status, _) = app.post("/schedules/upsert", policy_only.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run_status(&app.pool, run).await.0, "pending");

    let mut new_cron = policy_only;
    new_cron["cron_expr"] = json!("*/5 * * * *");
    let (status, _) = app.post("/schedules/upsert", new_cron).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        run_status(&app.pool, run).await,
        ("cancelled".into(), Some("spec_changed".into()))
    );
    let generation: i64 =
        sqlx::query_scalar("select spec_generation from schedules where schedule_id = 's'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(generation, 2);
}

#[tokio::test]
async fn delete_cancels_pending_runs_and_forgets_the_schedule() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "d"})).await;
    app.create_schedule(json!({"schedule_id": "keep"})).await;
    let run = insert_pending_run(&app.pool, "d", "2099-01-01T00:00:00Z").await;
    let other = insert_pending_run(&app.pool, "keep", "2099-01-01T00:00:00Z").await;

    let (status, body) = app.delete("/schedules/d").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.get("/schedules/d").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("/schedules/d").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        run_status(&app.pool, run).await,
        ("cancelled".into(), Some("deleted".into()))
    );
    assert_eq!(run_status(&app.pool, other).await.0, "pending");
    assert_eq!(app.get("/schedules/keep").await.0, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_upserts_of_one_id_make_one_schedule() {
    let app = TestApp::spawn().await;
    let body = json!({"schedule_id": "race", "workflow_id": "wf", "version": 1, "user_id": "u", "cron_expr": "* * * * *"});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = app.http.clone();
        let url = app.url("/schedules/upsert");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url).json(&body).send().await.unwrap().status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from schedules")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

/// A schedule may be stored before its workflow version (deployers store DAGs later), but
/// the answer says so, and the schedule's view keeps saying it until the version exists.
#[tokio::test]
async fn a_schedule_for_an_unstored_workflow_version_is_accepted_with_a_warning() {
    let app = TestApp::spawn().await;
    let (status, created) = app
        .post(
            "/schedules/upsert",
            json!({"schedule_id": "early", "workflow_id": "later", "version": 3,
                   "user_id": "alice", "cron_expr": "0 0 * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let warnings = created["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{created}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("\"later\" version 3 is not stored")
            && warning.contains("PUT /workflows/later/versions/3"),
        "{warning}"
    );
    let (_, listed) = app.get("/schedules?workflow_id=later").await;
    assert_eq!(listed["schedules"][0]["warnings"], created["warnings"]);
    let (status, _) = app.put("/workflows/later/versions/3", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, now) = app.get("/schedules/early").await;
    assert_eq!(now["warnings"], json!([]), "{now}");
    app.stop().await;
}

#[tokio::test]
async fn list_filters_by_status() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "a"})).await;
    app.create_schedule(json!({"schedule_id": "p", "paused": true}))
        .await;
    app.create_schedule(json!({"schedule_id": "c"})).await;
    app.create_schedule(json!({"schedule_id": "cp", "paused": true}))
        .await;
    // Completed: no tick left (as the leader leaves a schedule past its end).
    sqlx::query("update schedules set next_due_at = null where schedule_id in ('c', 'cp')")
        .execute(&app.pool)
        .await
        .unwrap();
    let ids = schedule_ids;
    for (query, expected) in [
        ("status=active", vec!["a"]),
        ("status=paused", vec!["p"]),
        ("status=completed", vec!["c", "cp"]),
        ("status=completed&paused=true", vec!["cp"]),
        ("paused=true", vec!["cp", "p"]),
    ] {
        let (status, body) = app.get(&format!("/schedules?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(ids(&body), expected, "{query}");
        for s in body["schedules"].as_array().unwrap() {
            if let Some(want) = query.strip_prefix("status=") {
                assert_eq!(s["status"], want.split('&').next().unwrap(), "{query}");
            }
        }
    }
    for bad in [
        "status=done",
        "status=paused&paused=false",
        "status=active&paused=true",
    ] {
        let (status, body) = app.get(&format!("/schedules?{bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "status", "{bad}");
    }
    app.stop().await;
}

/// The DST policy is stored, shown, used for the next fire times (and by the leader, which
/// reads the same columns), refused when malformed, and previewed.
#[tokio::test]
async fn a_dst_policy_is_stored_and_shapes_the_fire_times() {
    let app = TestApp::spawn().await;
    // New York springs forward on 2027-03-14: 02:30 does not exist that day.
    let body = |gap: Value| {
        json!({"schedule_id": "ny", "workflow_id": "wf", "version": 1, "user_id": "alice",
               "cron_expr": "30 2 * * *", "timezone": "America/New_York",
               "start_at": "2027-03-13T00:00:00Z", "dst_gap": gap})
    };
    let shifted = app.create_schedule(body(Value::Null)).await;
    assert_eq!(shifted["dst_gap"], Value::Null);
    assert_eq!(
        times(&shifted)[..3],
        [
            t("2027-03-13T07:30:00Z"),
            t("2027-03-14T07:00:00Z"),
            t("2027-03-15T06:30:00Z")
        ]
    );
    let skipped = app.create_schedule(body(json!("skip"))).await;
    assert_eq!(skipped["dst_gap"], "skip");
    assert_eq!(skipped["dst_fold"], Value::Null);
    assert_eq!(
        times(&skipped)[..3],
        [
            t("2027-03-13T07:30:00Z"),
            t("2027-03-15T06:30:00Z"),
            t("2027-03-16T06:30:00Z")
        ]
    );
    let stored: (Option<String>, Option<String>) =
        sqlx::query_as("select dst_gap, dst_fold from schedules where schedule_id = 'ny'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, (Some("skip".into()), None));

    for (field, value) in [("dst_gap", "never"), ("dst_fold", "thrice")] {
        let mut bad = body(Value::Null);
        bad[field] = json!(value);
        let (status, err) = app.post("/schedules/upsert", bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let (_, still) = app.get("/schedules/ny").await;
    assert_eq!(still["dst_gap"], "skip", "a refused upsert changes nothing");

    let (status, preview) = app
        .post(
            "/cron/preview",
            json!({"cron_expr": "30 1 * * *", "timezone": "America/New_York",
                   "from": "2026-11-01T00:00:00Z", "count": 2, "dst_fold": "twice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let utc: Vec<&str> = preview["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["utc"].as_str().unwrap())
        .collect();
    assert_eq!(utc, ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"]);
    app.stop().await;
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}
