-- The launcher: exclusive slots for overlap policies, run deadlines, and the indexes the
-- dispatcher's claim queries walk.

-- True while a run of a `skip` or `queue` schedule is launching or running. At most one
-- run per schedule holds it: two replicas launching at once cannot both start an
-- exclusive run, whatever the Rust code does.
alter table runs add column exclusive_slot boolean not null default false;
create unique index runs_exclusive_slot_idx on runs (schedule_id) where exclusive_slot;

-- When a running run times out if the Executor never reports its end.
alter table runs add column deadline_at timestamptz;
create index runs_deadline_idx on runs (deadline_at) where status = 'running';

-- Manual launches are looked up by their idempotency key (already unique).

-- The unique (schedule_id, scheduled_for) index already serves per-schedule listings in
-- both directions; this one only cost writes.
drop index runs_schedule_idx;
