-- History: the hot paths over a schedule's runs cost what is in flight or on the page,
-- never the schedule's whole history (DESIGN §2.5).
--
-- One index serves both per-schedule hot paths that filter by status:
--   - cancelling a schedule's pending runs (pause, delete, spec change):
--     `where schedule_id = $1 and status = 'pending'` reads only its pending runs (those
--     waiting to retry a launch included);
--   - the status-filtered listing (`GET /schedules/{id}/runs?status=`):
--     `where schedule_id = $1 and status = $5 and scheduled_for < $2
--      order by scheduled_for desc limit $3` reads only the page, however rare the status.
-- The unfiltered listing keeps walking the unique (schedule_id, scheduled_for) index, and
-- retention (src/runs/retention.rs) walks the primary key (run ids are UUID v7, in creation
-- order): neither needs an index of its own, and every index costs every run write.
--
-- Built inside this migration's transaction, which blocks writes to `runs` while it builds.
-- A deployment with a large `runs` table should build it beforehand without blocking:
--
--   create index concurrently runs_schedule_status_idx on runs (schedule_id, status, scheduled_for);
--
-- and this migration then finds it. (Not `concurrently` here: that cannot run in a
-- transaction, and outside one it deadlocks against the other replicas waiting on sqlx's
-- migration lock when several start at once.) An invalid leftover of a failed concurrent
-- build is dropped and built again.
do $$
begin
    if exists (select 1 from pg_index
               where indexrelid = to_regclass('runs_schedule_status_idx') and not indisvalid) then
        drop index runs_schedule_status_idx;
    end if;
end
$$;

create index if not exists runs_schedule_status_idx on runs (schedule_id, status, scheduled_for);

