//! The web console (`/ui`): its files and headers over plain HTTP, and the console itself
//! in a real browser (headless Chromium driven through chromedriver, see `webdriver`)
//! against a replica with authentication on.
//!
//! The browser test saves a screenshot of a schedule's page: to `docs/console.png` (the
//! README's picture) when `UPDATE_SCREENSHOT=1`, otherwise under the target folder, so a
//! plain run leaves the tree clean.

mod webdriver;

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use cron_scheduler::api::ui::CSP;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::{
    common::{TestApp, insert_pending_run},
    security::{ADMIN, ALICE, call, secured},
};
use webdriver::{Driver, Read, Session};

/// What an attacker would like the console to run, as a run's error and a workflow id.
const HOSTILE_ERROR: &str = r#"<img src=x onerror="window.__pwned=1">"#;
const HOSTILE_WORKFLOW: &str = r#"<b onmouseover="window.__pwned=2">wf</b>"#;

#[tokio::test]
async fn console_files_are_open_embedded_and_strict() {
    let app = TestApp::spawn_with(secured).await;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        // No token: the files are open (the console asks for one and sends it to the API).
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers().clone();
        let content_type = h[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{path}");
        let etag = h[header::ETAG].clone();
        assert!(!resp.text().await.unwrap().is_empty());

        // Revalidation: the same tag is 304 with no body.
        let again = app
            .http
            .get(app.url(path))
            .header(header::IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[header::ETAG], etag);
        assert!(again.bytes().await.unwrap().is_empty());
    }
    // Not API: a query string (a cache buster, say) is not refused as unknown.
    let busted = app.http.get(app.url("/ui/app.js?v=2")).send().await;
    assert_eq!(busted.unwrap().status(), StatusCode::OK);
    // The policy is strict: nothing inline, nothing from elsewhere.
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CSP.contains(part), "{part}");
    }
    assert!(!CSP.contains("unsafe"));
    // The API behind it still wants a token.
    let list = call(&app, None, Method::GET, "/schedules", None).await;
    assert_eq!(list.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Seeds a schedule's history with ended runs, one per past tick (the expression's own,
/// asked of the preview), so the strip and the table have something to show; returns how
/// many.
async fn seed_history(app: &TestApp, schedule: &Value) -> usize {
    let since = Utc::now() - TimeDelta::days(45);
    let preview = call(
        app,
        Some(ADMIN),
        Method::POST,
        "/cron/preview",
        Some(
            json!({"cron_expr": schedule["cron_expr"], "timezone": schedule["timezone"],
                    "count": 60, "from": since}),
        ),
    )
    .await;
    let ticks: Vec<DateTime<Utc>> = preview.body["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["utc"].as_str().unwrap().parse().unwrap())
        .filter(|t| *t < Utc::now())
        .collect();
    assert!(ticks.len() > 20, "{}", preview.body);
    let n = ticks.len();
    for (i, tick) in ticks.into_iter().enumerate() {
        let (status, reason, attempt, error) = match n - i {
            2 => ("failed", None, 1, Some("task mail: exit status 1")),
            5 => (
                "failed_launch",
                Some("rejected"),
                5,
                Some("the Executor answered 503 Service Unavailable"),
            ),
            16 => ("skipped", Some("overlap"), 0, None),
            23 => ("timed_out", None, 1, Some("no completion report in 3600 s")),
            _ => ("succeeded", None, 1, None),
        };
        let launched = ["succeeded", "failed", "timed_out"].contains(&status);
        sqlx::query(
            "insert into runs (run_id, schedule_id, scheduled_for, fire_at, status, trigger, \
               reason, workflow_id, version, user_id, idempotency_key, attempt, last_error, \
               launched_at, finished_at) \
             values ($1, $2, $3, $3, $4, 'schedule', $5, $6, $7, $8, $1::text, $9, $10, \
               case when $11 then $3 + interval '1 second' end, \
               case when $4 <> 'skipped' then $3 + interval '47 seconds' end)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(schedule["schedule_id"].as_str())
        .bind(tick)
        .bind(status)
        .bind(reason)
        .bind(schedule["workflow_id"].as_str())
        .bind(i32::try_from(schedule["version"].as_i64().unwrap()).unwrap())
        .bind(schedule["user_id"].as_str())
        .bind(attempt)
        .bind(error)
        .bind(launched)
        .execute(&app.pool)
        .await
        .expect("insert a run");
    }
    n
}

/// The expression in words, as the API says it.
async fn description(app: &TestApp, cron_expr: &str, timezone: &str) -> String {
    let body = json!({"cron_expr": cron_expr, "timezone": timezone});
    let preview = call(app, Some(ADMIN), Method::POST, "/cron/preview", Some(body)).await;
    preview.body["description"].as_str().unwrap().to_owned()
}

async fn upsert(app: &TestApp, body: Value) -> Value {
    let answer = call(
        app,
        Some(ADMIN),
        Method::POST,
        "/schedules/upsert",
        Some(body),
    )
    .await;
    assert!(answer.status.is_success(), "{}", answer.body);
    answer.body
}

async fn schedule_as_admin(app: &TestApp, id: &str) -> Value {
    let path = format!("/schedules/{id}");
    let answer = call(app, Some(ADMIN), Method::GET, &path, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn sign_in(browser: &Session, token: &str) {
    browser.type_into("#token", token).await;
    browser.click("#sign-in button[type=submit]").await;
    browser.wait("#schedules").await;
}

fn screenshot_path() -> PathBuf {
    if std::env::var_os("UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console.png")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png")
    }
}

/// The console in headless Chromium, with authentication on: a user signs in with a
/// token and sees its own schedules only; a schedule's page shows its next fire times;
/// pause and resume act through the API; HTML in a run's error and in a workflow id is
/// shown as text and never runs; an admin sees everything and the fleet.
#[tokio::test]
async fn the_console_in_a_real_browser() {
    let driver = Driver::start().await;
    let app = TestApp::spawn_with(secured).await;
    let stored = call(
        &app,
        Some(ADMIN),
        Method::PUT,
        "/workflows/report/versions/3",
        Some(json!({"tasks": [{"id": "build"}, {"id": "mail", "after": ["build"]}]})),
    )
    .await;
    assert!(stored.status.is_success(), "{}", stored.body);
    let nightly = upsert(
        &app,
        json!({"schedule_id": "nightly-report", "workflow_id": "report", "version": 3,
               "user_id": "alice", "cron_expr": "0 30 6 * * MON-FRI",
               "timezone": "Europe/London", "overlap_policy": "skip",
               "catchup_policy": "fire_immediately", "jitter_ms": 2000, "dst_fold": "twice"}),
    )
    .await;
    let history = seed_history(&app, &nightly).await;
    upsert(
        &app,
        json!({"schedule_id": "hostile", "workflow_id": HOSTILE_WORKFLOW, "version": 1,
               "user_id": "alice", "cron_expr": "*/15 * * * *"}),
    )
    .await;
    let run = insert_pending_run(&app.pool, "hostile", "2024-01-01T00:00:00Z").await;
    sqlx::query(
        "update runs set status = 'failed_launch', reason = 'rejected', attempt = 3, \
           last_error = $2, finished_at = now() where run_id = $1",
    )
    .bind(run)
    .bind(HOSTILE_ERROR)
    .execute(&app.pool)
    .await
    .unwrap();
    upsert(
        &app,
        json!({"schedule_id": "bob-cleanup", "workflow_id": "cleanup", "version": 1,
               "user_id": "bob", "cron_expr": "0 0 3 * * *"}),
    )
    .await;

    let browser = driver.session().await;
    let base = app.url("/ui/");
    let ids = Read::Attribute("data-schedule-id");
    let rows = "#schedules tr[data-schedule-id]";

    // A wrong token is refused, and said so.
    browser.goto(&base).await;
    browser
        .type_into("#token", "not-a-token-of-this-service")
        .await;
    browser.click("#sign-in button[type=submit]").await;
    browser.wait("#sign-in-error").await;

    // A user signs in and sees its own schedules, not Bob's.
    sign_in(&browser, ALICE).await;
    browser
        .wait_until(rows, ids, &["hostile", "nightly-report"])
        .await;
    let who = browser.text_of("#who").await;
    assert_eq!(who, "user token: your schedules only");
    // The workflow id holding HTML is text in the list.
    let row = browser.text_of("tr[data-schedule-id=hostile]").await;
    assert!(row.contains(HOSTILE_WORKFLOW), "{row}");

    // A schedule's page: the expression in words and its next fire times.
    browser.click("a[href='#/schedules/nightly-report']").await;
    let expected: Vec<&str> = nightly["next_fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(expected.len(), 5);
    let times = "#next-fire-times time";
    browser
        .wait_until(times, Read::Attribute("datetime"), &expected)
        .await;
    let zone_column = browser.text_of("#next-fire-times").await;
    assert!(zone_column.contains("GMT"), "{zone_column}");
    let page = browser.text_of("body").await;
    assert!(
        page.contains("gap: default, fold: twice"),
        "the DST policy: {page}"
    );
    assert!(
        page.contains("none; on excluded: skip"),
        "the calendars: {page}"
    );
    let described = browser.text_of("#description").await;
    let words = description(&app, "0 30 6 * * MON-FRI", "Europe/London").await;
    assert!(described.starts_with(&words), "{described:?} / {words:?}");
    let strip = browser
        .read_all("#ticks .tick", Read::Attribute("data-status"))
        .await;
    assert_eq!(strip.len(), history);
    assert_eq!(strip.iter().filter(|s| *s == "failed").count(), 1);
    assert_eq!(strip.last().map(String::as_str), Some("succeeded"));

    // Pause, checked through the API.
    browser.click("#pause").await;
    browser.wait("#resume").await;
    let paused = schedule_as_admin(&app, "nightly-report").await;
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["status"], "paused");

    // HTML in a run's error is shown as text; nothing of it runs or becomes an element.
    browser.goto(&format!("{base}#/schedules/hostile")).await;
    browser
        .wait_until("#schedule-id", Read::Text, &["hostile"])
        .await;
    browser
        .wait_until("#runs td.error-text", Read::Text, &[HOSTILE_ERROR])
        .await;
    let page = browser
        .execute(
            "return [typeof window.__pwned, document.querySelectorAll('#main img, #main b').length]",
        )
        .await;
    assert_eq!(page, json!(["undefined", 0]));
    let facts = browser.text_of(".facts").await;
    assert!(facts.contains(HOSTILE_WORKFLOW), "{facts}");

    // Bob's schedule, even by its address, is not found for Alice; nor is it listed
    // when she asks for Bob's.
    browser
        .goto(&format!("{base}#/schedules/bob-cleanup"))
        .await;
    browser.wait("#page-error").await;
    assert!(!browser.text_of("#page-error").await.is_empty());
    assert!(browser.find_all("#schedule-id").await.is_empty());
    browser
        .goto(&format!("{base}#/schedules?user_id=bob"))
        .await;
    browser.wait(".empty").await;
    assert!(browser.read_all(rows, ids).await.is_empty());

    // An admin sees every schedule (Bob's, asked for) and the fleet.
    browser.click("#sign-out").await;
    sign_in(&browser, ADMIN).await;
    browser.wait_until(rows, ids, &["bob-cleanup"]).await;
    browser.goto(&format!("{base}#/schedules")).await;
    browser
        .wait_until(rows, ids, &["bob-cleanup", "hostile", "nightly-report"])
        .await;
    browser.goto(&format!("{base}#/fleet")).await;
    browser.wait("#nodes").await;
    let nodes = browser.text_of("#nodes").await;
    assert!(nodes.contains("test-node"), "{nodes}");

    // Resume, checked through the API; then the picture for the README.
    browser
        .goto(&format!("{base}#/schedules/nightly-report"))
        .await;
    browser.click("#resume").await;
    browser.wait("#pause").await;
    let resumed = schedule_as_admin(&app, "nightly-report").await;
    assert_eq!(resumed["paused"], false);
    browser.wait("#next-fire-times").await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = screenshot_path();
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());

    // Trigger: a manual run, through the API.
    browser.click("#trigger").await;
    browser
        .wait_text_starting("#notice", "Triggered: run")
        .await;
    let runs = call(
        &app,
        Some(ADMIN),
        Method::GET,
        "/schedules/nightly-report/runs?limit=100",
        None,
    )
    .await;
    let manual = runs.body["runs"].as_array().unwrap().iter();
    assert_eq!(manual.filter(|r| r["trigger"] == "manual").count(), 1);

    // Backfill the last three days (UTC): their ticks have runs already.
    let (from, to) = (
        Utc::now() - TimeDelta::days(3),
        Utc::now() - TimeDelta::minutes(1),
    );
    let format = "%Y-%m-%dT%H:%M:%S";
    browser
        .execute(&format!(
            "document.querySelector('#backfill [name=from]').value = '{}';\
             document.querySelector('#backfill [name=to]').value = '{}';",
            from.format(format),
            to.format(format)
        ))
        .await;
    browser.click("#backfill button[type=submit]").await;
    let said = browser.wait_text_starting("#notice", "Backfill:").await;
    assert!(said.contains(" 0 created, 0 revived"), "{said}");

    // Delete, confirmed on the page first.
    browser.goto(&format!("{base}#/schedules/hostile")).await;
    browser
        .wait_until("#schedule-id", Read::Text, &["hostile"])
        .await;
    browser.click("#delete").await;
    browser.click("#confirm-delete").await;
    browser
        .wait_until(rows, ids, &["bob-cleanup", "nightly-report"])
        .await;
    let gone = call(&app, Some(ADMIN), Method::GET, "/schedules/hostile", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // The cron playground: the preview's words and times.
    browser
        .goto(&format!(
            "{base}#/cron?expr=0%200%209%20*%20*%20MON&tz=America/New_York"
        ))
        .await;
    browser.wait("#preview").await;
    let shown = browser.text_of("#preview .describe").await;
    let words = description(&app, "0 0 9 * * MON", "America/New_York").await;
    assert!(shown.starts_with(&words), "{shown:?} / {words:?}");
    assert_eq!(browser.find_all("#preview tbody tr").await.len(), 5);
    // An interval, too: every 90 minutes from the Unix epoch, so each time is a multiple.
    browser
        .goto(&format!("{base}#/cron?expr=PT90M&tz=UTC&count=3"))
        .await;
    browser.wait("#preview").await;
    let shown = browser.text_of("#preview .describe").await;
    assert!(shown.starts_with("Every 90 minutes"), "{shown:?}");
    let rows = browser.find_all("#preview tbody tr").await;
    assert_eq!(rows.len(), 3);
    let first = browser.text_of("#preview tbody tr td").await;
    let first: DateTime<Utc> = first
        .trim_end_matches(" UTC")
        .replace(' ', "T")
        .parse::<chrono::NaiveDateTime>()
        .map(|t| t.and_utc())
        .unwrap_or_else(|e| panic!("{first:?}: {e}"));
    assert_eq!(first.timestamp() % 5_400, 0, "{first}");

    // The page never tripped its own Content-Security-Policy (an inline script or style
    // would have been refused, and logged).
    let log = browser.browser_log().await;
    let refused: Vec<&String> = log
        .iter()
        .filter(|m| m.contains("Content Security Policy"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");

    browser.close().await;
    drop(driver);
    app.stop().await;
}

/// With authentication off the console asks for nothing and acts as admin.
#[tokio::test]
async fn the_console_without_authentication() {
    let driver = Driver::start().await;
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "open-one"}))
        .await;
    let browser = driver.session().await;
    browser.goto(&app.url("/ui")).await;
    browser
        .wait_until(
            "#schedules tr[data-schedule-id]",
            Read::Attribute("data-schedule-id"),
            &["open-one"],
        )
        .await;
    let who = browser.text_of("#who").await;
    assert_eq!(who, "authentication off: acting as admin");
    assert!(browser.find_all("#token").await.is_empty());
    snap(&browser, "console-list.png").await;
    browser.goto(&app.url("/ui#/fleet")).await;
    browser.wait("#nodes").await;
    snap(&browser, "console-fleet.png").await;
    browser.close().await;
    drop(driver);
    app.stop().await;
}

/// A screenshot for a person to look at, under the target folder.
async fn snap(browser: &Session, name: &str) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, browser.screenshot().await).expect("write a screenshot");
}
