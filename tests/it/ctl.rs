//! `cron-scheduler ctl`: the real binary against a real replica (TestApp), checked through
//! the API: apply (twice, `--dry-run`, `--prune`, bad files), every other command once,
//! JSON output that parses, exit codes.

use std::path::Path;

use cron_scheduler::api::auth::{AuthSwitch, TokenSet};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestApp;

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "ctl failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `cron-scheduler ctl ARGS` against `app` (with `token`, if any), from `cwd`.
async fn ctl_as(app: &TestApp, token: Option<&str>, args: &[&str]) -> Ran {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cron-scheduler"));
    command
        .arg("ctl")
        .args(args)
        .env("SCHEDULER_URL", app.url(""))
        .env_remove("SCHEDULER_TOKEN")
        .env_remove("SCHEDULER_DEFAULT_OVERLAP_POLICY")
        .env_remove("SCHEDULER_DEFAULT_CATCHUP_POLICY");
    if let Some(token) = token {
        command.env("SCHEDULER_TOKEN", token);
    }
    let out = command.output().await.expect("run the binary");
    Ran {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ctl(app: &TestApp, args: &[&str]) -> Ran {
    ctl_as(app, None, args).await
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Two files, three schedules of alice: one file holds one, the other a list of two.
fn alice_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "report.yaml",
        "# The morning report, London time.\n\
         schedule_id: report\nworkflow_id: report\nversion: 1\nuser_id: alice\n\
         cron_expr: 30 6 * * 1-5\ntimezone: Europe/London\njitter_ms: 1000\n",
    );
    write(
        dir.path(),
        "cleanup.json",
        r#"[
          {"schedule_id": "cleanup", "workflow_id": "cleanup", "version": 2,
           "user_id": "alice", "cron_expr": "@daily", "overlap_policy": "queue"},
          {"schedule_id": "sync", "workflow_id": "sync", "version": 1,
           "user_id": "alice", "cron_expr": "*/10 * * * *", "paused": true,
           "start_at": "2030-01-01T00:00:00Z"}
        ]"#,
    );
    dir
}

fn actions(report: &Value) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["schedule_id"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn applying_a_folder_twice_changes_nothing_the_second_time() {
    let app = TestApp::spawn().await;
    let dir = alice_folder();
    let folder = dir.path().to_str().unwrap();

    let first = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        actions(&first),
        pairs(&[
            ("cleanup", "created"),
            ("report", "created"),
            ("sync", "created")
        ])
    );
    assert_eq!(first["created"], 3);
    assert_eq!(first["dry_run"], false);
    // Stored as the files say, omitted fields at the server's defaults.
    let (status, report) = app.get("/schedules/report").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["timezone"], "Europe/London");
    assert_eq!(report["jitter_ms"], 1000);
    assert_eq!(report["overlap_policy"], "skip");
    let (_, sync) = app.get("/schedules/sync").await;
    assert_eq!(sync["paused"], true);
    assert_eq!(sync["start_at"], "2030-01-01T00:00:00Z");
    let updated_at = report["updated_at"].clone();

    // The second time: all unchanged, and nothing written.
    let second = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        actions(&second),
        pairs(&[
            ("cleanup", "unchanged"),
            ("report", "unchanged"),
            ("sync", "unchanged")
        ])
    );
    assert_eq!(
        (
            second["created"].as_u64(),
            second["changed"].as_u64(),
            second["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(3))
    );
    let (_, report) = app.get("/schedules/report").await;
    assert_eq!(
        report["updated_at"], updated_at,
        "an unchanged schedule was written"
    );

    // One field edited: that schedule alone changes, and the report names the field.
    write(
        dir.path(),
        "report.yaml",
        "schedule_id: report\nworkflow_id: report\nversion: 1\nuser_id: alice\n\
         cron_expr: 45 6 * * 1-5\ntimezone: Europe/London\njitter_ms: 1000\n",
    );
    let third = ctl(&app, &["schedules", "apply", "-f", folder]).await.ok();
    assert!(
        third.stdout.contains("1 changed, 2 unchanged"),
        "{}",
        third.stdout
    );
    let line = third
        .stdout
        .lines()
        .find(|l| l.starts_with("changed"))
        .unwrap_or_else(|| panic!("no changed row:\n{}", third.stdout));
    assert!(
        line.contains("report") && line.ends_with("cron_expr"),
        "{line}"
    );
    let (_, report) = app.get("/schedules/report").await;
    assert_eq!(report["cron_expr"], "45 6 * * 1-5");

    // What `list -o json` prints can be applied as it is (read-only fields are ignored).
    let listed = ctl(&app, &["schedules", "list", "-o", "json"]).await.ok();
    let exported = tempfile::tempdir().unwrap();
    write(exported.path(), "all.json", &listed.stdout);
    let again = ctl(
        &app,
        &[
            "schedules",
            "apply",
            "-f",
            exported.path().join("all.json").to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        (again["unchanged"].as_u64(), again["changed"].as_u64()),
        (Some(3), Some(0))
    );
}

#[tokio::test]
async fn a_dry_run_reports_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let dir = alice_folder();
    let folder = dir.path().to_str().unwrap();
    // On the server: `report` differs from the file, and `old` is in no file.
    app.create_schedule(json!({"schedule_id": "report", "workflow_id": "report",
        "cron_expr": "0 7 * * *", "timezone": "Europe/London"}))
        .await;
    app.create_schedule(json!({"schedule_id": "old"})).await;
    let (_, before) = app.get("/schedules?limit=100").await;

    let plan = ctl(
        &app,
        &[
            "schedules",
            "apply",
            "-f",
            folder,
            "--dry-run",
            "--prune",
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        actions(&plan),
        pairs(&[
            ("cleanup", "created"),
            ("old", "deleted"),
            ("report", "changed"),
            ("sync", "created")
        ])
    );
    let report = plan["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["schedule_id"] == "report")
        .unwrap();
    assert_eq!(report["changes"], json!(["cron_expr", "jitter_ms"]));

    let (_, after) = app.get("/schedules?limit=100").await;
    assert_eq!(after, before, "a dry run changed the server");
    assert_eq!(app.get("/schedules/cleanup").await.0, StatusCode::NOT_FOUND);

    // The table says it too.
    let table = ctl(&app, &["schedules", "apply", "-f", folder, "--dry-run"])
        .await
        .ok();
    assert!(
        table.stdout.contains(
            "2 created, 1 changed, 0 unchanged, 0 deleted (dry run: nothing was written)"
        ),
        "{}",
        table.stdout
    );
}

#[tokio::test]
async fn prune_deletes_exactly_the_schedules_of_the_files_users_that_no_file_names() {
    let app = TestApp::spawn().await;
    let dir = alice_folder();
    let folder = dir.path().to_str().unwrap();
    app.create_schedule(json!({"schedule_id": "alice-extra", "user_id": "alice"}))
        .await;
    app.create_schedule(json!({"schedule_id": "bob-own", "user_id": "bob"}))
        .await;

    // Without --prune nothing is deleted.
    let plain = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(plain["deleted"], 0);
    assert_eq!(app.get("/schedules/alice-extra").await.0, StatusCode::OK);

    let pruned = ctl(
        &app,
        &["schedules", "apply", "-f", folder, "--prune", "-o", "json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        actions(&pruned),
        pairs(&[
            ("alice-extra", "deleted"),
            ("cleanup", "unchanged"),
            ("report", "unchanged"),
            ("sync", "unchanged")
        ])
    );
    assert_eq!(
        app.get("/schedules/alice-extra").await.0,
        StatusCode::NOT_FOUND
    );
    // Another user's schedule is not the files' business.
    assert_eq!(app.get("/schedules/bob-own").await.0, StatusCode::OK);
    for kept in ["report", "cleanup", "sync"] {
        assert_eq!(
            app.get(&format!("/schedules/{kept}")).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn prune_follows_every_page() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "keep.yaml",
        "schedule_id: keep\nworkflow_id: wf\nversion: 1\nuser_id: alice\ncron_expr: '@hourly'\n",
    );
    // More than one page of 1000: the listing must follow next_cursor.
    sqlx::query(
        "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, timezone, \
           jitter_ms, overlap_policy, catchup_policy, paused, next_due_at) \
         select 'extra-' || lpad(i::text, 4, '0'), 'wf', 1, 'alice', '0 * * * *', 'UTC', 0, \
           'skip', 'fire_immediately', false, date_trunc('hour', now()) + interval '1 hour' \
         from generate_series(1, 1005) as i",
    )
    .execute(&app.pool)
    .await
    .expect("insert schedules");
    let pruned = ctl(
        &app,
        &[
            "schedules",
            "apply",
            "-f",
            dir.path().to_str().unwrap(),
            "--prune",
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(pruned["created"], 1);
    assert_eq!(pruned["deleted"], 1005);
    let (_, left) = app.get("/schedules?user_id=alice").await;
    let ids: Vec<&str> = left["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["schedule_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["keep"]);
}

#[tokio::test]
async fn a_bad_file_fails_naming_the_file_and_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let good =
        "schedule_id: good\nworkflow_id: wf\nversion: 1\nuser_id: alice\ncron_expr: '@daily'\n";
    let cases = [
        (
            "zone.yaml",
            "schedule_id: bad\nworkflow_id: wf\nversion: 1\nuser_id: alice\n\
             cron_expr: '@daily'\ntimezone: Mars/Olympus\n",
            "field timezone",
        ),
        (
            "typo.json",
            r#"{"schedule_id": "bad", "workflow_id": "wf", "version": 1, "user_id": "alice",
               "cron_expr": "@daily", "overlap": "skip"}"#,
            "field overlap",
        ),
        (
            "noid.yml",
            "workflow_id: wf\nversion: 1\nuser_id: alice\ncron_expr: '@daily'\n",
            "field schedule_id",
        ),
        (
            "cron.yaml",
            "- schedule_id: bad\n  workflow_id: wf\n  version: 1\n  user_id: alice\n  cron_expr: 61 * * * *\n",
            "field cron_expr",
        ),
        (
            "broken.yaml",
            "schedule_id: bad\n  workflow_id: [\n",
            "not YAML",
        ),
    ];
    for (name, text, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a-good.yaml", good);
        write(dir.path(), name, text);
        let ran = ctl(
            &app,
            &["schedules", "apply", "-f", dir.path().to_str().unwrap()],
        )
        .await;
        assert_eq!(ran.code, 2, "{name}: {}", ran.stderr);
        assert!(ran.stderr.contains(name), "{name}: {}", ran.stderr);
        assert!(ran.stderr.contains(field), "{name}: {}", ran.stderr);
        // Validated before any write: the good file was not applied either.
        assert_eq!(
            app.get("/schedules/good").await.0,
            StatusCode::NOT_FOUND,
            "{name}"
        );
    }
    // A path that does not exist, and no -f at all: usage errors.
    assert_eq!(
        ctl(&app, &["schedules", "apply", "-f", "/no/such/folder"])
            .await
            .code,
        2
    );
    assert_eq!(ctl(&app, &["schedules", "apply"]).await.code, 2);
}

#[tokio::test]
async fn a_refusal_of_the_server_names_the_file_and_the_field() {
    const ALICE: &str = "alice-token-0123456789abcdef";
    let app = TestApp::spawn_with(|cfg| {
        cfg.auth = AuthSwitch::On;
        cfg.api_tokens = TokenSet::parse(&format!("user:alice:{ALICE}")).unwrap();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "mine.yaml",
        "schedule_id: mine\nworkflow_id: wf\nversion: 1\nuser_id: alice\ncron_expr: '@daily'\n",
    );
    write(
        dir.path(),
        "theirs.yaml",
        "schedule_id: theirs\nworkflow_id: wf\nversion: 1\nuser_id: bob\ncron_expr: '@daily'\n",
    );
    let folder = dir.path().to_str().unwrap();
    // Without a token: 401, exit 1.
    let ran = ctl(&app, &["schedules", "list"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("401"), "{}", ran.stderr);

    // alice may not store bob's schedule: the server's 403 names the file and user_id, and
    // nothing is pruned after a failed apply.
    let ran = ctl_as(
        &app,
        Some(ALICE),
        &["schedules", "apply", "-f", folder, "--prune"],
    )
    .await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("theirs.yaml"), "{}", ran.stderr);
    assert!(ran.stderr.contains("field user_id"), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("created") && ran.stdout.contains("mine"),
        "{}",
        ran.stdout
    );
    let listed = ctl_as(&app, Some(ALICE), &["schedules", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["schedule_id"], "mine");
}

#[tokio::test]
async fn every_command_once() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "often", "cron_expr": "* * * * *"}))
        .await;
    app.create_schedule(json!({"schedule_id": "bobs", "user_id": "bob"}))
        .await;

    // list: a table with the health column, and JSON.
    let table = ctl(&app, &["schedules", "list"]).await.ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("SCHEDULE") && header.contains("HEALTH"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with("often")).unwrap();
    // Columns line up: each header starts where its cells do.
    let at = header.find("STATUS").unwrap();
    assert_eq!(&row[at..at + "active".len()], "active", "{table}");
    let list = ctl(&app, &["schedules", "list", "--user", "bob", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["schedule_id"], "bobs");
    let ok = ctl(&app, &["schedules", "list", "--health", "ok", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(ok.as_array().unwrap().len(), 2);
    let failing = ctl(
        &app,
        &["schedules", "list", "--health", "failing", "-o", "json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(failing, json!([]));

    // get
    let got = ctl(&app, &["schedules", "get", "often", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(got["cron_expr"], "* * * * *");
    let view = ctl(&app, &["schedules", "get", "often"]).await.ok().stdout;
    assert!(
        view.lines()
            .any(|l| l.starts_with("health") && l.ends_with("ok")),
        "{view}"
    );
    let missing = ctl(&app, &["schedules", "get", "nope"]).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    // pause and resume
    ctl(&app, &["schedules", "pause", "often"]).await.ok();
    assert_eq!(app.get("/schedules/often").await.1["paused"], true);
    let resumed = ctl(&app, &["schedules", "resume", "often"]).await.ok();
    assert!(resumed.stdout.contains("active"), "{}", resumed.stdout);
    assert_eq!(app.get("/schedules/often").await.1["paused"], false);

    // trigger, twice with one key: one run
    for _ in 0..2 {
        let run = ctl(
            &app,
            &[
                "schedules",
                "trigger",
                "often",
                "--idempotency-key",
                "k1",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
        assert_eq!(run["trigger"], "manual");
    }
    let (_, runs) = app.get("/schedules/often/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);

    // backfill the last few minutes, then the runs
    let to = chrono::Utc::now() - chrono::TimeDelta::seconds(5);
    let from = to - chrono::TimeDelta::minutes(3);
    let backfill = ctl(
        &app,
        &[
            "schedules",
            "backfill",
            "often",
            "--from",
            &from.to_rfc3339(),
            "--to",
            &to.to_rfc3339(),
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert!(backfill["created"].as_u64().unwrap() >= 2, "{backfill}");
    let runs = ctl(&app, &["schedules", "runs", "often", "-o", "json"])
        .await
        .ok()
        .json();
    let n = runs.as_array().unwrap().len() as u64;
    assert_eq!(n, 1 + backfill["created"].as_u64().unwrap());
    let limited = ctl(&app, &["schedules", "runs", "often", "--limit", "2"])
        .await
        .ok()
        .stdout;
    assert_eq!(limited.lines().count(), 3, "{limited}");
    assert!(limited.starts_with("RUN"), "{limited}");

    // worker status, stop, start
    let status = ctl(&app, &["worker", "status", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(status["worker_enabled"], false);
    let started = ctl(&app, &["worker", "start", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(started["worker_enabled"], true);
    let stopped = ctl(&app, &["worker", "stop"]).await.ok().stdout;
    assert!(
        stopped
            .lines()
            .any(|l| l.starts_with("worker_enabled") && l.ends_with("false")),
        "{stopped}"
    );

    // cron preview
    let preview = ctl(
        &app,
        &[
            "cron",
            "preview",
            "0 9 * * 1-5",
            "--tz",
            "Europe/Berlin",
            "--count",
            "3",
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(preview["timezone"], "Europe/Berlin");
    assert_eq!(preview["next"].as_array().unwrap().len(), 3);
    let text = ctl(&app, &["cron", "preview", "*/15 * * * *"])
        .await
        .ok()
        .stdout;
    assert!(text.contains("UTC") && text.contains("LOCAL"), "{text}");
    // An ISO 8601 interval previews an interval schedule's ticks.
    let every = ctl(
        &app,
        &[
            "cron",
            "preview",
            "PT90M",
            "--anchor",
            "2026-01-01T00:15:00Z",
            "--from",
            "2026-01-01T00:00:00Z",
            "--count",
            "2",
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(every["interval"], "PT1H30M", "{every}");
    let utc: Vec<&str> = every["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["utc"].as_str().unwrap())
        .collect();
    assert_eq!(utc, ["2026-01-01T00:15:00Z", "2026-01-01T01:45:00Z"]);
    let bad = ctl(&app, &["cron", "preview", "PT0S"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("interval"), "{}", bad.stderr);
    let bad = ctl(&app, &["cron", "preview", "not cron"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("cron_expr"), "{}", bad.stderr);

    // delete
    ctl(&app, &["schedules", "delete", "often"]).await.ok();
    assert_eq!(app.get("/schedules/often").await.0, StatusCode::NOT_FOUND);
    assert_eq!(ctl(&app, &["schedules", "delete", "often"]).await.code, 3);
}

#[tokio::test]
async fn an_unreachable_server_is_exit_1() {
    let app = TestApp::spawn().await;
    let url = app.url("");
    app.stop().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cron-scheduler"))
        .args(["ctl", "worker", "status", "--timeout", "5"])
        .env("SCHEDULER_URL", &url)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fleet's default policies come from the server (`GET /health`), not from the CLI's
/// environment: a file that omits them stays unchanged on a second apply against a fleet
/// whose defaults are not the built-in ones.
#[tokio::test]
async fn apply_takes_the_fleets_default_policies_from_the_server() {
    use cron_scheduler::kinds::{CatchupPolicy, OverlapPolicy};
    let app = TestApp::spawn_with(|c| {
        c.default_overlap_policy = OverlapPolicy::Allow;
        c.default_catchup_policy = CatchupPolicy::None;
    })
    .await;
    let (_, health) = app.get("/health").await;
    assert_eq!(
        health["schedule_defaults"],
        json!({"overlap_policy": "allow", "catchup_policy": "none"})
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "plain.yaml",
        "schedule_id: plain\nworkflow_id: wf\nversion: 1\nuser_id: alice\ncron_expr: '0 * * * *'\n",
    );
    let folder = dir.path().to_str().unwrap();
    let first = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok();
    assert_eq!(actions(&first.json()), pairs(&[("plain", "created")]));
    assert!(
        !first.stderr.contains("the server stored"),
        "no surprise in what was stored: {}",
        first.stderr
    );
    let again = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok();
    assert_eq!(actions(&again.json()), pairs(&[("plain", "unchanged")]));
    let (_, stored) = app.get("/schedules/plain").await;
    assert_eq!(stored["overlap_policy"], "allow");
    app.stop().await;
}

/// A file naming calendars: a second apply of it is unchanged; a change of `on_excluded`
/// is reported by name.
#[tokio::test]
async fn apply_knows_a_schedules_calendars() {
    let app = TestApp::spawn().await;
    let (status, _) = app
        .put(
            "/calendars/de",
            serde_json::json!({"user_id": "alice", "excluded_dates": ["2026-12-25"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let dir = tempfile::tempdir().unwrap();
    let file = |on: &str| {
        format!(
            "schedule_id: payroll\nworkflow_id: payroll\nversion: 1\nuser_id: alice\n\
             cron_expr: 0 9 * * 1-5\nexclude_calendars: [de]\non_excluded: {on}\n"
        )
    };
    write(dir.path(), "payroll.yaml", &file("next_business_day"));
    let folder = dir.path().to_str().unwrap();
    let first = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(actions(&first), pairs(&[("payroll", "created")]));
    let (_, stored) = app.get("/schedules/payroll").await;
    assert_eq!(stored["exclude_calendars"], serde_json::json!(["de"]));
    let second = ctl(&app, &["schedules", "apply", "-f", folder, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(actions(&second), pairs(&[("payroll", "unchanged")]));
    write(dir.path(), "payroll.yaml", &file("skip"));
    let third = ctl(&app, &["schedules", "apply", "-f", folder]).await.ok();
    let line = third
        .stdout
        .lines()
        .find(|l| l.starts_with("changed"))
        .unwrap_or_else(|| panic!("no changed row:\n{}", third.stdout));
    assert!(line.ends_with("on_excluded"), "{line}");
    // `get` shows them.
    let got = ctl(&app, &["schedules", "get", "payroll"]).await.ok();
    let row = got
        .stdout
        .lines()
        .find(|l| l.starts_with("exclude_calendars"))
        .unwrap_or_else(|| panic!("no exclude_calendars row:\n{}", got.stdout));
    assert!(row.ends_with("de"), "{row}");
    assert!(got.stdout.contains("on_excluded"), "{}", got.stdout);
    // A calendar the server does not know: the refusal names the file and the field.
    write(
        dir.path(),
        "payroll.yaml",
        &file("skip").replace("[de]", "[nope]"),
    );
    let ran = ctl(&app, &["schedules", "apply", "-f", folder]).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("payroll.yaml"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("field exclude_calendars"),
        "{}",
        ran.stderr
    );
}
