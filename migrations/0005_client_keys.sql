-- Idempotency keys chosen by clients (manual launches and triggers) are scoped to the user
-- they act for: one user's key can neither collide with nor reveal another user's run.
--
-- `client_key` holds the client's key; `idempotency_key` stays what the Executor receives
-- on every attempt, now the run id for new manual runs, so two users' runs that share a
-- client key are never taken for one run by the Executor either. Existing manual runs keep
-- the Executor key they had (a run waiting to retry must send the same key again).
--
-- The index is partial: scheduled runs (the hot path) carry no client key and write no
-- entry to it.
alter table runs add column client_key text;

update runs set client_key = idempotency_key where trigger = 'manual' and schedule_id is null;

create unique index runs_client_key_idx on runs (user_id, client_key) where client_key is not null;

drop index runs_manual_key_idx;
