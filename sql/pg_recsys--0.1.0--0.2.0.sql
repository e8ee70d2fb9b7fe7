-- pg_recsys 0.1.0 -> 0.2.0: models belong to roles. Also the tail of a fresh 0.2.0 install (lib.rs
-- includes this file), so an upgraded catalog and a fresh one are the same.
--
-- PUBLIC may SELECT the catalog, row by row: a role sees the models owned by roles whose
-- privileges it has (itself, roles it inherits; superusers see all), and the neighbour, factor
-- and blob rows of those models. Nobody but the owner of the catalog writes it; pg_recsys's
-- functions do, after checking that the caller may manage the model's name.

ALTER TABLE recsys.models ENABLE ROW LEVEL SECURITY;
-- to_regrole is NULL for a role that no longer exists (then only superusers see the row); it is
-- a cache lookup, so the policy stays cheap on the recommend path.
CREATE POLICY models_of_my_roles ON recsys.models FOR SELECT USING (
    pg_catalog.pg_has_role(pg_catalog.to_regrole(pg_catalog.quote_ident(owner::text)), 'USAGE'));

ALTER TABLE recsys.item_neighbors ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.item_neighbors FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));
ALTER TABLE recsys.user_neighbors ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.user_neighbors FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));
ALTER TABLE recsys.item_factors ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.item_factors FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));
ALTER TABLE recsys.user_factors ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.user_factors FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));
ALTER TABLE recsys.model_blobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_models ON recsys.model_blobs FOR SELECT
    USING (EXISTS (SELECT FROM recsys.models m WHERE m.id = model_id));

REVOKE ALL ON recsys.models, recsys.item_neighbors, recsys.user_neighbors, recsys.item_factors,
    recsys.user_factors, recsys.model_blobs, recsys.models_id_seq FROM PUBLIC;
GRANT SELECT ON recsys.models, recsys.item_neighbors, recsys.user_neighbors, recsys.item_factors,
    recsys.user_factors, recsys.model_blobs TO PUBLIC;
