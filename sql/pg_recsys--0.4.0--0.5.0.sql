-- pg_recsys 0.4.0 -> 0.5.0: recommend re-ranks for diversity (and its filter may name the user as
-- $1); tune searches random points and successive halving within a budget, and algorithm 'auto'.
-- Also part of a fresh 0.5.0 install (lib.rs includes this file after the two functions), where
-- the DROPs find nothing and the CREATEs restate what is there.
--
-- The library keeps the 0.4.0 C symbols of both (recommend_wrapper, tune_wrapper) with their
-- old arguments, so an install serves between the library's upgrade and this script.
--
-- New algorithms (rp3beta, slim) and params (weighting) need no DDL: recsys.algorithms reads them
-- from the library.
\echo Use "ALTER EXTENSION pg_recsys UPDATE" to load this file. \quit

DROP FUNCTION IF EXISTS recsys.recommend(bigint, integer, text, boolean, bigint[], text, regclass, boolean);
CREATE OR REPLACE FUNCTION recsys.recommend(
	"user_id" bigint,
	"n" INT DEFAULT 10,
	"model" TEXT DEFAULT NULL,
	"exclude_seen" bool DEFAULT true,
	"candidates" bigint[] DEFAULT NULL,
	"filter" TEXT DEFAULT NULL,
	"items" regclass DEFAULT NULL,
	"with_reasons" bool DEFAULT false,
	"diversity" double precision DEFAULT 0.0
) RETURNS TABLE (
	"item_id" bigint,
	"score" real,
	"rank" INT,
	"reason" TEXT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'recommend_with_diversity_wrapper';

DROP FUNCTION IF EXISTS recsys.tune(text, regclass, text, jsonb, text, integer, text, text, text, double precision, bigint);
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
	"validation_fraction" double precision DEFAULT 0.2,
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

COMMENT ON FUNCTION recsys.recommend(bigint, integer, text, boolean, bigint[], text, regclass, boolean, double precision) IS 'Top-n items for a user from their current rows (seen and disliked items excluded), with optional candidates, a filter ($1 is the user), reasons, and diversity re-ranking (MMR).';
COMMENT ON FUNCTION recsys.tune(text, regclass, text, jsonb, text, integer, text, text, text, double precision, bigint, text, integer, double precision) IS 'Search params (grid, random or successive halving, within trials/time_budget) on a validation split of the source, or algorithm ''auto'' over a portfolio; the best is retrained on all rows and deployed, the leaderboard kept in its metrics.';
