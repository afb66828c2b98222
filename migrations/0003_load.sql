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
-- The tick is the second key: the dispatchers take runs due at the same instant in tick
-- order straight from the index (a cohort of 100,000 due at one second is not sorted
-- again for every batch claimed from it).
create index runs_due_idx on runs ((coalesce(retry_at, fire_at)), scheduled_for)
    where status = 'pending' and coalesce(retry_at, fire_at) is not null;

-- The same for the leases of launching runs and the deadlines of running ones: these
-- partial indexes serve only queries that compare the lease or the deadline (reclaim,
-- expiry, the next wake-up). The launcher's batched updates name their runs by id and
-- test the status; while a burst moves 100,000 runs through `launching` in seconds, the
-- statistics lag, and a planner that believed few runs were launching would otherwise
-- walk this index for every run of the batch instead of looking each up by its key.
drop index runs_lease_idx;
create index runs_lease_idx on runs (lease_until)
    where status = 'launching' and lease_until is not null;
drop index runs_deadline_idx;
create index runs_deadline_idx on runs (deadline_at)
    where status = 'running' and deadline_at is not null;

-- Idempotency keys are chosen by clients only for manual launches; every other run's key
-- is its own id (or, for a revived tick, a fresh UUID). Only manual launches need the
-- uniqueness check, and every run write paid for it.
alter table runs drop constraint runs_idempotency_key_key;
create unique index runs_manual_key_idx on runs (idempotency_key) where trigger = 'manual';

-- Both tables are queues as much as ledgers: every run is written three or four times in
-- its first minutes, every schedule once per tick. Vacuum and analyze them after 2 % of
-- their rows changed, not the default 20 %, so dead index entries (which every claim
-- walks past) and stale statistics do not build up between vacuums.
-- And unthrottled (no cost delay): a throttled vacuum of a table written at thousands of
-- rows a second never catches up, and every scan of a queue index then walks a growing
-- tail of dead entries.
alter table runs set (autovacuum_vacuum_scale_factor = 0.02,
                      autovacuum_vacuum_insert_scale_factor = 0.02,
                      autovacuum_analyze_scale_factor = 0.02,
                      autovacuum_vacuum_cost_delay = 0);
alter table schedules set (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_analyze_scale_factor = 0.02,
                           autovacuum_vacuum_cost_delay = 0);
