//! Overlap policies at claim time.
//!
//! "In flight" is a run holding its schedule's exclusive slot (`launching` or `running`,
//! or `pending` while it waits to retry a launch it already won). For `skip` and `queue`
//! schedules a replica takes a transaction-level advisory lock per schedule
//! (`pg_try_advisory_xact_lock`; a schedule another replica is deciding right now is left
//! for the next pass), looks for a run holding the slot, and then:
//!
//! | slot | candidate | `skip` | `queue` |
//! |---|---|---|---|
//! | free | the earliest | launch, taking the slot | launch, taking the slot |
//! | free or taken | others, due now | `skipped` (reason `overlap`) | stay pending |
//! | free or taken | others, not yet due | stay pending | stay pending |
//!
//! A run is armed (claimed before its due time) only when the decision cannot change
//! before that time: it takes the free slot at the claim, so nothing else can start in
//! between. A run that would be skipped is never skipped early: the run in flight may end
//! before its due instant, so it stays pending and is decided at that instant.
//!
//! Under all of this sits a partial unique index: at most one run per schedule holds
//! `exclusive_slot`, so two exclusive runs of one schedule can never be in flight,
//! whatever this code does.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};

use crate::kinds::OverlapPolicy;
use uuid::Uuid;

/// Advisory lock class for per-schedule claim locks (the second key is `hashtext(id)`).
const CLAIM_LOCK_CLASS: i32 = 0x0c5c_0001;

/// A pending run that could be claimed.
#[derive(Debug, sqlx::FromRow)]
pub struct Candidate {
    pub run_id: Uuid,
    pub schedule_id: Option<String>,
    pub policy: OverlapPolicy,
    /// It already holds its schedule's exclusive slot (a retry of a launch it won).
    pub holds_slot: bool,
    /// Its due time has come (otherwise it is inside the arm window).
    pub due_now: bool,
}

/// What to do with the candidates; runs in neither list stay pending.
#[derive(Debug, Default)]
pub struct Decision {
    /// Runs to claim, and whether each takes (or keeps) the exclusive slot.
    pub launch: Vec<(Uuid, bool)>,
    pub skip: Vec<Uuid>,
}

pub async fn decide(
    tx: &mut Transaction<'_, Postgres>,
    candidates: Vec<Candidate>,
) -> Result<Decision, sqlx::Error> {
    let mut decision = Decision::default();
    // Exclusive candidates by schedule, in claim (due) order.
    let mut exclusive: HashMap<String, (bool, Vec<Candidate>)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for c in candidates {
        if c.holds_slot {
            decision.launch.push((c.run_id, true));
            continue;
        }
        match (c.schedule_id.clone(), c.policy) {
            (Some(id), OverlapPolicy::Skip | OverlapPolicy::Queue) => {
                let is_skip = c.policy == OverlapPolicy::Skip;
                exclusive
                    .entry(id.clone())
                    .or_insert_with(|| {
                        order.push(id);
                        (is_skip, Vec::new())
                    })
                    .1
                    .push(c);
            }
            _ => decision.launch.push((c.run_id, false)),
        }
    }
    if order.is_empty() {
        return Ok(decision);
    }
    let locked: Vec<String> = sqlx::query_scalar(
        "select id from unnest($1::text[]) as id where pg_try_advisory_xact_lock($2, hashtext(id))",
    )
    .bind(&order)
    .bind(CLAIM_LOCK_CLASS)
    .fetch_all(&mut **tx)
    .await?;
    let busy: Vec<String> = sqlx::query_scalar(
        "select schedule_id from runs where schedule_id = any($1) and exclusive_slot",
    )
    .bind(&locked)
    .fetch_all(&mut **tx)
    .await?;
    for id in locked {
        let Some((is_skip, runs)) = exclusive.remove(&id) else {
            continue;
        };
        let mut runs = runs.into_iter();
        if !busy.contains(&id) {
            if let Some(first) = runs.next() {
                decision.launch.push((first.run_id, true));
            }
        }
        if is_skip {
            decision
                .skip
                .extend(runs.filter(|c| c.due_now).map(|c| c.run_id));
        }
    }
    Ok(decision)
}
