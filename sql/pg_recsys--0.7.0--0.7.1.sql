-- pg_recsys 0.7.0 -> 0.7.1: recsys.tune's validation_fraction defaults to NULL, which means 0.2,
-- or 0.1 for algorithm 'auto' (it compares algorithms whose ranking shifts with how much they
-- are trained on, so it holds out less; README, "Tuning"). Also part of a fresh 0.7.1 install
-- (lib.rs includes it after 0.7.0's, so it replaces 0.5.0's declaration there too).
\echo Use "ALTER EXTENSION pg_recsys UPDATE" to load this file. \quit

CREATE OR REPLACE FUNCTION recsys.tune(
	"model" TEXT,
	"source" regclass,
	"algorithm" TEXT,
	"grid" jsonb DEFAULT '{}',
	"metric" TEXT DEFAULT 'ndcg',
	"k" INT DEFAULT 10,
	"user_column" TEXT DEFAULT 'user_id',
	"item_column" TEXT DEFAULT 'item_id',
	"rating_column" TEXT DEFAULT NULL,
	"validation_fraction" double precision DEFAULT NULL,
	"seed" bigint DEFAULT 42,
	"search" TEXT DEFAULT 'grid',
	"trials" INT DEFAULT NULL,
	"time_budget" double precision DEFAULT NULL
) RETURNS TABLE (
	"params" jsonb,
	"metric" TEXT,
	"value" double precision,
	"best" bool,
	"algorithm" TEXT,
	"users_share" double precision
)
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'tune_search_wrapper';
