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
