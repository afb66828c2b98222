//! Every bad request gets the right 4xx and a JSON error naming what is wrong, and changes
//! nothing in the database.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, snapshot};

fn valid() -> Value {
    json!({
        "workflow_id": "wf", "version": 1, "user_id": "alice", "cron_expr": "0 * * * *",
    })
}

fn with(field: &str, value: Value) -> String {
    let mut body = valid();
    body[field] = value;
    body.to_string()
}

fn without(field: &str) -> String {
    let mut body = valid();
    body.as_object_mut().unwrap().remove(field);
    body.to_string()
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<String>,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: Option<String>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        body,
        status: StatusCode::from_u16(status).unwrap(),
        code,
        field,
    }
}

fn upsert(
    name: &'static str,
    body: String,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    case(
        name,
        Method::POST,
        "/schedules/upsert",
        Some(body),
        status,
        code,
        field,
    )
}

fn invalid(name: &'static str, body: String, field: &'static str) -> Case {
    upsert(name, body, 422, "invalid_field", Some(field))
}

fn cases() -> Vec<Case> {
    use Method as M;
    let past = "2001-01-01T00:00:00Z";
    vec![
        upsert("not json", "{not json".into(), 400, "malformed_json", None),
        upsert("empty body", String::new(), 400, "malformed_json", None),
        upsert("json array", "[1, 2]".into(), 400, "malformed_json", None),
        upsert(
            "truncated json",
            r#"{"workflow_id": "wf""#.into(),
            400,
            "malformed_json",
            None,
        ),
        invalid("missing workflow_id", without("workflow_id"), "workflow_id"),
        invalid("missing version", without("version"), "version"),
        invalid("missing user_id", without("user_id"), "user_id"),
        invalid("missing cron_expr", without("cron_expr"), "cron_expr"),
        invalid(
            "cron out of range",
            with("cron_expr", json!("61 * * * *")),
            "cron_expr",
        ),
        invalid(
            "cron hour out of range",
            with("cron_expr", json!("0 24 * * *")),
            "cron_expr",
        ),
        invalid(
            "cron 4 fields",
            with("cron_expr", json!("* * * *")),
            "cron_expr",
        ),
        invalid(
            "cron 7 fields",
            with("cron_expr", json!("0 0 0 1 1 * 2030")),
            "cron_expr",
        ),
        invalid(
            "cron garbage",
            with("cron_expr", json!("every tuesday")),
            "cron_expr",
        ),
        invalid("cron empty", with("cron_expr", json!("")), "cron_expr"),
        invalid(
            "cron never fires",
            with("cron_expr", json!("0 0 30 2 *")),
            "cron_expr",
        ),
        invalid(
            "cron not a string",
            with("cron_expr", json!(5)),
            "cron_expr",
        ),
        invalid(
            "unknown timezone",
            with("timezone", json!("Mars/Olympus_Mons")),
            "timezone",
        ),
        invalid(
            "timezone not a string",
            with("timezone", json!(1)),
            "timezone",
        ),
        invalid(
            "unknown overlap policy",
            with("overlap_policy", json!("sometimes")),
            "overlap_policy",
        ),
        invalid(
            "unknown catchup policy",
            with("catchup_policy", json!("later")),
            "catchup_policy",
        ),
        invalid(
            "schedule_id with space",
            with("schedule_id", json!("has space")),
            "schedule_id",
        ),
        invalid(
            "schedule_id with slash",
            with("schedule_id", json!("a/b")),
            "schedule_id",
        ),
        invalid(
            "schedule_id too long",
            with("schedule_id", json!("x".repeat(129))),
            "schedule_id",
        ),
        invalid(
            "schedule_id empty",
            with("schedule_id", json!("")),
            "schedule_id",
        ),
        invalid("version zero", with("version", json!(0)), "version"),
        invalid("version negative", with("version", json!(-3)), "version"),
        invalid(
            "version too large",
            with("version", json!(1u64 << 40)),
            "version",
        ),
        invalid("version a string", with("version", json!("one")), "version"),
        invalid("version a float", with("version", json!(1.5)), "version"),
        invalid("jitter negative", with("jitter_ms", json!(-1)), "jitter_ms"),
        invalid(
            "jitter over an hour",
            with("jitter_ms", json!(3_600_001)),
            "jitter_ms",
        ),
        invalid("user_id empty", with("user_id", json!("")), "user_id"),
        invalid(
            "user_id control chars",
            with("user_id", json!("al\nice")),
            "user_id",
        ),
        invalid(
            "workflow_id too long",
            with("workflow_id", json!("w".repeat(300))),
            "workflow_id",
        ),
        invalid(
            "start_at not RFC 3339",
            with("start_at", json!("yesterday")),
            "start_at",
        ),
        invalid("end_at not a time", with("end_at", json!(12)), "end_at"),
        invalid(
            "end_at before start_at",
            {
                let mut b = valid();
                b["start_at"] = json!("2040-01-02T00:00:00Z");
                b["end_at"] = json!("2040-01-01T00:00:00Z");
                b.to_string()
            },
            "end_at",
        ),
        invalid(
            "end_at equal to start_at",
            {
                let mut b = valid();
                b["start_at"] = json!("2040-01-01T00:00:00Z");
                b["end_at"] = json!("2040-01-01T00:00:00Z");
                b.to_string()
            },
            "end_at",
        ),
        invalid("end_at already past", with("end_at", json!(past)), "end_at"),
        invalid(
            "paused not a boolean",
            with("paused", json!("yes")),
            "paused",
        ),
        invalid("unknown field", with("cron", json!("0 * * * *")), "cron"),
        invalid(
            "replace existing with a bad cron",
            {
                let mut b = valid();
                b["schedule_id"] = json!("existing");
                b["cron_expr"] = json!("not cron");
                b.to_string()
            },
            "cron_expr",
        ),
        upsert(
            "body over the limit",
            with("workflow_id", json!("w".repeat(2 << 20))),
            413,
            "payload_too_large",
            None,
        ),
        case(
            "get unknown schedule",
            M::GET,
            "/schedules/nope",
            None,
            404,
            "not_found",
            None,
        ),
        case(
            "get impossible id",
            M::GET,
            "/schedules/a%20b",
            None,
            404,
            "not_found",
            None,
        ),
        case(
            "delete unknown schedule",
            M::DELETE,
            "/schedules/nope",
            None,
            404,
            "not_found",
            None,
        ),
        case(
            "pause unknown schedule",
            M::POST,
            "/schedules/nope/pause",
            Some(r#"{"paused": true}"#.into()),
            404,
            "not_found",
            None,
        ),
        case(
            "pause without paused",
            M::POST,
            "/schedules/existing/pause",
            Some("{}".into()),
            422,
            "invalid_field",
            Some("paused"),
        ),
        case(
            "pause with a string",
            M::POST,
            "/schedules/existing/pause",
            Some(r#"{"paused": "yes"}"#.into()),
            422,
            "invalid_field",
            Some("paused"),
        ),
        case(
            "pause with bad json",
            M::POST,
            "/schedules/existing/pause",
            Some("{".into()),
            400,
            "malformed_json",
            None,
        ),
        case(
            "list limit zero",
            M::GET,
            "/schedules?limit=0",
            None,
            422,
            "invalid_field",
            Some("limit"),
        ),
        case(
            "list limit too big",
            M::GET,
            "/schedules?limit=1001",
            None,
            422,
            "invalid_field",
            Some("limit"),
        ),
        case(
            "list limit not a number",
            M::GET,
            "/schedules?limit=ten",
            None,
            422,
            "invalid_field",
            Some("limit"),
        ),
        case(
            "list paused not a bool",
            M::GET,
            "/schedules?paused=maybe",
            None,
            422,
            "invalid_field",
            Some("paused"),
        ),
        case(
            "list bad cursor",
            M::GET,
            "/schedules?cursor=a%20b",
            None,
            422,
            "invalid_field",
            Some("cursor"),
        ),
        case(
            "preview bad cron",
            M::POST,
            "/cron/preview",
            Some(r#"{"cron_expr": "nope"}"#.into()),
            422,
            "invalid_field",
            Some("cron_expr"),
        ),
        case(
            "preview count zero",
            M::POST,
            "/cron/preview",
            Some(r#"{"cron_expr": "* * * * *", "count": 0}"#.into()),
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "preview count too big",
            M::POST,
            "/cron/preview",
            Some(r#"{"cron_expr": "* * * * *", "count": 101}"#.into()),
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "preview unknown timezone",
            M::POST,
            "/cron/preview",
            Some(r#"{"cron_expr": "* * * * *", "timezone": "Nowhere/Else"}"#.into()),
            422,
            "invalid_field",
            Some("timezone"),
        ),
        case(
            "workflow version zero",
            M::PUT,
            "/workflows/wf/versions/0",
            Some("{}".into()),
            422,
            "invalid_field",
            Some("version"),
        ),
        case(
            "workflow version not a number",
            M::PUT,
            "/workflows/wf/versions/abc",
            Some("{}".into()),
            422,
            "invalid_field",
            Some("version"),
        ),
        case(
            "workflow dag not an object",
            M::PUT,
            "/workflows/wf/versions/2",
            Some(r#""a string""#.into()),
            400,
            "malformed_json",
            None,
        ),
        case(
            "workflow version changed",
            M::PUT,
            "/workflows/wf/versions/1",
            Some(r#"{"tasks": ["other"]}"#.into()),
            409,
            "conflict",
            None,
        ),
        case(
            "workflow unknown",
            M::GET,
            "/workflows/wf/versions/9",
            None,
            404,
            "not_found",
            None,
        ),
        case(
            "method not allowed",
            M::PATCH,
            "/schedules/existing",
            None,
            405,
            "method_not_allowed",
            None,
        ),
        case(
            "unknown endpoint",
            M::GET,
            "/nope",
            None,
            404,
            "not_found",
            None,
        ),
    ]
}

#[tokio::test]
async fn bad_requests_get_a_json_4xx_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "existing"}))
        .await;
    let (status, _) = app
        .put("/workflows/wf/versions/1", json!({"tasks": ["a"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    crate::common::insert_pending_run(&app.pool, "existing", "2099-01-01T00:00:00Z").await;
    let before = snapshot(&app.pool).await;

    let cases = cases();
    assert!(cases.len() >= 25, "the issue asks for at least 25 cases");
    let mut failures = Vec::new();
    for c in &cases {
        let (status, body) = app
            .send_raw(c.method.clone(), &c.path, c.body.clone())
            .await;
        let code = body["error"]["code"].as_str();
        let field = body["error"]["field"].as_str();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        if status != c.status || code != Some(c.code) || field != c.field || message.is_empty() {
            failures.push(format!(
                "{}: expected {} {} {:?}, got {status} {body}",
                c.name, c.status, c.code, c.field
            ));
        }
        assert_eq!(
            snapshot(&app.pool).await,
            before,
            "{} changed the database",
            c.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn client_errors_never_leak_internals() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .send_raw(
            Method::POST,
            "/schedules/upsert",
            Some("{\"version\": 1e400}".into()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("sqlx") && !text.contains("postgres"),
        "{text}"
    );
}

/// A request, and the status, field and words of its expected error.
type ExpectedError<'a> = (
    (Method, String, Option<String>),
    u16,
    Option<&'a str>,
    Vec<&'a str>,
);

/// Malformed forms that a lenient parser would take are refused with the field named, and
/// preview and upsert agree; every message says what a valid value looks like.
#[tokio::test]
async fn input_errors_name_the_field_and_show_a_valid_value() {
    let app = TestApp::spawn().await;
    app.create_schedule(json!({"schedule_id": "existing"}))
        .await;
    let before = snapshot(&app.pool).await;
    let preview = |expr: &str, tz: &str| json!({"cron_expr": expr, "timezone": tz}).to_string();
    let post = |path: &str, body: String| (Method::POST, path.to_owned(), Some(body));
    // (request, status, field, words the message must contain)
    let cases: Vec<ExpectedError> = vec![
        (
            post(
                "/schedules/upsert",
                with("cron_expr", json!("1,,2 * * * *")),
            ),
            422,
            Some("cron_expr"),
            vec!["minute", "empty list element", "1,2,5"],
        ),
        (
            post("/cron/preview", preview("1,,2 * * * *", "UTC")),
            422,
            Some("cron_expr"),
            vec!["empty list element"],
        ),
        (
            post(
                "/schedules/upsert",
                with("cron_expr", json!("0 1,2, * * *")),
            ),
            422,
            Some("cron_expr"),
            vec!["hour", "empty list element"],
        ),
        (
            post("/schedules/upsert", with("timezone", json!("UTC "))),
            422,
            Some("timezone"),
            vec!["whitespace"],
        ),
        (
            post("/cron/preview", preview("0 * * * *", "UTC ")),
            422,
            Some("timezone"),
            vec!["whitespace"],
        ),
        (
            post("/schedules/upsert", with("user_id", json!(" alice"))),
            422,
            Some("user_id"),
            vec!["whitespace"],
        ),
        (
            post("/cron/preview", preview("0 0 30 2 *", "UTC")),
            422,
            Some("cron_expr"),
            vec!["no future fire time"],
        ),
        (
            post("/schedules/upsert", with("cron_expr", json!("0 0 30 2 *"))),
            422,
            Some("cron_expr"),
            vec!["no future fire time"],
        ),
        (
            post("/schedules/upsert", with("cron_expr", json!("60 * * * *"))),
            422,
            Some("cron_expr"),
            vec!["60", "minute", "0-59"],
        ),
        (
            post("/schedules/upsert", with("cron_expr", json!("0 0 * 13 *"))),
            422,
            Some("cron_expr"),
            vec!["13", "month", "1-12", "JAN-DEC"],
        ),
        (
            post("/schedules/upsert", with("cron_expr", json!("*/0 * * * *"))),
            422,
            Some("cron_expr"),
            vec!["step of 0"],
        ),
        (
            post("/schedules/upsert", with("cron_expr", json!("@midnight"))),
            422,
            Some("cron_expr"),
            vec!["@midnight", "@daily", "@hourly", "@yearly"],
        ),
        (
            post(
                "/schedules/upsert",
                with("cron_expr", json!("every tuesday")),
            ),
            422,
            Some("cron_expr"),
            vec!["2 fields", "minute hour day-of-month month day-of-week"],
        ),
        (
            post(
                "/schedules/upsert",
                with("end_at", json!("2030-01-01 00:00:00")),
            ),
            422,
            Some("end_at"),
            vec!["RFC 3339", "2030-01-01T00:00:00Z"],
        ),
        (
            post(
                "/run-launcher/start?workflow_id=wf&version=1&user_id=u&scheduled_for=tomorrow",
                String::new(),
            ),
            422,
            Some("scheduled_for"),
            vec!["RFC 3339", "2030-01-01T00:00:00Z"],
        ),
        (
            (Method::GET, "/schedules?userid=bob".into(), None),
            422,
            Some("userid"),
            vec!["unknown query parameter", "user_id"],
        ),
        (
            (Method::GET, "/schedules/existing?verbose=1".into(), None),
            422,
            Some("verbose"),
            vec!["takes no query parameters"],
        ),
        (
            (
                Method::GET,
                "/schedules/existing/runs?stauts=failed".into(),
                None,
            ),
            422,
            Some("stauts"),
            vec!["status"],
        ),
        (
            (Method::POST, "/schedules".into(), Some(valid().to_string())),
            405,
            None,
            vec!["POST /schedules/upsert"],
        ),
        (
            (
                Method::PUT,
                "/schedules/existing".into(),
                Some(valid().to_string()),
            ),
            405,
            None,
            vec!["POST /schedules/upsert"],
        ),
    ];
    let mut failures = Vec::new();
    for ((method, path, body), status, field, words) in &cases {
        let (got, answer) = app.send_raw(method.clone(), path, body.clone()).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        let missing: Vec<&&str> = words.iter().filter(|w| !message.contains(**w)).collect();
        if got.as_u16() != *status
            || answer["error"]["field"].as_str() != *field
            || !missing.is_empty()
        {
            failures.push(format!(
                "{method} {path} {body:?}: expected {status} {field:?} with {words:?}, got {got} {answer}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(snapshot(&app.pool).await, before, "nothing changed");
    // Still valid: the aliases croner knows, and spaces between fields.
    for expr in [
        "@daily",
        "@ANNUALLY",
        "0  0 * * MON-FRI",
        "0 0 L * *",
        "0 12 * * 5#3",
    ] {
        let (status, body) = app
            .send_raw(Method::POST, "/cron/preview", Some(preview(expr, "UTC")))
            .await;
        assert_eq!(status, StatusCode::OK, "{expr}: {body}");
    }
    app.stop().await;
}
