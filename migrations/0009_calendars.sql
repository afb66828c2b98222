-- Calendars (docs/API.md, "Calendars"; docs/CRON.md, "Calendars and business days").
-- A calendar is a set of excluded local dates in its own timezone: single dates,
-- inclusive ranges and weekdays off. A schedule names the calendars whose dates it does
-- not fire on, and what happens to a tick on such a date (`on_excluded`).
-- (0008 is the interval-schedule migration of a parallel branch.)

create table calendars (
    name            text primary key check (name ~ '^[A-Za-z0-9._:-]{1,128}$'),
    user_id         text not null check (length(user_id) between 1 and 256),
    timezone        text not null check (length(timezone) between 1 and 64),
    excluded_dates  date[] not null default '{}'
                    check (cardinality(excluded_dates) <= 1000),
    -- Inclusive ranges, element by element: range_from[i] ..= range_to[i].
    range_from      date[] not null default '{}',
    range_to        date[] not null default '{}',
    weekly_off      text[] not null default '{}'
                    check (weekly_off <@ array['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']
                           and cardinality(weekly_off) < 7),
    shared          boolean not null default false,
    description     text check (length(description) <= 1024),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    check (cardinality(range_from) = cardinality(range_to) and cardinality(range_from) <= 100)
);

create index calendars_user_idx on calendars (user_id, name);

alter table schedules
    add column exclude_calendars text[] not null default '{}'
        check (cardinality(exclude_calendars) <= 8),
    add column on_excluded text not null default 'skip'
        check (on_excluded in ('skip', 'next_business_day', 'previous_business_day'));

-- "Which schedules name calendar X" (a delete's 409, a change of owner or sharing) is
-- an index lookup, not a scan: `exclude_calendars @> array[X]`.
create index schedules_exclude_calendars_idx on schedules using gin (exclude_calendars);

-- runs.reason has no CHECK constraint (0001): the new reason `calendar` needs none.
