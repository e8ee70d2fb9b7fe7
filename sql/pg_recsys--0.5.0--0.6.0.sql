-- pg_recsys 0.5.0 -> 0.6.0: training in background workers (recsys.train_async, the recsys.jobs
-- view, recsys.cancel_job) and the progress of every training in progress (recsys.progress).
-- Also part of a fresh 0.6.0 install (lib.rs includes this file after the functions), where the
-- CREATE OR REPLACEs restate what is there.
\echo Use "ALTER EXTENSION pg_recsys UPDATE" to load this file. \quit

CREATE OR REPLACE FUNCTION recsys.train_async(
	"model" TEXT,
	"source" regclass,
	"algorithm" TEXT DEFAULT 'ease',
	"params" jsonb DEFAULT '{}',
	"user_column" TEXT DEFAULT 'user_id',
	"item_column" TEXT DEFAULT 'item_id',
	"rating_column" TEXT DEFAULT NULL,
	"time_column" TEXT DEFAULT NULL,
	"items" regclass DEFAULT NULL,
	"item_text" TEXT DEFAULT NULL
) RETURNS bigint
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'train_async_wrapper';

CREATE OR REPLACE FUNCTION recsys.cancel_job("id" bigint) RETURNS bool
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cancel_job_wrapper';

CREATE OR REPLACE FUNCTION recsys.training_progress() RETURNS TABLE (
	"pid" INT,
	"database" oid,
	"role" oid,
	"job_id" bigint,
	"model" TEXT,
	"algorithm" TEXT,
	"phase" TEXT,
	"step" bigint,
	"steps" bigint,
	"metric" TEXT,
	"loss" double precision,
	"started_epoch" double precision,
	"seconds_left" double precision
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'training_progress_wrapper';

COMMENT ON FUNCTION recsys.train_async(text, regclass, text, jsonb, text, text, text, text, regclass, text) IS
    'Queue a training (same arguments as recsys.train) for a background worker running as the caller; returns the job id (see recsys.jobs).';
COMMENT ON FUNCTION recsys.cancel_job(bigint) IS 'Cancel a queued or running job of recsys.jobs; true when it was queued or running.';
COMMENT ON FUNCTION recsys.training_progress() IS 'The rows of recsys.progress (trainings in progress in any backend or worker).';

-- One row per job. Only pg_recsys's functions write it (as the catalog's owner); roles read it
-- through recsys.jobs, which shows the jobs of roles whose privileges they have.
CREATE TABLE recsys.job_runs (
    id        bigserial PRIMARY KEY,
    model     text NOT NULL,
    algorithm text NOT NULL,
    role      name NOT NULL,
    -- train's arguments: relations by oid (resolved when the job was queued), the rest as given.
    call      jsonb NOT NULL,
    -- The submitting session's own values of the user-settable recsys.* settings.
    settings  jsonb NOT NULL DEFAULT '{}',
    state     text NOT NULL DEFAULT 'queued'
              CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    submitted timestamptz NOT NULL DEFAULT clock_timestamp(),
    started   timestamptz,
    finished  timestamptz,
    pid       int,
    version   int,
    error     text,
    sqlstate  text
);

-- A job whose worker is gone without recording an end (killed, or the server restarted) shows
-- as failed.
CREATE OR REPLACE VIEW recsys.jobs AS
SELECT j.id, j.model, j.algorithm, j.role,
       CASE WHEN lost THEN 'failed' ELSE j.state END AS state,
       j.submitted, j.started, j.finished, j.pid, j.version,
       CASE WHEN lost THEN 'the background worker ended without recording a result (see the server log)' ELSE j.error END AS error,
       j.sqlstate,
       j.call - 'source' - 'items' || jsonb_build_object('source', j.call -> 'source', 'items', j.call -> 'items') AS arguments
  FROM recsys.job_runs j,
       LATERAL (SELECT j.state IN ('queued', 'running') AND j.pid IS NOT NULL AND NOT EXISTS (
                  SELECT FROM pg_catalog.pg_stat_activity a
                   WHERE a.pid = j.pid AND a.backend_type = 'pg_recsys training') AS lost) l
 WHERE pg_catalog.pg_has_role(pg_catalog.to_regrole(pg_catalog.quote_ident(j.role::text)), 'USAGE');
GRANT SELECT ON recsys.jobs TO PUBLIC;
COMMENT ON VIEW recsys.jobs IS 'Background trainings queued with recsys.train_async: state queued/running/done/failed/cancelled, the version written, the error and its SQLSTATE.';

CREATE OR REPLACE VIEW recsys.progress AS
SELECT p.pid, d.datname, r.rolname AS role, p.job_id, p.model, p.algorithm, p.phase, p.step, p.steps,
       p.metric, p.loss, pg_catalog.to_timestamp(p.started_epoch) AS started,
       pg_catalog.clock_timestamp() - pg_catalog.to_timestamp(p.started_epoch) AS elapsed,
       p.seconds_left
  FROM recsys.training_progress() p
  LEFT JOIN pg_catalog.pg_database d ON d.oid = p.database
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = p.role;
GRANT SELECT ON recsys.progress TO PUBLIC;
COMMENT ON VIEW recsys.progress IS 'One row per training in progress in any backend or background worker (needs pg_recsys in shared_preload_libraries).';

-- The write phase: a foreign-key check per neighbour and factor row was more than half of it
-- (rp3beta on ML-100K: 7.9 s to write 637k rows with the checks, 3.0 s without). Only
-- pg_recsys's functions write these tables, always for the version they have just inserted, so
-- the checks are dropped; removing a version's rows (ON DELETE CASCADE before) is a statement
-- trigger on recsys.models. model_blobs keeps its key (a few rows per version).
ALTER TABLE recsys.item_neighbors DROP CONSTRAINT item_neighbors_model_id_fkey;
ALTER TABLE recsys.user_neighbors DROP CONSTRAINT user_neighbors_model_id_fkey;
ALTER TABLE recsys.item_factors DROP CONSTRAINT item_factors_model_id_fkey;
ALTER TABLE recsys.user_factors DROP CONSTRAINT user_factors_model_id_fkey;

CREATE FUNCTION recsys.delete_version_rows() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM recsys.item_neighbors WHERE model_id IN (SELECT id FROM gone);
    DELETE FROM recsys.user_neighbors WHERE model_id IN (SELECT id FROM gone);
    DELETE FROM recsys.item_factors WHERE model_id IN (SELECT id FROM gone);
    DELETE FROM recsys.user_factors WHERE model_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION recsys.delete_version_rows() IS 'Removes the neighbour and factor rows of deleted model versions (trigger on recsys.models).';
CREATE TRIGGER delete_version_rows AFTER DELETE ON recsys.models
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION recsys.delete_version_rows();

COMMENT ON TABLE recsys.job_runs IS 'The rows behind recsys.jobs (written only by pg_recsys''s functions); read recsys.jobs.';
COMMENT ON COLUMN recsys.job_runs.id IS 'The job id train_async returned.';
COMMENT ON COLUMN recsys.job_runs.model IS 'The model name the job trains a version of.';
COMMENT ON COLUMN recsys.job_runs.algorithm IS 'The algorithm it trains.';
COMMENT ON COLUMN recsys.job_runs.role IS 'The role that called train_async: the worker trains as it.';
COMMENT ON COLUMN recsys.job_runs.call IS 'train''s arguments (source and items as relation oids, resolved when queued).';
COMMENT ON COLUMN recsys.job_runs.settings IS 'The caller''s session values of the user-settable recsys.* settings, set again in the worker.';
COMMENT ON COLUMN recsys.job_runs.state IS 'queued, running, done, failed or cancelled.';
COMMENT ON COLUMN recsys.job_runs.submitted IS 'When train_async was called.';
COMMENT ON COLUMN recsys.job_runs.started IS 'When the worker started training.';
COMMENT ON COLUMN recsys.job_runs.finished IS 'When the job ended.';
COMMENT ON COLUMN recsys.job_runs.pid IS 'The background worker''s process id.';
COMMENT ON COLUMN recsys.job_runs.version IS 'The version it wrote (done jobs).';
COMMENT ON COLUMN recsys.job_runs.error IS 'Why it failed or was cancelled.';
COMMENT ON COLUMN recsys.job_runs.sqlstate IS 'The SQLSTATE of that error.';
COMMENT ON COLUMN recsys.jobs.id IS 'The job id train_async returned.';
COMMENT ON COLUMN recsys.jobs.model IS 'The model name the job trains a version of.';
COMMENT ON COLUMN recsys.jobs.algorithm IS 'The algorithm it trains.';
COMMENT ON COLUMN recsys.jobs.role IS 'The role that called train_async: the worker trains as it.';
COMMENT ON COLUMN recsys.jobs.state IS 'queued, running, done, failed (also: its worker is gone without a word) or cancelled.';
COMMENT ON COLUMN recsys.jobs.submitted IS 'When train_async was called.';
COMMENT ON COLUMN recsys.jobs.started IS 'When the worker started training.';
COMMENT ON COLUMN recsys.jobs.finished IS 'When the job ended.';
COMMENT ON COLUMN recsys.jobs.pid IS 'The background worker''s process id (backend_type pg_recsys training in pg_stat_activity).';
COMMENT ON COLUMN recsys.jobs.version IS 'The version it wrote (done jobs).';
COMMENT ON COLUMN recsys.jobs.error IS 'Why it failed or was cancelled.';
COMMENT ON COLUMN recsys.jobs.sqlstate IS 'The SQLSTATE of that error.';
COMMENT ON COLUMN recsys.jobs.arguments IS 'The arguments train_async was called with (relations as oids).';
COMMENT ON COLUMN recsys.progress.pid IS 'The backend or background worker training.';
COMMENT ON COLUMN recsys.progress.datname IS 'Its database.';
COMMENT ON COLUMN recsys.progress.role IS 'The role it trains as.';
COMMENT ON COLUMN recsys.progress.job_id IS 'Its recsys.jobs id (NULL for a train or tune call in a session).';
COMMENT ON COLUMN recsys.progress.model IS 'The model name.';
COMMENT ON COLUMN recsys.progress.algorithm IS 'The algorithm (auto for tune''s portfolio search).';
COMMENT ON COLUMN recsys.progress.phase IS 'read (the source), search (tune), fit, or write (the version).';
COMMENT ON COLUMN recsys.progress.step IS 'Iterations or epochs done (chunks before the first ends; configurations in search).';
COMMENT ON COLUMN recsys.progress.steps IS 'Of how many.';
COMMENT ON COLUMN recsys.progress.metric IS 'What loss is (the objective, or tune''s validation metric).';
COMMENT ON COLUMN recsys.progress.loss IS 'Its last value.';
COMMENT ON COLUMN recsys.progress.started IS 'When the training started.';
COMMENT ON COLUMN recsys.progress.elapsed IS 'How long it has run.';
COMMENT ON COLUMN recsys.progress.seconds_left IS 'The phase''s time left, extrapolated from its steps so far.';
