-- cron-scheduler schema, version 1.
-- Enumerations are text with CHECK constraints (readable in psql, cheap to extend with a
-- new migration). Times are timestamptz; the database clock (now()) decides due-ness.

create table schedules (
    schedule_id     text primary key
                    check (schedule_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    workflow_id     text not null check (length(workflow_id) between 1 and 256),
    version         integer not null check (version >= 1),
    user_id         text not null check (length(user_id) between 1 and 256),
    cron_expr       text not null check (length(cron_expr) between 1 and 256),
    timezone        text not null,
    start_at        timestamptz,
    end_at          timestamptz,
    jitter_ms       integer not null default 0 check (jitter_ms between 0 and 3600000),
    overlap_policy  text not null check (overlap_policy in ('allow', 'skip', 'queue')),
    catchup_policy  text not null check (catchup_policy in ('none', 'fire_immediately', 'spread')),
    paused          boolean not null default false,
    -- The next nominal tick the leader has not yet turned into a run. NULL: no tick is
    -- left (the schedule is completed).
    next_due_at     timestamptz,
    -- Ticks materialized so far run up to here (exclusive of later ticks).
    materialized_to timestamptz,
    -- Bumped whenever the spec changes, so a leader never writes ticks of an old spec.
    spec_generation bigint not null default 1,
    -- Missed ticks beyond the bound of recorded `missed` rows.
    missed_uncounted bigint not null default 0,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    check (end_at is null or start_at is null or end_at > start_at)
);

-- The leader's claim query walks this index in due order.
create index schedules_due_idx on schedules (next_due_at)
    where not paused and next_due_at is not null;
create index schedules_user_idx on schedules (user_id, schedule_id);
create index schedules_workflow_idx on schedules (workflow_id, schedule_id);

create table workflow_versions (
    workflow_id text not null check (length(workflow_id) between 1 and 256),
    version     integer not null check (version >= 1),
    dag         jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (workflow_id, version)
);

create table runs (
    run_id          uuid primary key,
    -- NULL for manual launches that belong to no schedule.
    schedule_id     text,
    scheduled_for   timestamptz not null,
    fire_at         timestamptz not null,
    status          text not null check (status in (
                        'pending', 'launching', 'running', 'succeeded', 'failed',
                        'timed_out', 'skipped', 'missed', 'cancelled', 'failed_launch')),
    trigger         text not null check (trigger in ('schedule', 'catchup', 'manual', 'backfill')),
    reason          text,
    workflow_id     text not null,
    version         integer not null check (version >= 1),
    user_id         text not null,
    idempotency_key text not null unique,
    attempt         integer not null default 0,
    last_error      text,
    leader_epoch    bigint,
    created_by      text,
    launched_by     text,
    lease_until     timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    launched_at     timestamptz,
    finished_at     timestamptz,
    -- Invariant 1: one run per tick, whatever the leader, retry or crash.
    unique (schedule_id, scheduled_for)
);

create index runs_due_idx on runs (fire_at) where status = 'pending';
create index runs_lease_idx on runs (lease_until) where status = 'launching';
create index runs_schedule_idx on runs (schedule_id, scheduled_for desc);

-- Fleet-wide state, one row per cluster name.
create table fleet_state (
    cluster_name    text primary key,
    worker_enabled  boolean not null,
    leader_epoch    bigint not null default 0,
    leader_node     text,
    leader_since    timestamptz,
    last_tick_at    timestamptz,
    updated_at      timestamptz not null default now()
);

create table nodes (
    cluster_name    text not null,
    node_id         text not null,
    started_at      timestamptz not null,
    last_seen_at    timestamptz not null,
    version         text not null,
    role            text not null check (role in ('leader', 'follower', 'stopped')),
    primary key (cluster_name, node_id)
);
