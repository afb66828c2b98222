//! `ctl schedules apply`: schedules as code. The files say what each schedule should be;
//! apply reads the server's current schedule (GET), compares field by field with what the
//! server would store for the file (omitted fields at the server's defaults), and upserts
//! only what is new or different. `--prune` also deletes the schedules of the files'
//! users that no file names; `--dry-run` reports all of it and writes nothing.
//!
//! Failure behaviour: every file is read and validated before the first request, so a bad
//! file writes nothing. A write the server refuses stops apply there (the schedules before
//! it stay applied; applying again finishes the job) and nothing is pruned: pruning
//! follows only a complete apply.

use std::collections::BTreeSet;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{
    Failure, Output,
    client::{Client, RequestError, list_all, schedule_path},
    files::{self, FileSchedule},
    table,
};
use crate::{config::Config, schedules::model::Defaults};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Changed,
    Unchanged,
    Deleted,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Changed => "changed",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub action: Action,
    pub schedule_id: String,
    /// The file (and place in it) that names the schedule; `null` for a pruned one.
    pub file: Option<String>,
    /// The fields that differ from the server's schedule (for `changed`).
    pub changes: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub results: Vec<Outcome>,
    pub created: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

impl Report {
    fn new(dry_run: bool, results: Vec<Outcome>) -> Self {
        let count = |a: Action| results.iter().filter(|r| r.action == a).count();
        Self {
            dry_run,
            created: count(Action::Created),
            changed: count(Action::Changed),
            unchanged: count(Action::Unchanged),
            deleted: count(Action::Deleted),
            results,
        }
    }

    fn summary(&self) -> String {
        let counts = format!(
            "{} created, {} changed, {} unchanged, {} deleted",
            self.created, self.changed, self.unchanged, self.deleted
        );
        if self.dry_run {
            format!("{counts} (dry run: nothing was written)")
        } else {
            counts
        }
    }

    pub fn print(&self, output: Output) {
        match output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(self).expect("a report serializes")
            ),
            Output::Table => {
                let rows: Vec<Vec<String>> = self
                    .results
                    .iter()
                    .map(|r| {
                        vec![
                            r.action.as_str().to_owned(),
                            r.schedule_id.clone(),
                            r.file.clone().unwrap_or_else(|| "-".into()),
                            if r.changes.is_empty() {
                                "-".into()
                            } else {
                                r.changes.join(", ")
                            },
                        ]
                    })
                    .collect();
                if !rows.is_empty() {
                    println!(
                        "{}",
                        table::render(&["ACTION", "SCHEDULE", "FILE", "CHANGES"], &rows)
                    );
                }
                println!("{}", self.summary());
            }
        }
    }
}

/// The defaults the server fills in for a field a file omits. Timezone, jitter, bounds
/// and `paused` have fixed ones; the policies come from the fleet's configuration, which
/// `GET /health` publishes (`schedule_defaults`). A server too old to say is assumed to
/// use [`local_defaults`]. A write that shows the fleet differs prints a warning.
pub async fn server_defaults(client: &Client) -> Result<Defaults, Failure> {
    let health = client.get("/health", &[]).await?;
    let published = &health["schedule_defaults"];
    let policy = |key: &str| published[key].as_str().map(str::to_owned);
    match (policy("overlap_policy"), policy("catchup_policy")) {
        (Some(overlap), Some(catchup)) => Ok(Defaults {
            overlap_policy: overlap.parse().map_err(|e: String| {
                Failure::input(format!("the server's default overlap_policy: {e}"))
            })?,
            catchup_policy: catchup.parse().map_err(|e: String| {
                Failure::input(format!("the server's default catchup_policy: {e}"))
            })?,
        }),
        _ => local_defaults(),
    }
}

/// The policies' defaults read from this process's `SCHEDULER_DEFAULT_OVERLAP_POLICY` and
/// `SCHEDULER_DEFAULT_CATCHUP_POLICY` (the service's built-in values when unset).
pub fn local_defaults() -> Result<Defaults, Failure> {
    const KEYS: [&str; 2] = [
        "SCHEDULER_DEFAULT_OVERLAP_POLICY",
        "SCHEDULER_DEFAULT_CATCHUP_POLICY",
    ];
    let config =
        Config::from_lookup(|k| KEYS.contains(&k).then(|| std::env::var(k).ok()).flatten())
            .map_err(|e| Failure::input(e.to_string()))?;
    Ok(Defaults {
        overlap_policy: config.default_overlap_policy,
        catchup_policy: config.default_catchup_policy,
    })
}

/// The fields of `want` that the server's `have` does not hold as the file says.
pub fn differences(want: &FileSchedule, have: &Value) -> Vec<&'static str> {
    let spec = &want.spec;
    let text = |key: &str| have[key].as_str().map(str::to_owned);
    let instant = |key: &str| {
        have[key]
            .as_str()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
    };
    // PostgreSQL keeps microseconds; sqlx truncates to them.
    let stored = |t: Option<DateTime<Utc>>| t.map(|t| t.trunc_subsecs(6));
    let calendars: Option<Vec<&str>> = have["exclude_calendars"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let checks: [(&'static str, bool); 17] = [
        (
            "workflow_id",
            text("workflow_id").as_deref() == Some(&spec.workflow_id),
        ),
        (
            "version",
            have["version"].as_i64() == Some(i64::from(spec.version)),
        ),
        ("user_id", text("user_id").as_deref() == Some(&spec.user_id)),
        (
            "cron_expr",
            text("cron_expr").as_deref() == spec.window.spec.expr(),
        ),
        (
            "interval",
            // Both sides in the largest whole units (`PT90M` is `PT1H30M`).
            text("interval") == spec.window.spec.interval().map(|i| i.text()),
        ),
        (
            "anchor",
            instant("anchor") == spec.window.spec.interval().map(|i| i.anchor()),
        ),
        (
            "timezone",
            text("timezone").as_deref() == Some(spec.window.spec.timezone().name()),
        ),
        (
            "start_at",
            instant("start_at") == stored(spec.window.start_at),
        ),
        ("end_at", instant("end_at") == stored(spec.window.end_at)),
        (
            "jitter_ms",
            have["jitter_ms"].as_i64() == Some(i64::from(spec.jitter_ms)),
        ),
        (
            "overlap_policy",
            text("overlap_policy").as_deref() == Some(spec.overlap_policy.as_str()),
        ),
        (
            "catchup_policy",
            text("catchup_policy").as_deref() == Some(spec.catchup_policy.as_str()),
        ),
        ("paused", have["paused"].as_bool() == Some(spec.paused)),
        (
            "dst_gap",
            text("dst_gap").as_deref() == spec.window.spec.dst().gap.map(|g| g.as_str()),
        ),
        (
            "dst_fold",
            text("dst_fold").as_deref() == spec.window.spec.dst().fold.map(|f| f.as_str()),
        ),
        (
            "exclude_calendars",
            // A server without calendars holds none.
            calendars.unwrap_or_default()
                == spec
                    .exclude_calendars
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
        ),
        (
            "on_excluded",
            text("on_excluded").as_deref().unwrap_or("skip") == spec.on_excluded.as_str(),
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(field, _)| field)
        .collect()
}

pub async fn run(
    client: &Client,
    output: Output,
    paths: &[std::path::PathBuf],
    dry_run: bool,
    prune: bool,
) -> Result<(), Failure> {
    let defaults = server_defaults(client).await?;
    let files = files::schedule_files(paths)?;
    let wanted = files::load(&files, defaults)?;

    let mut results = Vec::new();
    let mut writes = Vec::new();
    for schedule in &wanted {
        let path = schedule_path(schedule.id(), "")?;
        let (action, changes) = match client.get_optional(&path).await? {
            None => (Action::Created, Vec::new()),
            Some(have) => match differences(schedule, &have) {
                d if d.is_empty() => (Action::Unchanged, d),
                d => (Action::Changed, d),
            },
        };
        if action != Action::Unchanged {
            writes.push(results.len());
        }
        results.push(Outcome {
            action,
            schedule_id: schedule.id().to_owned(),
            file: Some(schedule.origin.clone()),
            changes,
        });
    }

    if !dry_run {
        // Whether each outcome has happened: unchanged ones have, writes once they succeed.
        let mut happened: Vec<bool> = results
            .iter()
            .map(|r| r.action == Action::Unchanged)
            .collect();
        for &i in &writes {
            if let Err(failure) = upsert(client, &wanted[i]).await {
                // Report what was written before the refusal, then the refusal.
                let done = results
                    .into_iter()
                    .zip(happened)
                    .filter_map(|(r, h)| h.then_some(r))
                    .collect();
                Report::new(false, done).print(output);
                return Err(failure);
            }
            happened[i] = true;
        }
    }

    if prune {
        let keep: BTreeSet<&str> = wanted.iter().map(FileSchedule::id).collect();
        let users: BTreeSet<&str> = wanted.iter().map(|s| s.spec.user_id.as_str()).collect();
        for user in users {
            let listed = list_all(
                client,
                "/schedules",
                "schedules",
                &[("user_id", user.to_owned())],
                None,
            )
            .await?;
            for s in listed {
                let Some(id) = s["schedule_id"].as_str() else {
                    continue;
                };
                // The listing filters by user; checking again costs nothing and guards
                // against a server that ignored the filter.
                if keep.contains(id) || s["user_id"].as_str() != Some(user) {
                    continue;
                }
                if !dry_run {
                    match client.delete(&schedule_path(id, "")?).await {
                        Ok(()) => {}
                        // Deleted meanwhile: the outcome wanted.
                        Err(f) if f.kind == super::FailureKind::NotFound => {}
                        Err(f) => {
                            Report::new(false, results).print(output);
                            return Err(f);
                        }
                    }
                }
                results.push(Outcome {
                    action: Action::Deleted,
                    schedule_id: id.to_owned(),
                    file: None,
                    changes: Vec::new(),
                });
            }
        }
    }

    Report::new(dry_run, results).print(output);
    Ok(())
}

/// One upsert; a refusal names the file, the schedule and the field.
async fn upsert(client: &Client, schedule: &FileSchedule) -> Result<(), Failure> {
    let body = Value::Object(schedule.body.clone());
    let stored = match client
        .send(
            reqwest::Method::POST,
            "/schedules/upsert",
            &[],
            Some(&body),
            &[],
        )
        .await
    {
        Ok((_, stored)) => stored,
        Err(RequestError::Refused(r)) => {
            let field = r
                .field
                .as_deref()
                .map(|f| format!("field {f}: "))
                .unwrap_or_default();
            return Err(Failure::new(
                r.kind(),
                format!(
                    "{} (schedule {}): {field}the server refused it: HTTP {} {}: {}",
                    schedule.origin,
                    schedule.id(),
                    r.status.as_u16(),
                    r.code,
                    r.message
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    for warning in stored["warnings"].as_array().into_iter().flatten() {
        eprintln!(
            "warning: {} (schedule {}): {}",
            schedule.origin,
            schedule.id(),
            table::text(warning)
        );
    }
    // The server stored something else than apply expected: a policy default of the
    // fleet that differs from the one assumed here. Say so, or every apply would report
    // a change.
    for field in differences(schedule, &stored) {
        let hint = match field {
            "overlap_policy" | "catchup_policy" => format!(
                "name {field} in the file, or set SCHEDULER_DEFAULT_{} for ctl as the fleet has it",
                field.to_uppercase()
            ),
            _ => "is the server of another version than this ctl?".to_owned(),
        };
        eprintln!(
            "warning: {} (schedule {}): the server stored {field} {}, not what apply \
             expected; {hint}",
            schedule.origin,
            schedule.id(),
            table::text(&stored[field]),
        );
    }
    Ok(())
}
