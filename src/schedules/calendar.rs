//! Calendars: named sets of excluded local dates (single dates, inclusive ranges, weekdays
//! off) in the calendar's own timezone, as a client sends them (`PUT /calendars/{name}`),
//! validated, and as the API returns them. What a calendar does to a schedule's ticks is in
//! [`super::exclusions`].

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize, de::IgnoredAny};
use utoipa::ToSchema;

use super::exclusions::CalendarRules;
use super::spec::parse_timezone;
use crate::field::{FieldError, validate_name};
pub use crate::kinds::Weekday;

/// Excluded single dates one calendar holds at most.
pub const MAX_EXCLUDED_DATES: usize = 1_000;
/// Excluded ranges one calendar holds at most.
pub const MAX_EXCLUDED_RANGES: usize = 100;
/// Calendars one schedule names at most.
pub const MAX_SCHEDULE_CALENDARS: usize = 8;
/// Longest calendar description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1_024;
/// The years a calendar date may fall in.
pub const FIRST_YEAR: i32 = 1970;
pub const LAST_YEAR: i32 = 9999;

/// A calendar name: `[A-Za-z0-9._:-]{1,128}`, like a schedule id.
pub fn check_calendar_name(s: &str) -> Result<(), String> {
    if crate::field::is_key(s) {
        Ok(())
    } else {
        Err(format!(
            "calendar name {} must be 1 to 128 characters from A-Z a-z 0-9 . _ : -",
            crate::text::quoted(s)
        ))
    }
}

/// One inclusive range of excluded dates, as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateRangeRequest {
    /// First excluded date, `YYYY-MM-DD`.
    #[schema(value_type = String, required, example = "2026-12-24", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub from: Option<String>,
    /// Last excluded date (inclusive), `YYYY-MM-DD`, not before `from`.
    #[schema(value_type = String, required, example = "2026-12-31", pattern = r"^\d{4}-\d{2}-\d{2}$")]
    pub to: Option<String>,
}

/// `PUT /calendars/{name}` body. Read-only fields of a calendar are accepted and ignored,
/// so a calendar fetched with GET can be sent back as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarRequest {
    /// The owner (a `user` token may only name itself).
    #[schema(example = "alice", value_type = String, required, min_length = 1, max_length = 256)]
    pub user_id: Option<String>,
    /// IANA timezone the dates are local to; default `UTC`.
    #[schema(example = "Europe/Berlin", max_length = 64)]
    pub timezone: Option<String>,
    /// Excluded dates, `YYYY-MM-DD` (years 1970 to 9999), at most 1,000.
    #[schema(value_type = Option<Vec<String>>, example = json!(["2026-12-25"]))]
    pub excluded_dates: Option<Vec<String>>,
    /// Excluded inclusive date ranges, at most 100.
    pub excluded_ranges: Option<Vec<DateRangeRequest>>,
    /// Weekdays off (`mon` ... `sun`); not all seven.
    #[schema(value_type = Option<Vec<Weekday>>, example = json!(["sat", "sun"]))]
    pub weekly_off: Option<Vec<String>>,
    /// Whether every user may read and use it; only an admin may share. Default false.
    pub shared: Option<bool>,
    /// Free text, at most 1,024 characters.
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    #[schema(ignore)]
    #[serde(default)]
    pub name: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub updated_at: Option<IgnoredAny>,
}

/// A validated calendar definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarSpec {
    pub name: String,
    pub user_id: String,
    pub timezone: Tz,
    /// Sorted, without duplicates.
    pub excluded_dates: Vec<NaiveDate>,
    /// In the order given; each `from <= to`.
    pub excluded_ranges: Vec<(NaiveDate, NaiveDate)>,
    /// In week order, without duplicates.
    pub weekly_off: Vec<Weekday>,
    pub shared: bool,
    pub description: Option<String>,
}

/// A date exactly as `YYYY-MM-DD`, a real day, in years 1970 to 9999.
pub fn parse_date(text: &str, field: &'static str) -> Result<NaiveDate, FieldError> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let refuse = |why: &str| {
        FieldError::new(
            field,
            format!("{field}: {} {why}", crate::text::quoted(text)),
        )
    };
    if !shaped {
        return Err(refuse(
            "is not a date written YYYY-MM-DD (e.g. \"2026-12-25\")",
        ));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| refuse("is not a day of the calendar (month 01-12, day within the month)"))?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
        return Err(refuse("is outside the years 1970 to 9999"));
    }
    Ok(date)
}

impl CalendarRequest {
    /// Checks every field for the calendar `name`; the first problem found is returned,
    /// naming its field.
    pub fn validate(self, name: &str) -> Result<CalendarSpec, FieldError> {
        check_calendar_name(name).map_err(|m| FieldError::new("name", m))?;
        let user_id = self
            .user_id
            .ok_or_else(|| FieldError::new("user_id", "user_id is required"))?;
        validate_name(&user_id, "user_id")?;
        let timezone = parse_timezone(self.timezone.as_deref().unwrap_or("UTC"))?;
        let dates = self.excluded_dates.unwrap_or_default();
        if dates.len() > MAX_EXCLUDED_DATES {
            return Err(FieldError::new(
                "excluded_dates",
                format!(
                    "excluded_dates holds {} dates; at most {MAX_EXCLUDED_DATES} (use excluded_ranges for runs of days)",
                    dates.len()
                ),
            ));
        }
        let mut excluded_dates = dates
            .iter()
            .map(|d| parse_date(d, "excluded_dates"))
            .collect::<Result<Vec<_>, _>>()?;
        excluded_dates.sort_unstable();
        excluded_dates.dedup();
        let ranges = self.excluded_ranges.unwrap_or_default();
        if ranges.len() > MAX_EXCLUDED_RANGES {
            return Err(FieldError::new(
                "excluded_ranges",
                format!(
                    "excluded_ranges holds {} ranges; at most {MAX_EXCLUDED_RANGES}",
                    ranges.len()
                ),
            ));
        }
        let mut excluded_ranges = Vec::with_capacity(ranges.len());
        for r in ranges {
            let end = |v: Option<String>, which: &str| {
                v.ok_or_else(|| {
                    FieldError::new(
                        "excluded_ranges",
                        format!("excluded_ranges: each range needs \"from\" and \"to\"; {which} is missing"),
                    )
                })
                .and_then(|v| parse_date(&v, "excluded_ranges"))
            };
            let (from, to) = (end(r.from, "from")?, end(r.to, "to")?);
            if from > to {
                return Err(FieldError::new(
                    "excluded_ranges",
                    format!(
                        "excluded_ranges: from {from} is after to {to}; a range is from <= to (both inclusive)"
                    ),
                ));
            }
            excluded_ranges.push((from, to));
        }
        let mut weekly_off = self
            .weekly_off
            .unwrap_or_default()
            .iter()
            .map(|d| {
                d.parse::<Weekday>()
                    .map_err(|m| FieldError::new("weekly_off", format!("weekly_off {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        weekly_off.sort_unstable_by_key(|d| d.days_from_monday());
        weekly_off.dedup();
        if weekly_off.len() == 7 {
            return Err(FieldError::new(
                "weekly_off",
                "weekly_off names all seven days: no day would be left to fire on",
            ));
        }
        if let Some(d) = &self.description {
            if d.chars().count() > MAX_DESCRIPTION_LEN {
                return Err(FieldError::new(
                    "description",
                    format!("description is longer than {MAX_DESCRIPTION_LEN} characters"),
                ));
            }
            if d.contains('\0') {
                return Err(FieldError::new(
                    "description",
                    "description must not contain the NUL character",
                ));
            }
        }
        Ok(CalendarSpec {
            name: name.to_owned(),
            user_id,
            timezone,
            excluded_dates,
            excluded_ranges,
            weekly_off,
            shared: self.shared.unwrap_or(false),
            description: self.description,
        })
    }
}

/// A calendar's range as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DateRange {
    #[schema(value_type = String, example = "2026-12-24")]
    pub from: NaiveDate,
    #[schema(value_type = String, example = "2026-12-31")]
    pub to: NaiveDate,
}

/// A calendar as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Calendar {
    pub name: String,
    pub user_id: String,
    pub timezone: String,
    #[schema(value_type = Vec<String>)]
    pub excluded_dates: Vec<NaiveDate>,
    pub excluded_ranges: Vec<DateRange>,
    pub weekly_off: Vec<Weekday>,
    pub shared: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CalendarSpec {
    pub fn rules(&self) -> CalendarRules {
        CalendarRules::new(
            &self.name,
            self.timezone,
            self.excluded_dates.clone(),
            self.excluded_ranges.clone(),
            &self.weekly_off,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn request(body: serde_json::Value) -> Result<CalendarSpec, FieldError> {
        serde_json::from_value::<CalendarRequest>(body)
            .unwrap()
            .validate("cal")
    }

    #[test]
    fn requests_are_validated_naming_the_field() {
        let ok = request(serde_json::json!({
            "user_id": "alice", "timezone": "Europe/Berlin",
            "excluded_dates": ["2026-12-25", "2026-01-01", "2026-12-25"],
            "excluded_ranges": [{"from": "2026-12-24", "to": "2026-12-31"}],
            "weekly_off": ["sun", "sat"]
        }))
        .unwrap();
        assert_eq!(ok.excluded_dates, vec![d("2026-01-01"), d("2026-12-25")]);
        assert_eq!(ok.weekly_off, vec![Weekday::Sat, Weekday::Sun]);
        let field = |body: serde_json::Value| request(body).unwrap_err().field.into_owned();
        for (body, f) in [
            (serde_json::json!({"excluded_dates": []}), "user_id"),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["2026-02-30"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["2026/12/25"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["2026-1-05"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": ["1969-12-31"]}),
                "excluded_dates",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_ranges": [{"from": "2026-12-31", "to": "2026-12-24"}]}),
                "excluded_ranges",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_ranges": [{"from": "2026-12-31"}]}),
                "excluded_ranges",
            ),
            (
                serde_json::json!({"user_id": "a", "weekly_off": ["mon","tue","wed","thu","fri","sat","sun"]}),
                "weekly_off",
            ),
            (
                serde_json::json!({"user_id": "a", "weekly_off": ["Monday"]}),
                "weekly_off",
            ),
            (
                serde_json::json!({"user_id": "a", "timezone": "Mars/Base"}),
                "timezone",
            ),
            (
                serde_json::json!({"user_id": "a", "excluded_dates": vec!["2026-01-01"; 1001]}),
                "excluded_dates",
            ),
        ] {
            assert_eq!(field(body.clone()), f, "{body}");
        }
        assert_eq!(
            serde_json::from_value::<CalendarRequest>(serde_json::json!({"user_id": "a"}))
                .unwrap()
                .validate("bad name")
                .unwrap_err()
                .field,
            "name"
        );
    }
}
