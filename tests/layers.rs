//! The layers point one way (README, "Map"): `api` → domain → `db`, and the shared
//! helpers below everything. This test reads the sources and fails when a module refers
//! to one it must not: a `crate::x` path, or an item of a `use crate::{...}` group.
//!
//! The domain modules among themselves: `runs` ← `schedules` ← `fleet`, and `runs` ←
//! `launcher`; `fleet` and `launcher` do not know each other (the app starts both).
//!
//! `ctl`, the command-line client, sits beside `api`: it reaches the service only over
//! HTTP, so it must not touch the server's internals (`api`, `app`, `db`, the fleet, the
//! launcher, runs); it may borrow the pure schedule validation (`schedules::model`) and
//! the shared helpers. Nothing but `main.rs` refers to it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// The top-level modules a file refers to through `crate::` (and `$crate::`).
fn referenced_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = code[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[from..];
        if rest.starts_with('{') {
            // A group: every top-level item names a module (or an item of the root).
            let mut depth = 0;
            let mut item = String::new();
            for (i, c) in rest.char_indices() {
                match c {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            continue;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            push_first(&mut found, &item);
                            from += i;
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        push_first(&mut found, &item);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth >= 1 {
                    item.push(c);
                }
            }
        } else {
            push_first(&mut found, rest);
        }
    }
    found
}

fn push_first(found: &mut BTreeSet<String>, path: &str) {
    let name: String = path
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() {
        found.insert(name);
    }
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            files.push(p);
        }
    }
    files
}

/// Everything above the shared helpers.
const ABOVE_SHARED: &[&str] = &[
    "api",
    "app",
    "ctl",
    "schedules",
    "runs",
    "fleet",
    "launcher",
    "db",
];
/// The same, and configuration: the smallest helpers depend on nothing of this crate.
const ABOVE_LEAVES: &[&str] = &[
    "api",
    "app",
    "ctl",
    "schedules",
    "runs",
    "fleet",
    "launcher",
    "db",
    "config",
];

/// (module, the modules it must not refer to)
const RULES: &[(&str, &[&str])] = &[
    // Shared helpers and configuration: nothing above them.
    ("config.rs", ABOVE_SHARED),
    ("credentials.rs", ABOVE_SHARED),
    ("telemetry.rs", ABOVE_SHARED),
    ("field.rs", ABOVE_LEAVES),
    ("kinds.rs", ABOVE_LEAVES),
    ("net.rs", ABOVE_LEAVES),
    ("otlp.rs", ABOVE_LEAVES),
    ("retry.rs", ABOVE_LEAVES),
    ("text.rs", ABOVE_LEAVES),
    // The database layer: below every domain module.
    (
        "db",
        &[
            "api",
            "app",
            "ctl",
            "schedules",
            "runs",
            "fleet",
            "launcher",
        ],
    ),
    // The domain, one way.
    (
        "runs",
        &["api", "app", "ctl", "schedules", "fleet", "launcher"],
    ),
    ("schedules", &["api", "app", "ctl", "fleet", "launcher"]),
    ("launcher", &["api", "app", "ctl", "schedules", "fleet"]),
    ("fleet", &["api", "app", "ctl", "launcher"]),
    // The client and the server know each other only through HTTP.
    ("ctl", &["api", "app", "db", "fleet", "launcher", "runs"]),
    ("api", &["ctl"]),
    ("app.rs", &["ctl"]),
];

#[test]
fn layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, forbidden) in RULES {
        let files = rust_files(&src.join(module));
        assert!(!files.is_empty(), "no source for {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for name in referenced_modules(&text) {
                if forbidden.contains(&name.as_str()) {
                    violations.push(format!(
                        "{} refers to crate::{name}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scanner_sees_paths_and_groups() {
    let found = referenced_modules(
        "use crate::{\n    api::error::quoted, // crate::nothing\n    db::{self, Channel},\n};\n\
         fn f() { crate::fleet::x(); $crate::text::quoted(s); notcrate::y(); }",
    );
    let names: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(names, ["api", "db", "fleet", "text"]);
}
