-- Per-schedule daylight-saving policy (docs/CRON.md, "DST policy per schedule").
-- NULL keeps the rules of the tick's kind (a fixed-time tick shifts out of a gap and
-- fires once in a fold; an interval tick is skipped in a gap and fires on both passes);
-- a value applies to every tick of the schedule.
alter table schedules
    add column dst_gap text check (dst_gap in ('shift', 'skip')),
    add column dst_fold text check (dst_fold in ('once', 'twice'));
