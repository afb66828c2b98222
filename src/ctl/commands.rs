//! Every `ctl` command but `apply`: one request (or one paged listing) each, printed as a
//! table or as the API's JSON.

use serde_json::{Value, json};

use super::{
    CronCommand, CtlCommand, Failure, Output, SchedulesCommand, WorkerCommand, apply,
    client::{Client, list_all, schedule_path},
    table::{self, cell},
};

pub async fn run(client: &Client, output: Output, command: CtlCommand) -> Result<(), Failure> {
    match command {
        CtlCommand::Schedules(c) => schedules(client, output, c).await,
        CtlCommand::Worker(c) => {
            let status = match c {
                WorkerCommand::Status => client.get("/worker/status", &[]).await?,
                WorkerCommand::Start => client.post("/worker/start", &Value::Null).await?,
                WorkerCommand::Stop => client.post("/worker/stop", &Value::Null).await?,
            };
            print(output, &status, worker_view);
            Ok(())
        }
        CtlCommand::Cron(CronCommand::Preview {
            expr,
            anchor,
            calendars,
            on_excluded,
            tz,
            count,
            from,
        }) => {
            // A cron expression never starts with `P`; an ISO 8601 interval always does.
            let mut body = if expr.starts_with('P') {
                json!({"interval": expr, "count": count})
            } else {
                json!({"cron_expr": expr, "count": count})
            };
            if let Some(anchor) = anchor {
                body["anchor"] = json!(anchor);
            }
            if !calendars.is_empty() {
                body["exclude_calendars"] = json!(calendars);
            }
            if let Some(on_excluded) = on_excluded {
                body["on_excluded"] = json!(on_excluded);
            }
            if let Some(tz) = tz {
                body["timezone"] = json!(tz);
            }
            if let Some(from) = from {
                body["from"] = json!(from);
            }
            let preview = client.post("/cron/preview", &body).await?;
            print(output, &preview, |p| {
                let rows: Vec<Vec<String>> = p["next"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            cell(t, "utc"),
                            cell(t, "local"),
                            cell(t, "outcome"),
                            cell(t, "fire_at"),
                            cell(t, "calendar"),
                        ]
                    })
                    .collect();
                format!(
                    "{}\n{}\n\n{}",
                    cell(p, "description"),
                    table::fields(&[("rule", rule_cell(p)), ("timezone", cell(p, "timezone")),]),
                    table::render(&["UTC", "LOCAL", "OUTCOME", "FIRES AT", "CALENDAR"], &rows)
                )
            });
            Ok(())
        }
    }
}

async fn schedules(
    client: &Client,
    output: Output,
    command: SchedulesCommand,
) -> Result<(), Failure> {
    match command {
        SchedulesCommand::List {
            user,
            workflow,
            paused,
            status,
            health,
            limit,
        } => {
            let mut query = Vec::new();
            if let Some(u) = user {
                query.push(("user_id", u));
            }
            if let Some(w) = workflow {
                query.push(("workflow_id", w));
            }
            if let Some(p) = paused {
                query.push(("paused", p.to_string()));
            }
            if let Some(s) = status {
                query.push(("status", s));
            }
            if let Some(h) = health {
                query.push(("health", h));
            }
            let list = list_all(client, "/schedules", "schedules", &query, limit).await?;
            print(output, &Value::Array(list), |l| {
                let rows: Vec<Vec<String>> = l
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        vec![
                            cell(s, "schedule_id"),
                            cell(s, "user_id"),
                            format!("{} v{}", cell(s, "workflow_id"), cell(s, "version")),
                            rule_cell(s),
                            cell(s, "timezone"),
                            cell(s, "status"),
                            cell(s, "health"),
                            table::text(&s["next_fire_times"][0]),
                            cell(s, "last_run_status"),
                        ]
                    })
                    .collect();
                table::render(
                    &[
                        "SCHEDULE",
                        "USER",
                        "WORKFLOW",
                        "RULE",
                        "TIMEZONE",
                        "STATUS",
                        "HEALTH",
                        "NEXT FIRE",
                        "LAST RUN",
                    ],
                    &rows,
                )
            });
            Ok(())
        }
        SchedulesCommand::Get { schedule_id } => {
            let s = client.get(&schedule_path(&schedule_id, "")?, &[]).await?;
            print(output, &s, schedule_view);
            Ok(())
        }
        SchedulesCommand::Apply {
            files,
            dry_run,
            prune,
        } => apply::run(client, output, &files, dry_run, prune).await,
        SchedulesCommand::Pause { schedule_id } => pause(client, output, &schedule_id, true).await,
        SchedulesCommand::Resume { schedule_id } => {
            pause(client, output, &schedule_id, false).await
        }
        SchedulesCommand::Delete { schedule_id } => {
            client.delete(&schedule_path(&schedule_id, "")?).await?;
            print(output, &json!({"deleted": schedule_id}), |v| {
                format!("deleted schedule {}", cell(v, "deleted"))
            });
            Ok(())
        }
        SchedulesCommand::Trigger {
            schedule_id,
            idempotency_key,
        } => {
            let headers: Vec<(&str, String)> = idempotency_key
                .map(|k| ("Idempotency-Key", k))
                .into_iter()
                .collect();
            let (status, run) = client
                .send(
                    reqwest::Method::POST,
                    &schedule_path(&schedule_id, "/trigger")?,
                    &[],
                    None,
                    &headers,
                )
                .await
                .map_err(Failure::from)?;
            let existing = status == reqwest::StatusCode::OK;
            print(output, &run, |r| {
                let head = if existing {
                    "the key names a run already: nothing new was started"
                } else {
                    "triggered"
                };
                format!("{head}\n{}", run_view(r))
            });
            Ok(())
        }
        SchedulesCommand::Backfill {
            schedule_id,
            from,
            to,
        } => {
            let answer = client
                .post(
                    &schedule_path(&schedule_id, "/backfill")?,
                    &json!({"from": from, "to": to}),
                )
                .await?;
            print(output, &answer, |a| {
                table::fields(&[
                    ("ticks", cell(a, "ticks")),
                    ("created", cell(a, "created")),
                    ("revived", cell(a, "revived")),
                    ("existing", cell(a, "existing")),
                ])
            });
            Ok(())
        }
        SchedulesCommand::Runs {
            schedule_id,
            status,
            limit,
        } => {
            let query: Vec<(&str, String)> = status.map(|s| ("status", s)).into_iter().collect();
            let path = schedule_path(&schedule_id, "/runs")?;
            let runs = list_all(client, &path, "runs", &query, Some(limit)).await?;
            print(output, &Value::Array(runs), |l| {
                let rows: Vec<Vec<String>> = l
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            cell(r, "run_id"),
                            cell(r, "scheduled_for"),
                            cell(r, "status"),
                            cell(r, "trigger"),
                            cell(r, "attempt"),
                            cell(r, "reason"),
                            cell(r, "last_error"),
                        ]
                    })
                    .collect();
                table::render(
                    &[
                        "RUN",
                        "SCHEDULED FOR",
                        "STATUS",
                        "TRIGGER",
                        "ATTEMPT",
                        "REASON",
                        "ERROR",
                    ],
                    &rows,
                )
            });
            Ok(())
        }
    }
}

async fn pause(client: &Client, output: Output, id: &str, paused: bool) -> Result<(), Failure> {
    let s = client
        .post(&schedule_path(id, "/pause")?, &json!({"paused": paused}))
        .await?;
    print(output, &s, |s| {
        format!(
            "schedule {}: {}, next fire {}",
            cell(s, "schedule_id"),
            cell(s, "status"),
            table::text(&s["next_fire_times"][0])
        )
    });
    Ok(())
}

/// The API's JSON as it is for `json`, else `view` of it.
fn print(output: Output, value: &Value, view: impl Fn(&Value) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON serializes")
        ),
        Output::Table => println!("{}", view(value)),
    }
}

/// A schedule's rule in one cell: its cron expression, or `every PT1H30M`.
fn rule_cell(s: &Value) -> String {
    match &s["interval"] {
        Value::String(i) => format!("every {i}"),
        _ => cell(s, "cron_expr"),
    }
}

fn schedule_view(s: &Value) -> String {
    let mut pairs: Vec<(&str, String)> = [
        "schedule_id",
        "workflow_id",
        "version",
        "user_id",
        "cron_expr",
        "interval",
        "anchor",
        "timezone",
        "start_at",
        "end_at",
        "jitter_ms",
        "overlap_policy",
        "catchup_policy",
        "dst_gap",
        "dst_fold",
        "exclude_calendars",
        "on_excluded",
        "paused",
        "status",
        "health",
        "last_fire_at",
        "last_run_status",
        "missed_uncounted",
        "created_at",
        "updated_at",
    ]
    .into_iter()
    .map(|k| (k, cell(s, k)))
    .collect();
    pairs.push(("next_fire_times", cell(s, "next_fire_times")));
    if s["warnings"].as_array().is_some_and(|w| !w.is_empty()) {
        pairs.push(("warnings", cell(s, "warnings")));
    }
    table::fields(&pairs)
}

fn run_view(r: &Value) -> String {
    table::fields(
        &[
            "run_id",
            "schedule_id",
            "scheduled_for",
            "status",
            "trigger",
            "workflow_id",
            "version",
            "user_id",
        ]
        .map(|k| (k, cell(r, k))),
    )
}

fn worker_view(w: &Value) -> String {
    let leader = match &w["leader"] {
        Value::Null => "none".to_owned(),
        l => format!("{} (epoch {})", cell(l, "node_id"), cell(l, "epoch")),
    };
    let head = table::fields(&[
        ("cluster", cell(w, "cluster_name")),
        ("worker_enabled", cell(w, "worker_enabled")),
        ("leader", leader),
        ("answered_by", cell(w, "node_id")),
        ("last_tick_at", cell(w, "last_tick_at")),
        ("due_schedules", cell(w, "due_schedules")),
        ("pending_runs", cell(w, "pending_runs")),
        ("overdue_runs", cell(w, "overdue_runs")),
        ("lag_seconds", cell(w, "lag_seconds")),
    ]);
    let rows: Vec<Vec<String>> = w["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                cell(n, "node_id"),
                cell(n, "role"),
                cell(n, "version"),
                cell(n, "started_at"),
                cell(n, "last_seen_at"),
            ]
        })
        .collect();
    format!(
        "{head}\n\n{}",
        table::render(&["NODE", "ROLE", "VERSION", "STARTED", "LAST SEEN"], &rows)
    )
}
