-- Per-schedule health, as `GET /schedules` reports it and the leader's gauge counts it.
--
-- `late`: an active schedule that should have fired and has not: its next tick is more
-- than `late_after` (the misfire grace) in the past and no leader turned it into a run,
-- or one of its runs has been due that long without an accepted launch (pending or stuck
-- launching: the Executor refuses or is down, or no replica launches).
-- `failing`: its 3 latest ended runs all failed (`failed`, `timed_out` or
-- `failed_launch`), that is, 3 failures since its latest `succeeded` run.
-- Otherwise `ok`. `late` is reported first: it is what is happening now.
--
-- Computed when read, from the schedule's row and a few probes of
-- `runs_schedule_status_idx (schedule_id, status, scheduled_for)`: the latest success,
-- at most 3 failures after it, and whether a pending or launching run is overdue. Nothing
-- is written on the hot path to keep it, and one schedule's answer costs a handful of
-- index entries whatever its history.
create function schedule_health(
    p_schedule_id text,
    p_paused boolean,
    p_next_due_at timestamptz,
    p_end_at timestamptz,
    p_late_after interval
) returns text
language sql stable parallel safe as $$
    select case
        when not p_paused
             and p_next_due_at is not null
             and (p_end_at is null or p_end_at >= now())
             and (p_next_due_at < now() - p_late_after
                  or exists (select 1 from runs r
                             where r.schedule_id = p_schedule_id
                               and r.status in ('pending', 'launching')
                               and r.fire_at < now() - p_late_after))
            then 'late'
        when (select count(*) = 3 from
                  (select 1 from runs r
                   where r.schedule_id = p_schedule_id
                     and r.status in ('failed', 'timed_out', 'failed_launch')
                     and r.scheduled_for > coalesce(
                         (select max(w.scheduled_for) from runs w
                          where w.schedule_id = p_schedule_id and w.status = 'succeeded'),
                         '-infinity')
                   limit 3) f)
            then 'failing'
        else 'ok'
    end
$$;
