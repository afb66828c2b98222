//! Registering the lab's schedules, the way users do (`POST /schedules/upsert`, many
//! requests in flight, spread over the replicas) or in bulk by SQL (`insert … select from
//! unnest`, 5,000 a statement, each first due tick computed here), and moving schedules'
//! due ticks by SQL to simulate time that passed while the fleet was down.
//!
//! By SQL, a policy left unset gets the service's default (`skip`, `fire_immediately`):
//! the API would apply the replicas' configured defaults instead, so pass the policy
//! explicitly when a scenario changes those defaults.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;

use cron_scheduler::schedules::{CatchupPolicy, CronSpec, OverlapPolicy, Window};

use super::{args::RegisterArgs, fleet::Fleet, fleet::WORKFLOW};

/// One schedule to register.
#[derive(Debug, Clone)]
pub struct ScheduleDef {
    pub id: String,
    pub cron_expr: String,
    pub timezone: String,
    /// `None`: the service default.
    pub overlap: Option<OverlapPolicy>,
    /// `None`: the service default.
    pub catchup: Option<CatchupPolicy>,
}

impl ScheduleDef {
    /// `n` schedules `{prefix}-{i}` with the same expression, in UTC.
    pub fn many(
        prefix: &str,
        n: usize,
        cron_expr: &str,
        overlap: Option<OverlapPolicy>,
        catchup: Option<CatchupPolicy>,
    ) -> Vec<Self> {
        (0..n)
            .map(|i| Self {
                id: format!("{prefix}-{i}"),
                cron_expr: cron_expr.to_owned(),
                timezone: "UTC".into(),
                overlap,
                catchup,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// `api` or `sql`.
    pub via: &'static str,
    pub schedules: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// REST requests answered 429/5xx or not answered, then retried.
    pub retried: usize,
}

impl Registration {
    pub fn cell(&self) -> String {
        format!(
            "{} via {} in {:.1} s ({:.0}/s{})",
            self.schedules,
            self.via,
            self.seconds,
            self.per_second,
            if self.retried > 0 {
                format!(", {} retried", self.retried)
            } else {
                String::new()
            }
        )
    }
}

/// Registers `defs` the way `how` says; SQL registration computes first ticks from `from`.
pub async fn register(
    fleet: &Fleet,
    defs: &[ScheduleDef],
    how: &RegisterArgs,
    from: DateTime<Utc>,
) -> anyhow::Result<Registration> {
    let started = Instant::now();
    let (via, retried) = if how.via_sql {
        by_sql(&fleet.db.pool, defs, from).await?;
        fleet.notify_schedule_change().await?;
        ("sql", 0)
    } else {
        ("api", by_api(fleet, defs, how.concurrency).await?)
    };
    let seconds = started.elapsed().as_secs_f64();
    Ok(Registration {
        via,
        schedules: defs.len(),
        seconds,
        per_second: defs.len() as f64 / seconds.max(1e-9),
        retried,
    })
}

/// Bulk inserts, 5,000 a statement, with each schedule's first tick at or after `from`.
pub async fn by_sql(
    pool: &PgPool,
    defs: &[ScheduleDef],
    from: DateTime<Utc>,
) -> anyhow::Result<()> {
    for (n, chunk) in defs.chunks(5000).enumerate() {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut exprs = Vec::with_capacity(chunk.len());
        let mut tzs = Vec::with_capacity(chunk.len());
        let mut overlap = Vec::with_capacity(chunk.len());
        let mut catchup = Vec::with_capacity(chunk.len());
        let mut due = Vec::with_capacity(chunk.len());
        for d in chunk {
            let spec = CronSpec::parse(&d.cron_expr, &d.timezone)
                .map_err(|e| anyhow::anyhow!("{}: {e}", d.cron_expr))?;
            let window = Window {
                spec,
                start_at: None,
                end_at: None,
            };
            ids.push(d.id.clone());
            exprs.push(d.cron_expr.clone());
            tzs.push(d.timezone.clone());
            overlap.push(d.overlap.unwrap_or(OverlapPolicy::Skip).as_str());
            catchup.push(d.catchup.unwrap_or(CatchupPolicy::FireImmediately).as_str());
            due.push(window.first_tick_from(from));
        }
        sqlx::query(
            "insert into schedules (schedule_id, workflow_id, version, user_id, cron_expr, timezone, \
               overlap_policy, catchup_policy, next_due_at) \
             select id, $7, 1, 'lab', expr, tz, op, cp, due \
             from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) \
               as s(id, expr, tz, op, cp, due)",
        )
        .bind(&ids)
        .bind(&exprs)
        .bind(&tzs)
        .bind(&overlap)
        .bind(&catchup)
        .bind(&due)
        .bind(WORKFLOW)
        .execute(pool)
        .await?;
        let done = (n + 1) * 5000;
        if defs.len() >= 100_000 && done % 100_000 == 0 {
            println!("  registered {done} of {} by SQL", defs.len());
        }
    }
    Ok(())
}

/// `POST /schedules/upsert` for each, `concurrency` in flight, round-robin over the
/// replicas. A 429, 5xx or transport error is retried (up to 5 times, backing off); any
/// other failure stops the registration. Returns how many requests were retried.
pub async fn by_api(
    fleet: &Fleet,
    defs: &[ScheduleDef],
    concurrency: usize,
) -> anyhow::Result<usize> {
    let total = defs.len();
    let step = (total / 10).max(1000);
    let mut retried = 0usize;
    let mut done = 0usize;
    let mut results = futures::stream::iter(defs)
        .map(|d| upsert(fleet, d))
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = results.next().await {
        retried += r?;
        done += 1;
        if total >= 10_000 && done % step == 0 {
            println!("  registered {done} of {total} through the API");
        }
    }
    Ok(retried)
}

async fn upsert(fleet: &Fleet, d: &ScheduleDef) -> anyhow::Result<usize> {
    let mut body = serde_json::json!({
        "schedule_id": d.id, "workflow_id": WORKFLOW, "version": 1, "user_id": "lab",
        "cron_expr": d.cron_expr, "timezone": d.timezone,
    });
    if let Some(p) = d.overlap {
        body["overlap_policy"] = p.as_str().into();
    }
    if let Some(p) = d.catchup {
        body["catchup_policy"] = p.as_str().into();
    }
    let mut delay = Duration::from_millis(200);
    for attempt in 0..6 {
        let outcome = fleet
            .http
            .post(format!("{}/schedules/upsert", fleet.api()))
            .json(&body)
            .send()
            .await;
        match outcome {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) if r.status().as_u16() != 429 && !r.status().is_server_error() => {
                let status = r.status();
                anyhow::bail!(
                    "registering {}: {status}: {}",
                    d.id,
                    r.text().await.unwrap_or_default()
                );
            }
            Ok(_) | Err(_) if attempt < 5 => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Ok(r) => anyhow::bail!("registering {}: {}", d.id, r.status()),
            Err(e) => anyhow::bail!("registering {}: {e}", d.id),
        }
    }
    unreachable!("the loop returns or bails on its last attempt")
}

/// Whether `schedules.claim_at` exists in this build's schema (a newer migration adds it).
pub async fn has_claim_at(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "select exists (select 1 from information_schema.columns \
         where table_name = 'schedules' and column_name = 'claim_at')",
    )
    .fetch_one(pool)
    .await?)
}

/// Moves every (unpaused, not completed) schedule's `next_due_at` back by `by`, as if the
/// fleet had been down that long, and makes the leader look at them at once
/// (`claim_at = '-infinity'` where that column exists). Returns the rows changed.
pub async fn shift_next_due_back(fleet: &Fleet, by: TimeDelta) -> anyhow::Result<u64> {
    let pool = &fleet.db.pool;
    let claim_at = if has_claim_at(pool).await? {
        ", claim_at = '-infinity'"
    } else {
        ""
    };
    let secs = by.num_milliseconds() as f64 / 1000.0;
    let rows = sqlx::query(&format!(
        "update schedules set next_due_at = next_due_at - make_interval(secs => $1){claim_at} \
         where next_due_at is not null and not paused"
    ))
    .bind(secs)
    .execute(pool)
    .await?
    .rows_affected();
    fleet.notify_schedule_change().await?;
    Ok(rows)
}
