//! Calendar persistence. A calendar and the schedules naming it are kept consistent by row
//! locks: a schedule upsert naming calendars holds them `for share` until it commits
//! ([`lock_for_schedule`]); a delete or a change that would hide a calendar from a
//! schedule holds it `for update` and then looks for the schedules naming it (a GIN index
//! on `schedules.exclude_calendars`). So a concurrent upsert naming a calendar and its
//! delete cannot both succeed: whichever locks second sees the other's commit.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use super::{
    calendar::{Calendar, CalendarSpec, DateRange, Weekday},
    exclusions::{CalendarRules, OnExcluded},
    spec::parse_timezone,
    store::StoreError,
};
use crate::{
    db::{self, Channel},
    field::FieldError,
};

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Unknown, or another user's unshared calendar (reported alike, so names of other
    /// users do not leak).
    #[error("no calendar named {0:?}")]
    NotFound(String),
    /// A shared calendar of another user: readable, but only its owner or an admin may
    /// change or delete it.
    #[error(
        "calendar {0:?} is shared by another user: only its owner or an admin may change or delete it"
    )]
    NotOwner(String),
    /// Schedules name the calendar.
    #[error("{0}")]
    InUse(String),
    #[error("stored calendar {0} is corrupt: {1}")]
    Corrupt(String, String),
}

const COLUMNS: &str = "name, user_id, timezone, excluded_dates, range_from, range_to, \
    weekly_off, shared, description, created_at, updated_at";

#[derive(Debug, sqlx::FromRow)]
struct CalendarRow {
    name: String,
    user_id: String,
    timezone: String,
    excluded_dates: Vec<NaiveDate>,
    range_from: Vec<NaiveDate>,
    range_to: Vec<NaiveDate>,
    weekly_off: Vec<Weekday>,
    shared: bool,
    description: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl CalendarRow {
    fn ranges(&self) -> Vec<(NaiveDate, NaiveDate)> {
        self.range_from
            .iter()
            .copied()
            .zip(self.range_to.iter().copied())
            .collect()
    }

    fn rules(&self) -> Result<CalendarRules, CalendarError> {
        let tz = parse_timezone(&self.timezone)
            .map_err(|e| CalendarError::Corrupt(self.name.clone(), e.message))?;
        Ok(CalendarRules::new(
            &self.name,
            tz,
            self.excluded_dates.clone(),
            self.ranges(),
            &self.weekly_off,
        ))
    }

    fn into_calendar(self) -> Calendar {
        let excluded_ranges = self
            .ranges()
            .into_iter()
            .map(|(from, to)| DateRange { from, to })
            .collect();
        Calendar {
            name: self.name,
            user_id: self.user_id,
            timezone: self.timezone,
            excluded_dates: self.excluded_dates,
            excluded_ranges,
            weekly_off: self.weekly_off,
            shared: self.shared,
            description: self.description,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The schedules naming `name` (at most `limit`, in id order), optionally only those of
/// users other than `except_user`.
async fn users_of(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    except_user: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select schedule_id from schedules \
         where exclude_calendars @> array[$1]::text[] and ($2::text is null or user_id <> $2) \
         order by schedule_id limit $3",
    )
    .bind(name)
    .bind(except_user)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

/// "schedules a, b, c (and more)".
fn listed(ids: &[String], shown: usize) -> String {
    let mut text = ids
        .iter()
        .take(shown)
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > shown {
        text.push_str(" and more");
    }
    text
}

/// Creates or replaces a calendar. Returns it and whether it was created.
///
/// With `owner`, another user's calendar is not replaced (an unshared one is reported as
/// unknown). A change that would hide the calendar from schedules of other users naming it
/// (unsharing it, or giving it to another owner) is refused while they name it. Schedules
/// moving ticks to a previous business day are made claimable at once, so the leader
/// replans when to write their next tick (it may now move earlier).
pub async fn put(
    pool: &PgPool,
    spec: &CalendarSpec,
    owner: Option<&str>,
) -> Result<(Calendar, bool), CalendarError> {
    let mut tx = pool.begin().await?;
    let name = spec.name.as_str();
    let existing: Option<(String, bool)> =
        sqlx::query_as("select user_id, shared from calendars where name = $1 for update")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if let (Some((user, shared)), Some(owner)) = (&existing, owner) {
        if user != owner {
            return Err(if *shared {
                CalendarError::NotOwner(name.to_owned())
            } else {
                CalendarError::NotFound(name.to_owned())
            });
        }
    }
    let ranges_from: Vec<NaiveDate> = spec.excluded_ranges.iter().map(|r| r.0).collect();
    let ranges_to: Vec<NaiveDate> = spec.excluded_ranges.iter().map(|r| r.1).collect();
    let created = existing.is_none();
    if created {
        let inserted = sqlx::query(
            "insert into calendars (name, user_id, timezone, excluded_dates, range_from, \
               range_to, weekly_off, shared, description) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (name) do nothing",
        )
        .bind(name)
        .bind(&spec.user_id)
        .bind(spec.timezone.name())
        .bind(&spec.excluded_dates)
        .bind(&ranges_from)
        .bind(&ranges_to)
        .bind(&spec.weekly_off)
        .bind(spec.shared)
        .bind(&spec.description)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // A concurrent create won: go again, now as a replacement.
            drop(tx);
            return Box::pin(put(pool, spec, owner)).await;
        }
    } else {
        if !spec.shared {
            let others = users_of(&mut tx, name, Some(&spec.user_id), 6).await?;
            if !others.is_empty() {
                return Err(CalendarError::InUse(format!(
                    "calendar {name:?} is used by schedules of users other than {:?} ({}): \
                     it stays shared, and keeps its owner, while they name it",
                    spec.user_id,
                    listed(&others, 5)
                )));
            }
        }
        sqlx::query(
            "update calendars set user_id = $2, timezone = $3, excluded_dates = $4, \
               range_from = $5, range_to = $6, weekly_off = $7, shared = $8, description = $9, \
               updated_at = now() \
             where name = $1",
        )
        .bind(name)
        .bind(&spec.user_id)
        .bind(spec.timezone.name())
        .bind(&spec.excluded_dates)
        .bind(&ranges_from)
        .bind(&ranges_to)
        .bind(&spec.weekly_off)
        .bind(spec.shared)
        .bind(&spec.description)
        .execute(&mut *tx)
        .await?;
        let replan = sqlx::query(
            "update schedules set claim_at = '-infinity' \
             where exclude_calendars @> array[$1]::text[] \
               and on_excluded = $2 and next_due_at is not null",
        )
        .bind(name)
        .bind(OnExcluded::PreviousBusinessDay)
        .execute(&mut *tx)
        .await?;
        if replan.rows_affected() > 0 {
            db::notify(&mut *tx, Channel::Schedules, "").await?;
        }
    }
    let row: CalendarRow =
        sqlx::query_as(&format!("select {COLUMNS} from calendars where name = $1"))
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok((row.into_calendar(), created))
}

/// A calendar by name, with no visibility check (the API applies it).
pub async fn get(pool: &PgPool, name: &str) -> Result<Option<Calendar>, CalendarError> {
    let row: Option<CalendarRow> =
        sqlx::query_as(&format!("select {COLUMNS} from calendars where name = $1"))
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(CalendarRow::into_calendar))
}

/// One page of the calendars `viewer` may see (its own and shared ones; all for `None`),
/// in name order, optionally only `user_id`'s; and the cursor of the next page.
pub async fn list(
    pool: &PgPool,
    viewer: Option<&str>,
    user_id: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Calendar>, Option<String>), CalendarError> {
    let rows: Vec<CalendarRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from calendars \
         where ($1::text is null or user_id = $1 or shared) \
           and ($2::text is null or user_id = $2) \
           and ($3::text is null or name > $3) \
         order by name limit $4"
    ))
    .bind(viewer)
    .bind(user_id)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > limit as usize;
    let calendars: Vec<Calendar> = rows
        .into_iter()
        .take(limit as usize)
        .map(CalendarRow::into_calendar)
        .collect();
    let next = has_more
        .then(|| calendars.last().map(|c| c.name.clone()))
        .flatten();
    Ok((calendars, next))
}

/// Deletes a calendar no schedule names. With `owner`, only that user's calendar.
pub async fn delete(pool: &PgPool, name: &str, owner: Option<&str>) -> Result<(), CalendarError> {
    let mut tx = pool.begin().await?;
    let existing: Option<(String, bool)> =
        sqlx::query_as("select user_id, shared from calendars where name = $1 for update")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((user, shared)) = existing else {
        return Err(CalendarError::NotFound(name.to_owned()));
    };
    if owner.is_some_and(|o| o != user) {
        return Err(if shared {
            CalendarError::NotOwner(name.to_owned())
        } else {
            CalendarError::NotFound(name.to_owned())
        });
    }
    let users = users_of(&mut tx, name, None, 6).await?;
    if !users.is_empty() {
        return Err(CalendarError::InUse(format!(
            "calendar {name:?} is used by schedules {}: change them to stop naming it in \
             exclude_calendars first",
            listed(&users, 5)
        )));
    }
    sqlx::query("delete from calendars where name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The rules of the calendars named in `names` (one query; none when `names` is empty).
/// A stored calendar that no longer parses is left out, and logged.
pub async fn rules<'c, E>(
    conn: E,
    names: &[String],
) -> Result<HashMap<String, CalendarRules>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    rules_visible_to(conn, names, None).await
}

/// [`rules`] of every calendar the lists name (one query for all; none when no list names
/// one): the `exclude_calendars` of a batch or a page of schedules.
pub async fn rules_named_in<'a, 'c, E>(
    conn: E,
    lists: impl IntoIterator<Item = &'a [String]>,
) -> Result<HashMap<String, CalendarRules>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let mut names: Vec<String> = lists.into_iter().flatten().cloned().collect();
    names.sort_unstable();
    names.dedup();
    rules(conn, &names).await
}

/// [`rules`], of the calendars among `names` that `viewer` may see (its own and shared
/// ones; all for `None`).
pub async fn rules_visible_to<'c, E>(
    conn: E,
    names: &[String],
    viewer: Option<&str>,
) -> Result<HashMap<String, CalendarRules>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<CalendarRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from calendars where name = any($1) \
           and ($2::text is null or user_id = $2 or shared)"
    ))
    .bind(names)
    .bind(viewer)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| match r.rules() {
            Ok(rules) => Some((r.name.clone(), rules)),
            Err(e) => {
                tracing::error!(calendar = %r.name, error = %e, "stored calendar does not parse; it excludes nothing");
                None
            }
        })
        .collect())
}

/// Inside a schedule upsert: locks the calendars the schedule names (`for share`, so none
/// is deleted or hidden before the upsert commits) and checks that each exists and is
/// `schedule_user`'s own or shared. Otherwise 422 on `exclude_calendars`.
pub async fn lock_for_schedule(
    tx: &mut Transaction<'_, Postgres>,
    names: &[String],
    schedule_user: &str,
) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    let found: Vec<(String, String, bool)> = sqlx::query_as(
        "select name, user_id, shared from calendars where name = any($1) order by name for share",
    )
    .bind(names)
    .fetch_all(&mut **tx)
    .await?;
    for name in names {
        let usable = found
            .iter()
            .any(|(n, user, shared)| n == name && (user == schedule_user || *shared));
        if !usable {
            return Err(FieldError::new(
                "exclude_calendars",
                format!(
                    "exclude_calendars: no calendar {name:?} that {schedule_user:?} may use \
                     (it does not exist, or it is another user's and not shared)"
                ),
            )
            .into());
        }
    }
    Ok(())
}
