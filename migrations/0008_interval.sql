-- Interval schedules (docs/CRON.md, "Interval schedules"): instead of a cron expression a
-- schedule may have a period in whole seconds (1 s to 366 days) and the instant it counts
-- from; ticks fall at anchor + k × period. A schedule has exactly one of the two rules.
alter table schedules
    alter column cron_expr drop not null,
    add column interval_seconds bigint check (interval_seconds between 1 and 31622400),
    add column anchor timestamptz,
    add constraint schedules_one_rule check ((cron_expr is null) <> (interval_seconds is null)),
    add constraint schedules_anchor_with_interval check (anchor is null or interval_seconds is not null);
