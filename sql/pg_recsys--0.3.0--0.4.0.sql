-- pg_recsys 0.3.0 -> 0.4.0: models in and out as safetensors files. Also part of a fresh 0.4.0
-- install (lib.rs includes this file after the two functions), so both reach the same catalog.
--
-- Models stored by 0.1.0-0.3.0 keep their old format in recsys.model_blobs and keep serving (a
-- read-only decoder); export_model writes them in the current format.
\echo Use "ALTER EXTENSION pg_recsys UPDATE" to load this file. \quit

CREATE OR REPLACE FUNCTION recsys.export_model(
	"model" TEXT,
	"version" INT DEFAULT NULL
) RETURNS bytea
STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'export_model_wrapper';

CREATE OR REPLACE FUNCTION recsys.import_model(
	"model" TEXT,
	"file" bytea,
	"source" regclass,
	"user_column" TEXT DEFAULT 'user_id',
	"item_column" TEXT DEFAULT 'item_id',
	"rating_column" TEXT DEFAULT NULL,
	"time_column" TEXT DEFAULT NULL,
	"items" regclass DEFAULT NULL,
	"item_text" TEXT DEFAULT NULL
) RETURNS TABLE (
	"model" TEXT,
	"version" INT,
	"algorithm" TEXT,
	"users" bigint,
	"items" bigint,
	"interactions" bigint,
	"seconds" double precision
)
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'import_model_wrapper';

COMMENT ON FUNCTION recsys.export_model(text, integer) IS 'A model version (default: the deployed one) as a safetensors file: named tensors and a JSON header (algorithm, params, state), readable with Python''s safetensors and numpy.';
COMMENT ON FUNCTION recsys.import_model(text, bytea, regclass, text, text, text, text, regclass, text) IS 'Store a model file (exported by export_model, or factor matrices trained elsewhere) as a new deployed version of a model over a live behaviour table.';
