//! Schedule types: what a client may send, the validated spec it becomes, and what the API
//! returns. A `ScheduleSpec` can only be built by [`ScheduleRequest::validate`], so code
//! that holds one never re-checks it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use utoipa::ToSchema;

use super::calendar::{MAX_SCHEDULE_CALENDARS, check_calendar_name};
use super::exclusions::NextTick;
use super::health::ScheduleHealth;
use super::interval::{Interval, parse_period};
use super::spec::{CronSpec, DstFold, DstGap, DstPolicy, SpecError, Window};
pub use crate::field::{
    FieldError, MAX_NAME_LEN, validate_instant, validate_name, validate_version,
};
use crate::kinds::RunStatus;
pub use crate::kinds::{CatchupPolicy, OnExcluded, OverlapPolicy};

/// Largest `jitter_ms`: one hour.
pub const MAX_JITTER_MS: i64 = 3_600_000;
/// How many upcoming fire times a schedule's response lists.
pub const NEXT_FIRE_TIMES: usize = 5;

text_enum!(
    /// A schedule's state as the API reports it.
    ScheduleStatus { Active = "active", Paused = "paused", Completed = "completed" }
);

/// A schedule id: `[A-Za-z0-9._:-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ScheduleId(String);

impl ScheduleId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if crate::field::is_key(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err("schedule_id must be 1 to 128 characters from A-Z a-z 0-9 . _ : -".into())
        }
    }

    /// A fresh id for a schedule created without one (UUID v7: sortable by creation).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `POST /schedules/upsert` body. Every field is optional here so that a missing one is
/// reported as a 422 naming it; read-only fields of a schedule are accepted and ignored,
/// so a schedule fetched with GET can be sent back as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Optional on create; `[A-Za-z0-9._:-]{1,128}`. An existing id replaces that schedule.
    #[schema(example = "nightly-report", pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub schedule_id: Option<String>,
    #[schema(example = "report", value_type = String, required, min_length = 1, max_length = 256, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$")]
    pub workflow_id: Option<String>,
    /// Workflow version, at least 1.
    #[schema(example = 1, value_type = i64, required, minimum = 1, maximum = 2147483647)]
    #[serde(default, deserialize_with = "deserialize_integer")]
    pub version: Option<i64>,
    /// The user the schedule runs as (a `user` token may only name itself).
    #[schema(example = "alice", value_type = String, required, min_length = 1, max_length = 256, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]([^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f])?$")]
    pub user_id: Option<String>,
    /// 5 fields (minute first) or 6 fields (second first), or an `@daily`-style alias.
    /// Required unless `interval` is given (one of the two, not both).
    #[schema(example = "0 0 * * *", value_type = String, min_length = 1, max_length = 256)]
    pub cron_expr: Option<String>,
    /// Instead of `cron_expr`: an ISO 8601 duration of whole weeks, days (24 h), hours,
    /// minutes or seconds, from `PT1S` to `P366D` (`PT90M`, `P1DT12H`). Ticks fall at
    /// `anchor + k × interval` in absolute time (docs/CRON.md, "Interval schedules").
    #[schema(example = "PT90M", max_length = 64)]
    pub interval: Option<String>,
    /// The instant an interval counts from (a whole second, RFC 3339); default
    /// 1970-01-01T00:00:00Z. Only with `interval`.
    pub anchor: Option<DateTime<Utc>>,
    /// IANA timezone name; default `UTC`.
    #[schema(example = "Europe/London", max_length = 64)]
    pub timezone: Option<String>,
    /// First instant a tick may fall on (inclusive), RFC 3339.
    pub start_at: Option<DateTime<Utc>>,
    /// Last instant a tick may fall on (inclusive), RFC 3339; after `start_at`.
    pub end_at: Option<DateTime<Utc>>,
    /// Deterministic delay added to each tick, 0..=3600000 ms.
    #[schema(minimum = 0, maximum = 3_600_000)]
    #[serde(default, deserialize_with = "deserialize_integer")]
    pub jitter_ms: Option<i64>,
    /// `allow`, `skip` or `queue`; default from `SCHEDULER_DEFAULT_OVERLAP_POLICY`.
    #[schema(value_type = Option<OverlapPolicy>)]
    pub overlap_policy: Option<String>,
    /// `none`, `fire_immediately` or `spread`; default from `SCHEDULER_DEFAULT_CATCHUP_POLICY`.
    #[schema(value_type = Option<CatchupPolicy>)]
    pub catchup_policy: Option<String>,
    /// Default false.
    pub paused: Option<bool>,
    /// A tick whose wall time does not exist (spring-forward gap): `shift` it to the first
    /// instant after the gap, or `skip` it. Unset: a fixed-time tick shifts, an interval
    /// tick is skipped (docs/CRON.md).
    #[schema(value_type = Option<DstGap>)]
    pub dst_gap: Option<String>,
    /// A tick whose wall time happens twice (fall-back fold): fire `once` (first pass) or
    /// `twice`. Unset: a fixed-time tick fires once, an interval tick twice.
    #[schema(value_type = Option<DstFold>)]
    pub dst_fold: Option<String>,
    /// Names of calendars (the schedule user's own, or shared) whose excluded dates this
    /// schedule does not fire on; at most 8, default none (docs/CRON.md, "Calendars and
    /// business days").
    #[schema(max_items = 8, example = json!(["de-holidays"]))]
    pub exclude_calendars: Option<Vec<String>>,
    /// What an excluded tick does: `skip` (default; the run ends `skipped`, reason
    /// `calendar`), or `next_business_day` / `previous_business_day` (the run moves, once,
    /// to the same wall time on that day; only for expressions firing at one fixed time
    /// of day).
    #[schema(value_type = Option<OnExcluded>)]
    pub on_excluded: Option<String>,
    #[schema(ignore)]
    #[serde(default)]
    pub next_ticks: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub status: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub next_fire_times: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub missed_uncounted: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub missed_uncounted_exact: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub updated_at: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub warnings: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub last_fire_at: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub last_run_status: Option<IgnoredAny>,
    #[schema(ignore)]
    #[serde(default)]
    pub health: Option<IgnoredAny>,
}

/// An optional integer that JSON may spell `7` or `7.0` (JSON Schema counts both as
/// integers); a fraction, or a value beyond `i64`, is refused.
pub fn deserialize_integer<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        // Below 2^63 in magnitude, so the conversion is exact.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!(
            "invalid value: {n}, expected a whole number within 64 bits"
        ))),
    }
}

impl From<SpecError> for FieldError {
    fn from(e: SpecError) -> Self {
        Self::new(e.field, e.message)
    }
}

/// Defaults a request falls back on (from configuration).
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub overlap_policy: OverlapPolicy,
    pub catchup_policy: CatchupPolicy,
}

/// A validated schedule definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub schedule_id: ScheduleId,
    pub workflow_id: String,
    pub version: i32,
    pub user_id: String,
    pub window: Window,
    pub jitter_ms: i32,
    pub overlap_policy: OverlapPolicy,
    pub catchup_policy: CatchupPolicy,
    pub paused: bool,
    /// Calendar names, in the order given, without duplicates.
    pub exclude_calendars: Vec<String>,
    pub on_excluded: OnExcluded,
}

impl ScheduleSpec {
    /// Whether `self` and `other` produce different runs (so pending runs of the old one
    /// must be cancelled). Policies and `paused` do not change what a tick is; calendars
    /// do (a tick may be skipped or move).
    pub fn changes_ticks(&self, other: &ScheduleSpec) -> bool {
        self.workflow_id != other.workflow_id
            || self.version != other.version
            || self.user_id != other.user_id
            || self.window != other.window
            || self.jitter_ms != other.jitter_ms
            || self.exclude_calendars != other.exclude_calendars
            || self.on_excluded != other.on_excluded
    }
}

/// `exclude_calendars` and `on_excluded` as a request gives them, checked against the
/// expression `spec` (a move needs one fixed time of day). Shared by upserts and previews.
pub fn validate_exclusions(
    names: Option<Vec<String>>,
    on_excluded: Option<&str>,
    spec: &CronSpec,
) -> Result<(Vec<String>, OnExcluded), FieldError> {
    let names = names.unwrap_or_default();
    if names.len() > MAX_SCHEDULE_CALENDARS {
        return Err(FieldError::new(
            "exclude_calendars",
            format!(
                "exclude_calendars names {} calendars; at most {MAX_SCHEDULE_CALENDARS}",
                names.len()
            ),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        check_calendar_name(name)
            .map_err(|m| FieldError::new("exclude_calendars", format!("exclude_calendars: {m}")))?;
        if names[..i].contains(name) {
            return Err(FieldError::new(
                "exclude_calendars",
                format!("exclude_calendars names {name:?} twice"),
            ));
        }
    }
    let on_excluded = match on_excluded {
        Some(v) => v
            .parse::<OnExcluded>()
            .map_err(|m| FieldError::new("on_excluded", format!("on_excluded {m}")))?,
        None => OnExcluded::Skip,
    };
    if on_excluded != OnExcluded::Skip && spec.fixed_time_of_day().is_none() {
        let what = match spec.expr() {
            Some(expr) => format!("{expr:?}, which fires several times a day,"),
            None => "an interval schedule, which has no fixed time of day,".to_owned(),
        };
        return Err(FieldError::new(
            "on_excluded",
            format!(
                "on_excluded {} needs a cron_expr that fires at one fixed time of day \
                 (like \"0 9 * * MON-FRI\"): moving the ticks of {what} would reorder \
                 them; use on_excluded \"skip\"",
                on_excluded.as_str(),
            ),
        ));
    }
    Ok((names, on_excluded))
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, FieldError> {
    value.ok_or_else(|| FieldError::new(field, format!("{field} is required")))
}

impl ScheduleRequest {
    /// Checks every field; the first problem found is returned, naming its field.
    pub fn validate(self, defaults: Defaults) -> Result<ScheduleSpec, FieldError> {
        let schedule_id = match self.schedule_id {
            Some(id) => ScheduleId::parse(&id).map_err(|m| FieldError::new("schedule_id", m))?,
            None => ScheduleId::generate(),
        };
        let workflow_id = required(self.workflow_id, "workflow_id")?;
        validate_name(&workflow_id, "workflow_id")?;
        let version = validate_version(required(self.version, "version")?)?;
        let user_id = required(self.user_id, "user_id")?;
        validate_name(&user_id, "user_id")?;
        let timezone = self.timezone.unwrap_or_else(|| "UTC".into());
        let dst = DstPolicy {
            gap: match self.dst_gap {
                Some(v) => Some(
                    v.parse()
                        .map_err(|m| FieldError::new("dst_gap", format!("dst_gap {m}")))?,
                ),
                None => None,
            },
            fold: match self.dst_fold {
                Some(v) => Some(
                    v.parse()
                        .map_err(|m| FieldError::new("dst_fold", format!("dst_fold {m}")))?,
                ),
                None => None,
            },
        };
        let spec = rule(self.cron_expr, self.interval, self.anchor, &timezone, dst)?;
        let (exclude_calendars, on_excluded) =
            validate_exclusions(self.exclude_calendars, self.on_excluded.as_deref(), &spec)?;
        for (t, field) in [(self.start_at, "start_at"), (self.end_at, "end_at")] {
            if let Some(t) = t {
                validate_instant(t, field)?;
            }
        }
        if let (Some(start), Some(end)) = (self.start_at, self.end_at) {
            if end <= start {
                return Err(FieldError::new("end_at", "end_at must be after start_at"));
            }
        }
        let jitter_ms = self.jitter_ms.unwrap_or(0);
        if !(0..=MAX_JITTER_MS).contains(&jitter_ms) {
            return Err(FieldError::new(
                "jitter_ms",
                format!("jitter_ms must be from 0 to {MAX_JITTER_MS}"),
            ));
        }
        let overlap_policy = match self.overlap_policy {
            Some(p) => p
                .parse()
                .map_err(|m| FieldError::new("overlap_policy", format!("overlap_policy {m}")))?,
            None => defaults.overlap_policy,
        };
        let catchup_policy = match self.catchup_policy {
            Some(p) => p
                .parse()
                .map_err(|m| FieldError::new("catchup_policy", format!("catchup_policy {m}")))?,
            None => defaults.catchup_policy,
        };
        Ok(ScheduleSpec {
            schedule_id,
            workflow_id,
            version,
            user_id,
            window: Window {
                spec,
                start_at: self.start_at,
                end_at: self.end_at,
            },
            jitter_ms: i32::try_from(jitter_ms).expect("bounded above"),
            overlap_policy,
            catchup_policy,
            paused: self.paused.unwrap_or(false),
            exclude_calendars,
            on_excluded,
        })
    }
}

/// The rule of a schedule or a preview: `cron_expr`, or `interval` with its `anchor` (one of
/// the two, not both), in `timezone`, under the DST policy `dst` (which an interval, in
/// absolute time, refuses).
pub fn rule(
    cron_expr: Option<String>,
    interval: Option<String>,
    anchor: Option<DateTime<Utc>>,
    timezone: &str,
    dst: DstPolicy,
) -> Result<CronSpec, FieldError> {
    match (cron_expr, interval) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "interval",
            "give cron_expr or interval, not both",
        )),
        (None, None) => Err(FieldError::new(
            "cron_expr",
            "cron_expr is required (or, instead, an interval such as \"PT90M\")",
        )),
        (Some(expr), None) => {
            if anchor.is_some() {
                return Err(FieldError::new(
                    "anchor",
                    "anchor goes with interval; a cron_expr schedule has none",
                ));
            }
            Ok(CronSpec::parse(&expr, timezone)?.with_dst(dst))
        }
        (None, Some(text)) => {
            for (set, field) in [
                (dst.gap.is_some(), "dst_gap"),
                (dst.fold.is_some(), "dst_fold"),
            ] {
                if set {
                    return Err(FieldError::new(
                        field,
                        format!(
                            "{field} applies to cron_expr schedules: an interval's ticks are in \
                             absolute time and never fall in a DST gap or fold"
                        ),
                    ));
                }
            }
            let seconds = parse_period(&text).map_err(|m| FieldError::new("interval", m))?;
            if let Some(anchor) = anchor {
                validate_instant(anchor, "anchor")?;
            }
            let every = Interval::new(seconds, anchor).map_err(|m| FieldError::new("anchor", m))?;
            Ok(CronSpec::every(every, timezone)?)
        }
    }
}

/// Refuses a spec that can never fire again after `now`, naming the field to blame:
/// `end_at` when the expression still fires but only after the end, else `cron_expr`.
pub fn check_fires_after(window: &Window, now: DateTime<Utc>) -> Result<(), FieldError> {
    if window.first_tick_from(now).is_some() {
        return Ok(());
    }
    let from = window.start_at.map_or(now, |s| s.max(now));
    match window.spec.expr() {
        Some(expr) if window.end_at.is_none() || window.spec.next(from, true).is_none() => {
            Err(FieldError::new(
                "cron_expr",
                format!("cron_expr {expr:?} has no future fire time"),
            ))
        }
        _ => Err(FieldError::new(
            "end_at",
            "end_at is before the first fire time: the schedule would never fire",
        )),
    }
}

/// A schedule as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Schedule {
    pub schedule_id: String,
    pub workflow_id: String,
    pub version: i32,
    pub user_id: String,
    /// `null` for an interval schedule.
    pub cron_expr: Option<String>,
    /// The interval in the largest whole units (`PT90M` reads back as `PT1H30M`); `null`
    /// for a cron schedule.
    #[schema(example = "PT1H30M")]
    pub interval: Option<String>,
    /// The instant the interval counts from; `null` for a cron schedule.
    pub anchor: Option<DateTime<Utc>>,
    pub timezone: String,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub jitter_ms: i32,
    pub overlap_policy: OverlapPolicy,
    pub catchup_policy: CatchupPolicy,
    pub paused: bool,
    /// The DST policy as set (`null`: the rules of the tick's kind, docs/CRON.md).
    pub dst_gap: Option<DstGap>,
    pub dst_fold: Option<DstFold>,
    pub status: ScheduleStatus,
    /// Calendars whose excluded dates the schedule does not fire on.
    pub exclude_calendars: Vec<String>,
    /// What an excluded tick does: `skip`, `next_business_day` or `previous_business_day`.
    pub on_excluded: OnExcluded,
    /// When the next runs fire (UTC, before jitter), in tick order: ticks a calendar skips
    /// are left out, moved ones are at their moved time; empty when paused or completed.
    pub next_fire_times: Vec<DateTime<Utc>>,
    /// The next ticks, each with its fate under the schedule's calendars; empty when
    /// paused or completed.
    pub next_ticks: Vec<NextTick>,
    /// Missed ticks given no run row (catch-up writes at most `SCHEDULER_MAX_CATCHUP_RUNS`
    /// rows per outage; the earlier ticks are counted here).
    pub missed_uncounted: i64,
    /// Whether `missed_uncounted` is exact; `false`: it is a lower bound (an outage so long,
    /// across DST changes, that counting its ticks exactly would cost too much).
    pub missed_uncounted_exact: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What is accepted but will not work as it stands, in words: today, a workflow
    /// version that is not stored yet (the schedule is kept, and its runs fail until the
    /// version is stored). Empty when nothing is wrong.
    pub warnings: Vec<String>,
    /// When the Executor last accepted a run of this schedule (among its latest 50
    /// ticks); `null` if none did.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The status of the schedule's latest tick that has come due; `null` before the first.
    pub last_run_status: Option<RunStatus>,
    /// `ok`; `late`: a tick is past due by more than the misfire grace and not launched;
    /// `failing`: its 3 latest ended runs failed. See `docs/API.md`, "Schedule health".
    pub health: ScheduleHealth,
}

impl Schedule {
    /// The schedule's ticks, as its view describes them.
    pub fn window(&self) -> Result<Window, FieldError> {
        Ok(Window {
            spec: rule(
                self.cron_expr.clone(),
                self.interval.clone(),
                self.anchor,
                &self.timezone,
                DstPolicy {
                    gap: self.dst_gap,
                    fold: self.dst_fold,
                },
            )?,
            start_at: self.start_at,
            end_at: self.end_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ids() {
        for ok in ["a", "nightly-report", "a.b_c:d-1", &"x".repeat(128)] {
            assert!(ScheduleId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "slash/",
            "ünï",
            &"x".repeat(129),
            "semi;colon",
        ] {
            assert!(ScheduleId::parse(bad).is_err(), "{bad}");
        }
        let generated = ScheduleId::generate();
        assert!(ScheduleId::parse(generated.as_str()).is_ok());
    }

    #[test]
    fn policies_round_trip_their_text() {
        for p in OverlapPolicy::ALL {
            assert_eq!(p.as_str().parse::<OverlapPolicy>().unwrap(), *p);
        }
        for p in CatchupPolicy::ALL {
            assert_eq!(p.as_str().parse::<CatchupPolicy>().unwrap(), *p);
        }
        assert!("Skip".parse::<OverlapPolicy>().is_err());
    }
}
