//! Calendars over real HTTP against a real PostgreSQL: the resource, who may see and use
//! it, schedules naming it, previews, and the leader skipping and moving excluded ticks.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};
use cron_scheduler::mock_executor::Behaviour;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    common::{TestApp, wait_for},
    launcher::{Mock, launch_config},
    security::{ADMIN, ALICE, BOB, call, secured},
};

fn holidays() -> Value {
    json!({
        "user_id": "alice",
        "timezone": "Europe/Berlin",
        "excluded_dates": ["2026-12-25", "2026-12-26"],
        "excluded_ranges": [{"from": "2026-12-31", "to": "2027-01-01"}],
        "weekly_off": ["sun", "sat"],
        "description": "Berlin office"
    })
}

fn schedule(id: &str, extra: Value) -> Value {
    let mut body = json!({
        "schedule_id": id, "workflow_id": "wf", "version": 1, "user_id": "alice",
        "cron_expr": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"
    });
    crate::common::merge(&mut body, extra);
    body
}

fn field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn calendars_are_stored_read_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let (status, cal) = app.put("/calendars/de-holidays", holidays()).await;
    assert_eq!(status, StatusCode::CREATED, "{cal}");
    assert_eq!(cal["name"], "de-holidays");
    assert_eq!(cal["timezone"], "Europe/Berlin");
    assert_eq!(cal["excluded_dates"], json!(["2026-12-25", "2026-12-26"]));
    assert_eq!(
        cal["excluded_ranges"],
        json!([{"from": "2026-12-31", "to": "2027-01-01"}])
    );
    assert_eq!(cal["weekly_off"], json!(["sat", "sun"]), "in week order");
    assert_eq!(cal["shared"], false);
    assert!(cal["created_at"].is_string() && cal["updated_at"].is_string());

    // What GET returns can be sent back as it is; a replacement is 200.
    let (status, got) = app.get("/calendars/de-holidays").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, cal);
    let mut again = got.clone();
    again["excluded_dates"] = json!(["2026-12-24"]);
    let (status, replaced) = app.put("/calendars/de-holidays", again).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["excluded_dates"], json!(["2026-12-24"]));
    assert_eq!(replaced["created_at"], cal["created_at"]);

    // Timezone defaults to UTC.
    let (status, utc) = app.put("/calendars/plain", json!({"user_id": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(utc["timezone"], "UTC");

    // Listing pages in name order.
    let (status, page) = app.get("/calendars?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["calendars"][0]["name"], "de-holidays");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) = app
        .get(&format!("/calendars?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(page["calendars"][0]["name"], "plain");
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, bobs) = app.get("/calendars?user_id=bob").await;
    assert_eq!(bobs["calendars"].as_array().unwrap().len(), 1);

    let (status, _) = app.delete("/calendars/plain").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/calendars/plain").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app.delete("/calendars/plain").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn bad_calendars_are_422_naming_the_field_and_store_nothing() {
    let app = TestApp::spawn().await;
    let with = |extra: Value| {
        let mut body = json!({"user_id": "alice"});
        crate::common::merge(&mut body, extra);
        body
    };
    let too_many: Vec<String> = (0..1001)
        .map(|i| (NaiveDate::from_ymd_opt(2030, 1, 1).unwrap() + TimeDelta::days(i)).to_string())
        .collect();
    let cases = [
        (json!({"timezone": "Europe/Berlin"}), "user_id"),
        (
            with(json!({"excluded_dates": ["2026-02-30"]})),
            "excluded_dates",
        ),
        (
            with(json!({"excluded_dates": ["2026/12/25"]})),
            "excluded_dates",
        ),
        (
            with(json!({"excluded_dates": ["1969-12-31"]})),
            "excluded_dates",
        ),
        (with(json!({"excluded_dates": too_many})), "excluded_dates"),
        (
            with(json!({"excluded_ranges": [{"from": "2026-12-31", "to": "2026-12-24"}]})),
            "excluded_ranges",
        ),
        (
            with(json!({"weekly_off": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]})),
            "weekly_off",
        ),
        (with(json!({"weekly_off": ["Sat"]})), "weekly_off"),
        (with(json!({"timezone": "Mars/Olympus"})), "timezone"),
        (
            with(json!({"description": "x".repeat(1025)})),
            "description",
        ),
    ];
    for (body, expected) in &cases {
        let (status, err) = app.put("/calendars/bad", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(field(&err), *expected, "{body}: {err}");
        let (status, _) = app.get("/calendars/bad").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body} stored something");
    }
    // A bad replacement leaves the stored calendar as it was.
    let (status, stored) = app.put("/calendars/good", holidays()).await;
    assert_eq!(status, StatusCode::CREATED);
    for (body, expected) in &cases[1..] {
        let (status, err) = app.put("/calendars/good", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(field(&err), *expected);
    }
    let (_, after) = app.get("/calendars/good").await;
    assert_eq!(after, stored);
    // A name that cannot be a calendar's names none.
    let (status, _) = app.put("/calendars/no%20spaces", holidays()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_schedule_names_only_calendars_it_may_use_and_a_move_needs_a_fixed_time() {
    let app = TestApp::spawn().await;
    app.put("/calendars/de", holidays()).await;
    let (status, _) = app
        .put(
            "/calendars/bobs",
            json!({"user_id": "bob", "excluded_dates": ["2026-12-25"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let nine: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
    for (extra, expected) in [
        (json!({"exclude_calendars": ["nope"]}), "exclude_calendars"),
        (json!({"exclude_calendars": ["bobs"]}), "exclude_calendars"),
        (
            json!({"exclude_calendars": ["de", "de"]}),
            "exclude_calendars",
        ),
        (json!({"exclude_calendars": nine}), "exclude_calendars"),
        (
            json!({"exclude_calendars": ["bad name"]}),
            "exclude_calendars",
        ),
        (json!({"on_excluded": "next_week"}), "on_excluded"),
        (
            json!({"exclude_calendars": ["de"], "on_excluded": "next_business_day",
                   "cron_expr": "* * * * *"}),
            "on_excluded",
        ),
        (
            json!({"exclude_calendars": ["de"], "on_excluded": "previous_business_day",
                   "cron_expr": "0 9,17 * * *"}),
            "on_excluded",
        ),
    ] {
        let (status, err) = app
            .post("/schedules/upsert", schedule("s", extra.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {err}");
        assert_eq!(field(&err), expected, "{extra}: {err}");
        let (status, _) = app.get("/schedules/s").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{extra} stored a schedule");
    }
    let (status, err) = app
        .post(
            "/schedules/upsert",
            schedule(
                "s",
                json!({"exclude_calendars": ["de"], "on_excluded": "next_business_day",
                       "cron_expr": "* * * * *"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fixed time of day"),
        "{err}"
    );

    // A valid one: stored and shown with its calendars.
    let (status, s) = app
        .post(
            "/schedules/upsert",
            schedule(
                "s",
                json!({"exclude_calendars": ["de"], "on_excluded": "next_business_day"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["exclude_calendars"], json!(["de"]));
    assert_eq!(s["on_excluded"], "next_business_day");
    assert_eq!(s["next_ticks"].as_array().unwrap().len(), 5);
    // A bad change leaves it as it was.
    let (status, _) = app
        .post(
            "/schedules/upsert",
            schedule("s", json!({"exclude_calendars": ["de", "nope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, after) = app.get("/schedules/s").await;
    assert_eq!(after["exclude_calendars"], json!(["de"]));
    // A plain schedule shows the defaults.
    let plain = app.create_schedule(json!({"schedule_id": "plain"})).await;
    assert_eq!(plain["exclude_calendars"], json!([]));
    assert_eq!(plain["on_excluded"], "skip");
    app.stop().await;
}

#[tokio::test]
async fn a_calendar_in_use_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    app.put("/calendars/de", holidays()).await;
    for id in ["a", "b"] {
        let (status, body) = app
            .post(
                "/schedules/upsert",
                schedule(id, json!({"exclude_calendars": ["de"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, err) = app.delete("/calendars/de").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "conflict");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"a\"") && message.contains("\"b\""),
        "{message}"
    );
    // Still there.
    assert_eq!(app.get("/calendars/de").await.0, StatusCode::OK);

    // `a` stops naming it, `b` is deleted: then it goes.
    let (status, _) = app
        .post("/schedules/upsert", schedule("a", json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = app.delete("/calendars/de").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(!err["error"]["message"].as_str().unwrap().contains("\"a\""));
    assert_eq!(app.delete("/schedules/b").await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/calendars/de").await.0, StatusCode::NO_CONTENT);
    // And a schedule can no longer name it.
    let (status, err) = app
        .post(
            "/schedules/upsert",
            schedule("a", json!({"exclude_calendars": ["de"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&err), "exclude_calendars");
    app.stop().await;
}

#[tokio::test]
async fn a_delete_racing_upserts_that_name_the_calendar_never_leaves_a_dangling_name() {
    let app = TestApp::spawn().await;
    for round in 0..10 {
        let name = format!("race{round}");
        app.put(&format!("/calendars/{name}"), holidays()).await;
        let upsert = app.post(
            "/schedules/upsert",
            schedule(&format!("r{round}"), json!({"exclude_calendars": [name]})),
        );
        let path = format!("/calendars/{name}");
        let delete = app.delete(&path);
        let ((up, _), (del, _)) = tokio::join!(upsert, delete);
        assert!(
            !(up.is_success() && del.is_success()),
            "round {round}: both the upsert ({up}) and the delete ({del}) succeeded"
        );
        let dangling: i64 = sqlx::query_scalar(
            "select count(*) from schedules s where cardinality(exclude_calendars) > 0 \
             and not exists (select 1 from calendars c where c.name = any(s.exclude_calendars))",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(dangling, 0, "round {round}");
    }
    app.stop().await;
}

#[tokio::test]
async fn users_see_and_use_their_own_calendars_and_shared_ones() {
    let app = TestApp::spawn_with(secured).await;
    let put = |token: &'static str, name: &str, body: Value| {
        let path = format!("/calendars/{name}");
        let app = &app;
        async move { call(app, Some(token), Method::PUT, &path, Some(body)).await }
    };
    assert_eq!(
        put(ALICE, "alices", holidays()).await.status,
        StatusCode::CREATED
    );
    // Bob cannot read, use, replace or delete it: as far as he knows it does not exist.
    let got = call(&app, Some(BOB), Method::GET, "/calendars/alices", None).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    let listed = call(&app, Some(BOB), Method::GET, "/calendars", None).await;
    assert_eq!(listed.body["calendars"], json!([]));
    let mut bobs = schedule("bob-s", json!({"exclude_calendars": ["alices"]}));
    bobs["user_id"] = json!("bob");
    let used = call(
        &app,
        Some(BOB),
        Method::POST,
        "/schedules/upsert",
        Some(bobs.clone()),
    )
    .await;
    assert_eq!(
        used.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        used.body
    );
    assert_eq!(field(&used.body), "exclude_calendars");
    let mut as_bob = holidays();
    as_bob["user_id"] = json!("bob");
    assert_eq!(
        put(BOB, "alices", as_bob.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put(BOB, "mine", holidays()).await.status,
        StatusCode::FORBIDDEN,
        "acting as alice"
    );
    let deleted = call(&app, Some(BOB), Method::DELETE, "/calendars/alices", None).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    // Nor preview with it.
    let preview = call(
        &app,
        Some(BOB),
        Method::POST,
        "/cron/preview",
        Some(json!({"cron_expr": "0 9 * * *", "exclude_calendars": ["alices"]})),
    )
    .await;
    assert_eq!(preview.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&preview.body), "exclude_calendars");

    // Only an admin shares.
    let mut shared = as_bob.clone();
    shared["shared"] = json!(true);
    let refused = put(BOB, "bobs-shared", shared.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["field"], "shared");
    assert_eq!(
        call(&app, Some(BOB), Method::GET, "/calendars/bobs-shared", None)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );
    let mut company = holidays();
    company["user_id"] = json!("ops");
    company["shared"] = json!(true);
    assert_eq!(
        put(ADMIN, "company", company.clone()).await.status,
        StatusCode::CREATED
    );
    // Bob reads and uses it, but may not change or delete it.
    assert_eq!(
        call(&app, Some(BOB), Method::GET, "/calendars/company", None)
            .await
            .status,
        StatusCode::OK
    );
    let listed = call(&app, Some(BOB), Method::GET, "/calendars", None).await;
    assert_eq!(listed.body["calendars"][0]["name"], "company");
    bobs["exclude_calendars"] = json!(["company"]);
    let used = call(
        &app,
        Some(BOB),
        Method::POST,
        "/schedules/upsert",
        Some(bobs),
    )
    .await;
    assert_eq!(used.status, StatusCode::CREATED, "{}", used.body);
    assert_eq!(
        call(&app, Some(BOB), Method::DELETE, "/calendars/company", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Unsharing it under Bob's schedule is refused, naming the schedule.
    company["shared"] = json!(false);
    let unshare = put(ADMIN, "company", company).await;
    assert_eq!(unshare.status, StatusCode::CONFLICT, "{}", unshare.body);
    assert!(
        unshare.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bob-s")
    );
    // The admin sees everything.
    let all = call(&app, Some(ADMIN), Method::GET, "/calendars", None).await;
    assert_eq!(all.body["calendars"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn preview_and_schedule_views_show_skipped_and_moved_ticks() {
    let app = TestApp::spawn().await;
    app.put("/calendars/de", holidays()).await;
    let preview = |on: &str| {
        app.post(
            "/cron/preview",
            json!({"cron_expr": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "count": 4,
                   "from": "2026-12-24T00:00:00Z", "exclude_calendars": ["de"],
                   "on_excluded": on}),
        )
    };
    let (status, p) = preview("skip").await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let next = p["next"].as_array().unwrap();
    let fates: Vec<(&str, &str, Value, Value)> = next
        .iter()
        .map(|t| {
            (
                t["utc"].as_str().unwrap(),
                t["outcome"].as_str().unwrap(),
                t["reason"].clone(),
                t["fire_at"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fates,
        vec![
            (
                "2026-12-24T08:00:00Z",
                "fire",
                Value::Null,
                json!("2026-12-24T08:00:00Z")
            ),
            (
                "2026-12-25T08:00:00Z",
                "skipped",
                json!("calendar"),
                Value::Null
            ),
            (
                "2026-12-28T08:00:00Z",
                "fire",
                Value::Null,
                json!("2026-12-28T08:00:00Z")
            ),
            (
                "2026-12-29T08:00:00Z",
                "fire",
                Value::Null,
                json!("2026-12-29T08:00:00Z")
            ),
        ]
    );
    assert_eq!(next[1]["calendar"], "de");
    let (_, p) = preview("next_business_day").await;
    let christmas = &p["next"][1];
    assert_eq!(christmas["utc"], "2026-12-25T08:00:00Z");
    assert_eq!(christmas["outcome"], "moved");
    assert_eq!(christmas["fire_at"], "2026-12-28T08:00:00Z");
    assert_eq!(christmas["fire_at_local"], "2026-12-28T09:00:00+01:00");
    assert_eq!(christmas["calendar"], "de");
    // Without calendars every tick fires, as before.
    let (_, p) = app
        .post(
            "/cron/preview",
            json!({"cron_expr": "0 9 * * *", "count": 2}),
        )
        .await;
    assert_eq!(p["next"][0]["outcome"], "fire");
    // An unknown calendar is 422.
    let (status, err) = app
        .post(
            "/cron/preview",
            json!({"cron_expr": "0 9 * * *", "exclude_calendars": ["nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&err), "exclude_calendars");

    // A schedule's view: from a start two days ahead (UTC), the first two days excluded.
    let start = (Utc::now() + TimeDelta::days(2)).date_naive();
    let day = |n: i64| start + TimeDelta::days(n);
    app.put(
        "/calendars/soon",
        json!({"user_id": "alice", "excluded_dates": [day(0).to_string(), day(1).to_string()]}),
    )
    .await;
    let at = |n: i64| format!("{}T09:00:00Z", day(n));
    let (status, s) = app
        .post(
            "/schedules/upsert",
            json!({"schedule_id": "view", "workflow_id": "wf", "version": 1,
                   "user_id": "alice", "cron_expr": "0 9 * * *",
                   "start_at": format!("{start}T00:00:00Z"),
                   "exclude_calendars": ["soon"], "on_excluded": "next_business_day"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(
        s["next_fire_times"],
        json!([at(2), at(2), at(2), at(3), at(4)]),
        "two moved ticks and the day's own, in tick order"
    );
    assert_eq!(s["next_ticks"][0]["scheduled_for"], json!(at(0)));
    assert_eq!(s["next_ticks"][0]["outcome"], "moved");
    assert_eq!(s["next_ticks"][0]["fire_at"], json!(at(2)));
    assert_eq!(s["next_ticks"][0]["reason"], "calendar");
    assert_eq!(s["next_ticks"][2]["outcome"], "fire");
    assert_eq!(s["next_ticks"][2]["calendar"], Value::Null);
    // Skipping instead: the excluded ticks leave next_fire_times.
    let (_, s) = app
        .post(
            "/schedules/upsert",
            json!({"schedule_id": "view", "workflow_id": "wf", "version": 1,
                   "user_id": "alice", "cron_expr": "0 9 * * *",
                   "start_at": format!("{start}T00:00:00Z"),
                   "exclude_calendars": ["soon"]}),
        )
        .await;
    assert_eq!(
        s["next_fire_times"],
        json!([at(2), at(3), at(4), at(5), at(6)])
    );
    assert_eq!(s["next_ticks"][1]["outcome"], "skipped");
    assert_eq!(s["next_ticks"][1]["fire_at"], Value::Null);
    app.stop().await;
}

async fn runs_of(
    app: &TestApp,
    id: &str,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, String, Option<String>)> {
    sqlx::query_as(
        "select scheduled_for, fire_at, status, reason from runs where schedule_id = $1 \
         order by scheduled_for",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_leader_records_excluded_ticks_skipped_and_launches_nothing_for_them() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    app.put("/workflows/wf/versions/1", json!({"tasks": []}))
        .await;
    // Today and tomorrow (UTC), so a test running across midnight still sees only
    // excluded ticks.
    let today = Utc::now().date_naive();
    app.put(
        "/calendars/today",
        json!({"user_id": "alice",
               "excluded_dates": [today.to_string(), today.succ_opt().unwrap().to_string()]}),
    )
    .await;
    app.create_schedule(json!({"schedule_id": "off", "cron_expr": "* * * * * *",
                               "exclude_calendars": ["today"]}))
        .await;
    // A schedule without the calendar shows the launcher works meanwhile.
    app.create_schedule(json!({"schedule_id": "on", "cron_expr": "* * * * * *",
                               "overlap_policy": "allow"}))
        .await;
    wait_for(
        "launches of the plain schedule",
        Duration::from_secs(15),
        || async {
            mock.mock
                .received()
                .iter()
                .filter(|r| r.schedule_id.as_deref() == Some("on"))
                .count()
                >= 3
        },
    )
    .await;
    let runs = runs_of(&app, "off").await;
    assert!(runs.len() >= 3, "{runs:?}");
    for (scheduled_for, fire_at, status, reason) in &runs {
        assert_eq!(
            (status.as_str(), reason.as_deref()),
            ("skipped", Some("calendar")),
            "{scheduled_for}"
        );
        assert_eq!(fire_at, scheduled_for);
    }
    assert!(
        !mock
            .mock
            .received()
            .iter()
            .any(|r| r.schedule_id.as_deref() == Some("off")),
        "the Executor received a run of an excluded day"
    );
    // And counted.
    let metrics = app.metrics().await;
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("scheduler_runs_skipped_calendar_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no calendar skip counter:\n{metrics}"));
    assert!(counted >= 3.0, "{counted}");
    // The runs are listed like any other tick's.
    let (_, page) = app.get("/schedules/off/runs?status=skipped").await;
    assert_eq!(page["runs"][0]["reason"], "calendar");
    app.stop().await;
}

#[tokio::test]
async fn the_leader_writes_a_moved_tick_at_the_next_business_day() {
    let mock = Mock::start(Behaviour::default()).await;
    let app = TestApp::spawn_with(|c| launch_config(c, &mock.url)).await;
    // A daily tick a few seconds from now (UTC), on a date the calendar excludes.
    let tick = (Utc::now() + TimeDelta::seconds(4))
        .with_nanosecond(0)
        .unwrap();
    let cron = format!("{} {} {} * * *", tick.second(), tick.minute(), tick.hour());
    app.put(
        "/calendars/closed",
        json!({"user_id": "alice", "excluded_dates": [tick.date_naive().to_string()]}),
    )
    .await;
    app.create_schedule(json!({"schedule_id": "moved", "cron_expr": cron,
                               "exclude_calendars": ["closed"],
                               "on_excluded": "next_business_day"}))
        .await;
    wait_for("the moved tick's run", Duration::from_secs(15), || async {
        !runs_of(&app, "moved").await.is_empty()
    })
    .await;
    let runs = runs_of(&app, "moved").await;
    assert_eq!(
        runs[0],
        (tick, tick + TimeDelta::days(1), "pending".to_owned(), None),
        "today's tick, firing tomorrow at the same wall time"
    );
    assert_eq!(tick.day(), runs[0].0.day());
    // Past its nominal time it is still pending: nothing was sent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let runs = runs_of(&app, "moved").await;
    assert_eq!(runs[0].2, "pending");
    assert!(mock.mock.received().is_empty());
    app.stop().await;
}
