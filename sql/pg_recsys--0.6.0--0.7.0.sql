-- pg_recsys 0.6.0 -> 0.7.0: neighbour tables store one row per item (or user) with its
-- neighbours as arrays; recsys.item_neighbors and recsys.user_neighbors become views of the same
-- columns over them. Also part of a fresh 0.7.0 install (lib.rs includes it after 0.6.0's).
--
-- Why: a row per (item, neighbour) pair with its primary-key entry made writing a version the
-- slowest part of training at catalogue scale (item_knn at the 20M shape: 2.7M rows, 10.9 s, two
-- thirds of it the b-tree) and ~265 MB per version; one row per item is 27k rows and ~36 MB.
-- Readers see the same columns, in each item's order of score (highest first).
\echo Use "ALTER EXTENSION pg_recsys UPDATE" to load this file. \quit

CREATE TABLE recsys.item_neighbor_lists (
    model_id     bigint NOT NULL,
    item_id      bigint NOT NULL,
    neighbor_ids bigint[] NOT NULL,
    scores       real[] NOT NULL,
    PRIMARY KEY (model_id, item_id)
);
CREATE TABLE recsys.user_neighbor_lists (
    model_id     bigint NOT NULL,
    user_id      bigint NOT NULL,
    neighbor_ids bigint[] NOT NULL,
    scores       real[] NOT NULL,
    PRIMARY KEY (model_id, user_id)
);

-- The rows of every stored version move over, best first as the engine writes them.
INSERT INTO recsys.item_neighbor_lists
SELECT model_id, item_id, array_agg(neighbor_id ORDER BY score DESC, neighbor_id),
       array_agg(score ORDER BY score DESC, neighbor_id)
  FROM recsys.item_neighbors GROUP BY model_id, item_id;
INSERT INTO recsys.user_neighbor_lists
SELECT model_id, user_id, array_agg(neighbor_id ORDER BY score DESC, neighbor_id),
       array_agg(score ORDER BY score DESC, neighbor_id)
  FROM recsys.user_neighbors GROUP BY model_id, user_id;
-- Out of the extension first, which also takes them off its list of configuration tables (a plain
-- DROP would leave their oids in pg_extension.extconfig).
ALTER EXTENSION pg_recsys DROP TABLE recsys.item_neighbors;
ALTER EXTENSION pg_recsys DROP TABLE recsys.user_neighbors;
DROP TABLE recsys.item_neighbors, recsys.user_neighbors;

SELECT pg_catalog.pg_extension_config_dump('recsys.item_neighbor_lists', '');
SELECT pg_catalog.pg_extension_config_dump('recsys.user_neighbor_lists', '');

-- Rows are visible per model, as every catalog table's (0.2.0).
ALTER TABLE recsys.item_neighbor_lists ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.item_neighbor_lists FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));
ALTER TABLE recsys.user_neighbor_lists ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.user_neighbor_lists FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));

-- security_invoker: the reader's own privileges and the tables' row policies apply.
CREATE VIEW recsys.item_neighbors WITH (security_invoker = true) AS
SELECT l.model_id, l.item_id, n.neighbor_id, n.score
  FROM recsys.item_neighbor_lists l
  CROSS JOIN LATERAL unnest(l.neighbor_ids, l.scores) AS n(neighbor_id, score);
CREATE VIEW recsys.user_neighbors WITH (security_invoker = true) AS
SELECT l.model_id, l.user_id, n.neighbor_id, n.score
  FROM recsys.user_neighbor_lists l
  CROSS JOIN LATERAL unnest(l.neighbor_ids, l.scores) AS n(neighbor_id, score);

REVOKE ALL ON recsys.item_neighbor_lists, recsys.user_neighbor_lists, recsys.item_neighbors,
    recsys.user_neighbors FROM PUBLIC;
GRANT SELECT ON recsys.item_neighbor_lists, recsys.user_neighbor_lists, recsys.item_neighbors,
    recsys.user_neighbors TO PUBLIC;

CREATE OR REPLACE FUNCTION recsys.delete_version_rows() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM recsys.item_neighbor_lists WHERE model_id IN (SELECT id FROM gone);
    DELETE FROM recsys.user_neighbor_lists WHERE model_id IN (SELECT id FROM gone);
    DELETE FROM recsys.item_factors WHERE model_id IN (SELECT id FROM gone);
    DELETE FROM recsys.user_factors WHERE model_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;

COMMENT ON TABLE recsys.item_neighbor_lists IS 'The rows behind recsys.item_neighbors: one per item of a model version, its neighbours best first.';
COMMENT ON COLUMN recsys.item_neighbor_lists.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.item_neighbor_lists.item_id IS 'The item.';
COMMENT ON COLUMN recsys.item_neighbor_lists.neighbor_ids IS 'Its most similar items, highest score first.';
COMMENT ON COLUMN recsys.item_neighbor_lists.scores IS 'Their scores, in the same order.';
COMMENT ON TABLE recsys.user_neighbor_lists IS 'The rows behind recsys.user_neighbors: one per trained user of a user_knn version.';
COMMENT ON COLUMN recsys.user_neighbor_lists.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.user_neighbor_lists.user_id IS 'The user.';
COMMENT ON COLUMN recsys.user_neighbor_lists.neighbor_ids IS 'Their most similar users, highest score first.';
COMMENT ON COLUMN recsys.user_neighbor_lists.scores IS 'Their scores, in the same order.';
COMMENT ON VIEW recsys.item_neighbors IS 'Top-k neighbours per item of item_knn, EASE, rp3beta, slim and content models, one row per pair; filter on model_id and item_id like an index.';
COMMENT ON COLUMN recsys.item_neighbors.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.item_neighbors.item_id IS 'The item.';
COMMENT ON COLUMN recsys.item_neighbors.neighbor_id IS 'One of its most similar items.';
COMMENT ON COLUMN recsys.item_neighbors.score IS 'Similarity (or EASE weight); larger is closer.';
COMMENT ON VIEW recsys.user_neighbors IS 'Top-k similar users of every trained user of user_knn models, one row per pair.';
COMMENT ON COLUMN recsys.user_neighbors.model_id IS 'The model version (recsys.models.id).';
COMMENT ON COLUMN recsys.user_neighbors.user_id IS 'The user.';
COMMENT ON COLUMN recsys.user_neighbors.neighbor_id IS 'One of their most similar users.';
COMMENT ON COLUMN recsys.user_neighbors.score IS 'Similarity; larger is closer.';
