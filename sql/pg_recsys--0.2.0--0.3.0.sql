-- pg_recsys 0.2.0 -> 0.3.0: the extension explains itself in psql. Also the tail of a fresh 0.3.0
-- install (lib.rs includes this file), so an upgraded catalog and a fresh one are the same.
--
-- recsys.algorithms lists every algorithm with its params (defaults, allowed values), read from
-- the engine's own parsing code; every function, table, view and column has a comment.
\echo Use "ALTER EXTENSION pg_recsys UPDATE" to load this file. \quit

CREATE OR REPLACE FUNCTION recsys.algorithm_catalog() RETURNS TABLE (
	"name" TEXT,
	"family" TEXT,
	"needs_ratings" bool,
	"needs_time" bool,
	"needs_item_text" bool,
	"neural" bool,
	"params" jsonb,
	"description" TEXT
)
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'algorithm_catalog_wrapper';

CREATE OR REPLACE VIEW recsys.algorithms AS SELECT * FROM recsys.algorithm_catalog();
GRANT SELECT ON recsys.algorithms TO PUBLIC;

-- One comment per function name (overloads share it), so \df+ and \dx+ explain each object.
DO $comments$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::pg_catalog.regprocedure AS sig, d.text
          FROM pg_catalog.pg_proc p
          JOIN (VALUES
            ('cosine', 'Cosine similarity of two equal-length vectors, in double precision; NULL for a zero vector.'),
            ('pearson', 'Pearson correlation of two equal-length vectors; NULL for zero variance or one element.'),
            ('jaccard', 'Jaccard similarity |A ∩ B| / |A ∪ B| of two id sets (duplicates ignored); NULL for two empty sets.'),
            ('train', 'Fit a model from a live behaviour table and deploy it as a new version, in this transaction. See SELECT * FROM recsys.algorithms.'),
            ('recommend', 'Top-n items for a user from their current rows (seen and disliked items excluded), with optional candidates, a filter ($1 is the user), reasons, and diversity re-ranking (MMR).'),
            ('predict', 'The model''s score for one (user, item): a clipped rating for rating models; NULL when the user cannot be placed.'),
            ('explain', 'The user''s own items that contribute most to an item''s score, largest first.'),
            ('similar_items', 'The n items most similar to an item: stored neighbours, or cosine of factors or embeddings.'),
            ('similar_users', 'The n users most similar to a user: user_knn neighbours, or cosine of user factors.'),
            ('deploy', 'Serve another version of a model (e.g. roll back).'),
            ('drop_model', 'Drop every version of a model and its rows.'),
            ('split', 'Split a behaviour table into new train and test tables (random, temporal, leave_one_out, global_temporal).'),
            ('evaluate', 'Precision, recall, NDCG, MAP, hit rate and coverage at k of a model on a test table (and RMSE/MAE for rating models).'),
            ('tune', 'Search params (grid, random or successive halving, within trials/time_budget) on a validation split of the source, or algorithm ''auto'' over a portfolio; the best is retrained on all rows and deployed, the leaderboard kept in its metrics.'),
            ('synthetic_interactions', 'Deterministic synthetic behaviour rows (power-law popularity, genre-like tastes) for demos and tests.'),
            ('algorithm_catalog', 'The rows of the view recsys.algorithms.')
          ) AS d(name, text) ON d.name = p.proname
         WHERE p.pronamespace = 'recsys'::pg_catalog.regnamespace
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', f.sig, f.text);
    END LOOP;
END
$comments$;

COMMENT ON VIEW recsys.algorithms IS 'Every algorithm recsys.train knows: family, what it needs, and its params with defaults and allowed values.';
COMMENT ON COLUMN recsys.algorithms.name IS 'The algorithm argument of recsys.train.';
COMMENT ON COLUMN recsys.algorithms.family IS 'baseline, neighbourhood, linear, factorization, neural, content or hybrid.';
COMMENT ON COLUMN recsys.algorithms.needs_ratings IS 'Needs rating_column with its default params (item_knn does with a rating similarity, user_knn with pearson).';
COMMENT ON COLUMN recsys.algorithms.needs_time IS 'Needs time_column with its default params.';
COMMENT ON COLUMN recsys.algorithms.needs_item_text IS 'Needs items and item_text.';
COMMENT ON COLUMN recsys.algorithms.neural IS 'Trained with Candle (honours recsys.device).';
COMMENT ON COLUMN recsys.algorithms.params IS 'Each parameter: name, type, default and allowed range or values.';
COMMENT ON COLUMN recsys.algorithms.description IS 'What the algorithm does.';

COMMENT ON TABLE recsys.models IS 'One row per model version: what was trained, from what, by whom, and whether it is deployed.';
COMMENT ON COLUMN recsys.models.id IS 'The version''s id; the other catalog tables refer to it as model_id.';
COMMENT ON COLUMN recsys.models.name IS 'The model name used by recommend and the other serving functions.';
COMMENT ON COLUMN recsys.models.version IS 'Version number within the name, from 1.';
COMMENT ON COLUMN recsys.models.algorithm IS 'The algorithm (see recsys.algorithms).';
COMMENT ON COLUMN recsys.models.params IS 'The effective params, defaults filled in.';
COMMENT ON COLUMN recsys.models.source IS 'The behaviour table, schema-qualified.';
COMMENT ON COLUMN recsys.models.columns IS 'The source columns used (user, item, rating, time) and the items table with its item_text.';
COMMENT ON COLUMN recsys.models.owner IS 'The role that owns the model: what the model carries runs as this role.';
COMMENT ON COLUMN recsys.models.trained_at IS 'When the version was written.';
COMMENT ON COLUMN recsys.models.seconds IS 'Wall time of the whole train call: read, fit and write.';
COMMENT ON COLUMN recsys.models.users IS 'Users in the training data.';
COMMENT ON COLUMN recsys.models.items IS 'Items in the training data.';
COMMENT ON COLUMN recsys.models.interactions IS 'Distinct (user, item) pairs trained on.';
COMMENT ON COLUMN recsys.models.deployed IS 'Whether this version serves the name (one per name).';
COMMENT ON COLUMN recsys.models.metrics IS 'read/fit/write seconds, peak memory, and the last evaluate figures.';

-- The neighbour tables as 0.3.0 had them; a fresh install reaches this file (the last of its
-- parts) after 0.7.0 made them views over recsys.*_neighbor_lists, commented there.
DO $$
BEGIN
    IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'recsys.item_neighbors'::pg_catalog.regclass) = 'r' THEN
        COMMENT ON TABLE recsys.item_neighbors IS 'Top-k neighbours per item of item_knn, EASE and content models; join it like an index.';
        COMMENT ON COLUMN recsys.item_neighbors.model_id IS 'The model version (recsys.models.id).';
        COMMENT ON COLUMN recsys.item_neighbors.item_id IS 'The item.';
        COMMENT ON COLUMN recsys.item_neighbors.neighbor_id IS 'One of its most similar items.';
        COMMENT ON COLUMN recsys.item_neighbors.score IS 'Similarity (or EASE weight); larger is closer.';
        COMMENT ON TABLE recsys.user_neighbors IS 'Top-k similar users of every trained user of user_knn models.';
        COMMENT ON COLUMN recsys.user_neighbors.model_id IS 'The model version (recsys.models.id).';
        COMMENT ON COLUMN recsys.user_neighbors.user_id IS 'The user.';
        COMMENT ON COLUMN recsys.user_neighbors.neighbor_id IS 'One of their most similar users.';
        COMMENT ON COLUMN recsys.user_neighbors.score IS 'Similarity; larger is closer.';
    END IF;
END
$$;
COMMENT ON TABLE recsys.item_factors IS 'Item factors of factor models, one real[] per item.';
COMMENT ON COLUMN recsys.item_factors.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.item_factors.item_id IS 'The item.';
COMMENT ON COLUMN recsys.item_factors.factors IS 'Its factor vector.';
COMMENT ON TABLE recsys.user_factors IS 'User factors of factor models, one real[] per trained user.';
COMMENT ON COLUMN recsys.user_factors.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.user_factors.user_id IS 'The user.';
COMMENT ON COLUMN recsys.user_factors.factors IS 'Their factor vector.';
COMMENT ON TABLE recsys.model_blobs IS 'The encoded model of each version, in parts (what serving decodes).';
COMMENT ON COLUMN recsys.model_blobs.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.model_blobs.part IS 'Part number, from 0.';
COMMENT ON COLUMN recsys.model_blobs.data IS 'The bytes of this part.';
