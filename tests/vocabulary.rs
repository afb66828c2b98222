//! The states, triggers, reasons and policies stored as text are enums in Rust
//! (`cron_scheduler::kinds`), mapped to their text columns by sqlx, so a misspelt one does
//! not compile. What the compiler cannot see is a value written inside SQL text
//! (`where status = 'pending'`): this test reads every SQL string in `src/` and fails on a
//! quoted word that is none of the enums' values and none of the few other words SQL here
//! uses (setting names and the like, listed below).

use std::{collections::BTreeSet, path::Path};

use cron_scheduler::kinds::{
    CatchupPolicy, OnExcluded, OverlapPolicy, RunReason, RunStatus, RunTrigger, Weekday,
};

/// Quoted words in SQL that are not stored states: settings, table names, special values.
const OTHER_WORDS: &[&str] = &[
    "statement_timeout",
    "lock_timeout",
    "plan_cache_mode",
    "enable_sort",
    "enable_seqscan",
    "enable_mergejoin",
    "enable_hashjoin",
    "enable_bitmapscan",
    "off",
    "on",
    "infinity",
    "runs",
    "schedules",
    "second",
    "claim_at",
    "default",
    "stopped",
];

fn vocabulary() -> BTreeSet<String> {
    let mut words: BTreeSet<String> = OTHER_WORDS.iter().map(|w| (*w).to_owned()).collect();
    words.extend(RunStatus::ALL.iter().map(|v| v.as_str().to_owned()));
    words.extend(RunTrigger::ALL.iter().map(|v| v.as_str().to_owned()));
    words.extend(RunReason::ALL.iter().map(|v| v.as_str().to_owned()));
    words.extend(OverlapPolicy::ALL.iter().map(|v| v.as_str().to_owned()));
    words.extend(CatchupPolicy::ALL.iter().map(|v| v.as_str().to_owned()));
    words.extend(OnExcluded::ALL.iter().map(|v| v.as_str().to_owned()));
    words.extend(Weekday::ALL.iter().map(|v| v.as_str().to_owned()));
    words
}

/// The Rust string literals of `source` (plain `"..."`, escapes kept), comments skipped.
fn string_literals(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            // A char literal such as '"' or '\'': skip it whole.
            '\'' if chars.get(i + 2) == Some(&'\'') => i += 3,
            '\'' if chars.get(i + 1) == Some(&'\\') && chars.get(i + 3) == Some(&'\'') => i += 4,
            '"' => {
                let mut text = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        text.push(chars[i]);
                        i += 1;
                    }
                    if i < chars.len() {
                        text.push(chars[i]);
                    }
                    i += 1;
                }
                out.push(text);
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The `'word'`s of an SQL text (lower-case identifiers only: messages and other quoted
/// text are not states).
fn quoted_words(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('\'') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('\'') else { break };
        let word = &after[..end];
        if !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            words.push(word.to_owned());
        }
        rest = &after[end + 1..];
    }
    words
}

fn is_sql(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "select ",
        "update ",
        "insert into",
        "delete from",
        " where ",
    ]
    .iter()
    .any(|k| lower.contains(k))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // The lab (a separate workspace member) writes test data, not service states.
        if path.is_dir() && path.file_name().is_some_and(|n| n != "lab") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_word_quoted_in_sql_is_a_known_value() {
    let known = vocabulary();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut unknown = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for literal in string_literals(&text).into_iter().filter(|l| is_sql(l)) {
            for word in quoted_words(&literal) {
                checked += 1;
                if !known.contains(&word) {
                    unknown.push(format!(
                        "{}: '{word}' in {literal:?}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "the scanner found only {checked} quoted words"
    );
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
}

#[test]
fn the_scanner_finds_a_misspelt_state() {
    let source = r#"let q = "update runs set status = 'pendng' where reason = 'overlap'"; // 'x'"#;
    let literals = string_literals(source);
    assert_eq!(literals.len(), 1);
    assert!(is_sql(&literals[0]));
    let words = quoted_words(&literals[0]);
    assert_eq!(words, ["pendng", "overlap"]);
    assert!(!vocabulary().contains("pendng"));
}
