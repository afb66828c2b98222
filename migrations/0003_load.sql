-- Load: cohorts materialized early, catch-up counted without walking, launch retries
-- bounded by time.

-- When the leader next looks at a schedule: its next tick minus that tick's lead (the
-- lookahead for frequent schedules, up to half the gap to the following tick for sparse
-- ones, capped by SCHEDULER_COHORT_LOOKAHEAD_MS). '-infinity': as soon as it can (a new or
-- changed schedule, whose lead the leader computes).
alter table schedules add column claim_at timestamptz not null default '-infinity';
create index schedules_claim_idx on schedules (claim_at)
    where not paused and next_due_at is not null;

-- `missed_uncounted` is exact while this is true; once a catch-up could only bound the
-- count from below (a very long outage across DST days), it is a lower bound.
alter table schedules add column missed_uncounted_exact boolean not null default true;

-- A run waiting to retry its launch is `pending` again, due at `retry_at` (its `fire_at`
-- stays the tick's). The dispatchers' queue walks the due time of pending runs.
--
-- The `is not null` part of the predicate is always true (fire_at is not null): it keeps
-- the index to queries that compare the due time (a strict comparison implies it), so a
-- query for one schedule's pending runs (a cancel) never takes this queue of every
-- schedule's pending runs for a cheap way to find them.
alter table runs add column retry_at timestamptz;
drop index runs_due_idx;
create index runs_due_idx on runs ((coalesce(retry_at, fire_at)))
    where status = 'pending' and coalesce(retry_at, fire_at) is not null;
