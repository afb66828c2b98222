//! What a client's field can be told: the 422 error naming it, and the checks every layer
//! shares (names, versions, instants). Depends on nothing else in this crate.

use chrono::{DateTime, Utc};

/// Longest `workflow_id` / `user_id` accepted, in characters (as the schema's CHECK).
pub const MAX_NAME_LEN: usize = 256;

/// A field-level validation failure (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: std::borrow::Cow<'static, str>,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A non-empty, bounded, printable name (`workflow_id`, `user_id`).
pub fn validate_name(value: &str, field: &'static str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!("{field} is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    // `\u{feff}` too: the OpenAPI pattern's `\s` (ECMAScript) counts it as a space.
    if value.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}') != value {
        return Err(FieldError::new(
            field,
            format!("{field} {value:?} has leading or trailing whitespace: remove it"),
        ));
    }
    Ok(())
}

/// An instant a client asks to store: RFC 3339 years only (0001 to 9999). chrono parses
/// years up to ±262143, which PostgreSQL cannot store.
pub fn validate_instant(t: DateTime<Utc>, field: &'static str) -> Result<(), FieldError> {
    use chrono::Datelike;
    if (1..=9999).contains(&t.year()) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{field} must be between years 0001 and 9999"),
        ))
    }
}

/// Whether `s` can be a key of a stored resource (a schedule id, a calendar name):
/// `[A-Za-z0-9._:-]{1,128}`, the schema's CHECK pattern.
pub fn is_key(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Workflow versions are positive 32-bit integers.
pub fn validate_version(v: i64) -> Result<i32, FieldError> {
    i32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
        FieldError::new("version", "version must be an integer from 1 to 2147483647")
    })
}
