//! Schedule files for `apply`: YAML (`.yaml`, `.yml`, several `---` documents allowed) or
//! JSON (`.json`); each document one schedule or a list of them, in the fields of
//! `POST /schedules/upsert`. Every schedule is checked here, with the same validation the
//! server runs, before anything is written; a problem names its file, its place in the file
//! and the field.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Failure;
use crate::schedules::model::{Defaults, ScheduleRequest, ScheduleSpec, check_fires_after};

/// One schedule read from a file, validated.
#[derive(Debug, Clone)]
pub struct FileSchedule {
    /// Where it was read: the file, and its place when the file holds several.
    pub origin: String,
    /// The object as the file gives it: the upsert's body.
    pub body: Map<String, Value>,
    /// What the server will store for it (omitted fields at their defaults).
    pub spec: ScheduleSpec,
}

impl FileSchedule {
    pub fn id(&self) -> &str {
        self.spec.schedule_id.as_str()
    }
}

/// The files `paths` name: a file as it is, a folder's `.yaml`, `.yml` and `.json` files
/// (not its subfolders), in name order.
pub fn schedule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
            let mut found: Vec<PathBuf> = Vec::new();
            for entry in entries {
                let entry =
                    entry.map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
                let p = entry.path();
                let hidden = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if !hidden && p.is_file() && format_of(&p).is_some() {
                    found.push(p);
                }
            }
            if found.is_empty() {
                return Err(Failure::input(format!(
                    "{}: no .yaml, .yml or .json file in this folder",
                    path.display()
                )));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "yaml" | "yml" => Some(Format::Yaml),
        "json" => Some(Format::Json),
        _ => None,
    }
}

/// Reads and checks every schedule of `files`. All problems are collected (one line
/// each), so one run shows every bad file; any problem fails the whole set.
pub fn load(files: &[PathBuf], defaults: Defaults) -> Result<Vec<FileSchedule>, Failure> {
    let mut schedules = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match read_file(file, defaults) {
            Ok(found) => schedules.extend(found),
            Err(mut p) => problems.append(&mut p),
        }
    }
    // The same id twice: which one should win is not for apply to guess.
    let mut seen: std::collections::BTreeMap<&str, &str> = Default::default();
    for s in &schedules {
        if let Some(first) = seen.insert(s.id(), &s.origin) {
            problems.push(format!(
                "{}: field schedule_id: {:?} is also in {first}",
                s.origin,
                s.id()
            ));
        }
    }
    if problems.is_empty() {
        Ok(schedules)
    } else {
        Err(Failure::input(format!(
            "nothing was applied; {} problem{} in the files:\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        )))
    }
}

fn read_file(file: &Path, defaults: Defaults) -> Result<Vec<FileSchedule>, Vec<String>> {
    let name = file.display().to_string();
    let Some(format) = format_of(file) else {
        return Err(vec![format!(
            "{name}: not a schedule file (expected .yaml, .yml or .json)"
        )]);
    };
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("{name}: {e}")])?;
    let documents: Vec<Value> = match format {
        Format::Json => {
            vec![serde_json::from_str(&text).map_err(|e| vec![format!("{name}: not JSON: {e}")])?]
        }
        Format::Yaml => {
            let mut docs = Vec::new();
            for doc in serde_norway::Deserializer::from_str(&text) {
                let value =
                    Value::deserialize(doc).map_err(|e| vec![format!("{name}: not YAML: {e}")])?;
                // A document of comments only is empty: nothing to apply.
                if !value.is_null() {
                    docs.push(value);
                }
            }
            docs
        }
    };
    if documents.is_empty() {
        return Err(vec![format!("{name}: holds no schedule")]);
    }
    let several_docs = documents.len() > 1;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (d, document) in documents.into_iter().enumerate() {
        let doc_origin = if several_docs {
            format!("{name} (document {})", d + 1)
        } else {
            name.clone()
        };
        let items: Vec<(String, Value)> = match document {
            Value::Array(list) if list.is_empty() => {
                problems.push(format!("{doc_origin}: an empty list holds no schedule"));
                continue;
            }
            Value::Array(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("{doc_origin}, item {}", i + 1), v))
                .collect(),
            other => vec![(doc_origin, other)],
        };
        for (origin, item) in items {
            match check(&origin, item, defaults) {
                Ok(s) => found.push(s),
                Err(p) => problems.push(p),
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// One schedule: its shape, its `schedule_id`, then the server's own validation.
fn check(origin: &str, item: Value, defaults: Defaults) -> Result<FileSchedule, String> {
    let Value::Object(body) = item else {
        return Err(format!(
            "{origin}: a schedule is an object of fields (schedule_id, workflow_id, ...), not {}",
            kind(&item)
        ));
    };
    let id_hint = match body.get("schedule_id") {
        Some(Value::String(id)) => format!("{origin} (schedule {id})"),
        None | Some(Value::Null) => {
            return Err(format!(
                "{origin}: field schedule_id: is required by apply (a fixed id makes \
                 applying the same file again change nothing)"
            ));
        }
        Some(_) => origin.to_owned(),
    };
    let request: ScheduleRequest = serde_path_to_error::deserialize(Value::Object(body.clone()))
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // An unknown field is reported at the object itself; serde names it in the text.
            let field = if path == "." {
                unknown_field(&inner).unwrap_or_else(|| "?".into())
            } else {
                path
            };
            format!("{id_hint}: field {field}: {inner}")
        })?;
    let spec = request
        .validate(defaults)
        .map_err(|e| format!("{id_hint}: field {}: {}", e.field, e.message))?;
    check_fires_after(&spec.window, Utc::now())
        .map_err(|e| format!("{id_hint}: field {}: {}", e.field, e.message))?;
    Ok(FileSchedule {
        origin: origin.to_owned(),
        body,
        spec,
    })
}

/// The field serde's "unknown field `x`, expected ..." names.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::{CatchupPolicy, OverlapPolicy};

    const DEFAULTS: Defaults = Defaults {
        overlap_policy: OverlapPolicy::Skip,
        catchup_policy: CatchupPolicy::FireImmediately,
    };

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn yaml_lists_and_documents() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "a.yaml",
            "# two documents\n- {schedule_id: a, workflow_id: w, version: 1, user_id: u, cron_expr: '@daily'}\n\
             ---\nschedule_id: b\nworkflow_id: w\nversion: 2\nuser_id: u\ncron_expr: 0 6 * * 1-5\ntimezone: Europe/London\n",
        );
        let got = load(&[f], DEFAULTS).unwrap();
        let ids: Vec<&str> = got.iter().map(FileSchedule::id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(got[1].spec.window.spec.timezone().name(), "Europe/London");
        assert!(got[1].origin.ends_with("(document 2)"), "{}", got[1].origin);
    }

    #[test]
    fn problems_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "unknown.json",
                r#"{"schedule_id": "x", "workflow_id": "w", "version": 1, "user_id": "u", "cron_expr": "@daily", "timezon": "UTC"}"#,
                "field timezon",
            ),
            (
                "noid.yaml",
                "workflow_id: w\nversion: 1\nuser_id: u\ncron_expr: '@daily'\n",
                "field schedule_id",
            ),
            (
                "type.yaml",
                "schedule_id: x\nworkflow_id: w\nversion: one\nuser_id: u\ncron_expr: '@daily'\n",
                "field version",
            ),
            (
                "tz.yaml",
                "schedule_id: x\nworkflow_id: w\nversion: 1\nuser_id: u\ncron_expr: '@daily'\ntimezone: Mars/Olympus\n",
                "field timezone",
            ),
            (
                "never.yaml",
                "schedule_id: x\nworkflow_id: w\nversion: 1\nuser_id: u\ncron_expr: 0 0 30 2 *\n",
                "field cron_expr",
            ),
            ("broken.yaml", "schedule_id: [x\n", "not YAML"),
        ];
        for (name, text, expected) in cases {
            let f = write(dir.path(), name, text);
            let e = load(&[f], DEFAULTS).unwrap_err();
            assert!(e.message.contains(name), "{name}: {}", e.message);
            assert!(e.message.contains(expected), "{name}: {}", e.message);
        }
    }

    #[test]
    fn an_id_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let one = "{schedule_id: x, workflow_id: w, version: 1, user_id: u, cron_expr: '@daily'}";
        write(dir.path(), "a.yaml", one);
        write(dir.path(), "b.yml", one);
        write(dir.path(), "notes.txt", "not a schedule");
        let files = schedule_files(&[dir.path().to_owned()]).unwrap();
        assert_eq!(files.len(), 2);
        let e = load(&files, DEFAULTS).unwrap_err();
        assert!(
            e.message.contains("b.yml: field schedule_id"),
            "{}",
            e.message
        );
    }
}
