-- Factor models: svd, als, bpr, biased_mf, svdpp; factor tables, fold-in, predict, explain,
-- similar_users / similar_items, progress and cancel.
\set VERBOSITY terse
CREATE TABLE r AS SELECT user_id, item_id, rating FROM recsys.synthetic_interactions(150, 60, 3000, 11);
CREATE INDEX ON r (user_id);

SELECT model, version, algorithm, users, items FROM recsys.train('svd', 'r', 'svd', '{"factors": 8}');
SELECT model, version, algorithm, users, items FROM recsys.train('als', 'r', 'als', '{"factors": 8, "iterations": 5}');
SELECT model, version, algorithm, users, items FROM recsys.train('bpr', 'r', 'bpr', '{"factors": 8, "epochs": 5}');
SELECT model, version, algorithm, users, items
  FROM recsys.train('mf', 'r', 'biased_mf', '{"factors": 8, "epochs": 10}', rating_column => 'rating');
SELECT model, version, algorithm, users, items
  FROM recsys.train('pp', 'r', 'svdpp', '{"factors": 8, "epochs": 10}', rating_column => 'rating');
-- the effective parameters are stored, and the engine's fit time next to the total
SELECT name, params, metrics ? 'fit_seconds' AS fit_seconds FROM recsys.models WHERE name IN ('als', 'pp') ORDER BY name;

-- every model recommends 5 unseen items, ordered by score
SELECT m, count(*) AS n,
       bool_and(item_id NOT IN (SELECT item_id FROM r WHERE user_id = 1)) AS unseen,
       bool_and(rank = rk) AS ordered
  FROM unnest(array['svd', 'als', 'bpr', 'mf', 'pp']) m,
       LATERAL (SELECT *, row_number() OVER (ORDER BY score DESC, item_id) AS rk FROM recsys.recommend(1, 5, m)) x
 GROUP BY m ORDER BY m;

-- factor tables: one row per trained user and item, k floats each
SELECT m.name,
       (SELECT count(*) FROM recsys.item_factors f WHERE f.model_id = m.id) AS items,
       (SELECT count(*) FROM recsys.user_factors f WHERE f.model_id = m.id) AS users,
       (SELECT min(array_length(factors, 1)) FROM recsys.item_factors f WHERE f.model_id = m.id) AS k
  FROM recsys.models m WHERE m.deployed AND m.algorithm <> 'popularity' ORDER BY m.name;
-- for an unchanged user, user_factors · item_factors is the ALS score
SELECT abs((SELECT sum(a * b) FROM unnest(uf.factors, itf.factors) t(a, b)) - x.score) < 1e-4 AS dot_is_score
  FROM recsys.recommend(1, 1, 'als') x
  JOIN recsys.models m ON m.name = 'als' AND m.deployed
  JOIN recsys.user_factors uf ON uf.model_id = m.id AND uf.user_id = 1
  JOIN recsys.item_factors itf ON itf.model_id = m.id AND itf.item_id = x.item_id;

-- predict: ratings clipped to the observed range; NULL for unknown items or NULL input
SELECT bool_and(recsys.predict(u, i, 'mf') BETWEEN 1 AND 5) AS mf_in_range,
       bool_and(recsys.predict(u, i, 'pp') BETWEEN 1 AND 5) AS pp_in_range
  FROM generate_series(1, 20) u, generate_series(1, 60) i;
SELECT recsys.predict(1, 424242, 'mf') IS NULL AS unknown_item,
       recsys.predict(NULL, 1, 'mf') IS NULL AS null_user,
       recsys.predict(424242, 1, 'als') IS NULL AS unknown_user_implicit,
       recsys.predict(424242, 1, 'mf') BETWEEN 1 AND 5 AS unknown_user_gets_baseline;
-- predict agrees with recommend's score
SELECT abs(recsys.predict(1, x.item_id, 'als') - x.score) < 1e-6 AS agrees FROM recsys.recommend(1, 1, 'als') x;

-- explain: the user's own items, largest first; for svd they sum to the score
SELECT bool_and(because_item_id IN (SELECT item_id FROM r WHERE user_id = 1)) AS own_items,
       count(*) <= 3 AS at_most_n
  FROM recsys.explain(1, (SELECT item_id FROM recsys.recommend(1, 1, 'als')), 'als', 3);
SELECT abs(sum(contribution) - (SELECT score FROM recsys.recommend(1, 1, 'svd'))) < 1e-3 AS sums_to_score
  FROM recsys.explain(1, (SELECT item_id FROM recsys.recommend(1, 1, 'svd')), 'svd', 1000);
SELECT count(*) AS unknown_item_explained FROM recsys.explain(1, 424242, 'als');

-- similar users and items by factor cosine: n rows, never the user or item itself
SELECT count(*) AS n, bool_and(user_id <> 1) AS not_self, max(score) <= 1.0001 AS cosine
  FROM recsys.similar_users(1, 5, 'bpr');
SELECT count(*) AS n, bool_and(item_id <> 1) AS not_self FROM recsys.similar_items(1, 5, 'svd');
SELECT count(*) AS unknown_user FROM recsys.similar_users(424242, 5, 'als');

-- real time: a new user (no rows yet) gets the popularity answer, then a folded-in answer after
-- their first rows, without retraining (same version)
CREATE TEMP TABLE before AS SELECT item_id, rank FROM recsys.recommend(9000, 5, 'als');
INSERT INTO r SELECT 9000, item_id, 5 FROM r WHERE user_id = 2;
SELECT count(*) AS changed FROM (SELECT item_id, rank FROM recsys.recommend(9000, 5, 'als')
                                 EXCEPT SELECT * FROM before) d;
SELECT bool_and(item_id NOT IN (SELECT item_id FROM r WHERE user_id = 9000)) AS unseen
  FROM recsys.recommend(9000, 5, 'als');
SELECT recsys.predict(9000, 1, 'mf') BETWEEN 1 AND 5 AS folded_in_rating;
SELECT version FROM recsys.models WHERE name = 'als' AND deployed;

-- evaluate scores a rating model's RMSE and MAE on the test table's ratings too, and agrees
-- with recsys.predict (the training mean standing in where predict is NULL)
CREATE TABLE r_test AS SELECT 1 AS user_id, 7 AS item_id, 4.0::real AS rating
  UNION ALL SELECT 2, 9, 2.0 UNION ALL SELECT 3, 424242, 3.0 UNION ALL SELECT 424242, 5, 5.0;
CREATE TEMP TABLE ev AS SELECT * FROM recsys.evaluate('mf', 'r_test', 5);
SELECT metric FROM ev WHERE metric IN ('rmse', 'mae', 'ratings') ORDER BY metric;
SELECT abs((SELECT value FROM ev WHERE metric = 'rmse')
           - sqrt(avg((coalesce(recsys.predict(t.user_id, t.item_id, 'mf'), (SELECT avg(rating) FROM r)) - t.rating) ^ 2))) < 1e-5 AS rmse_agrees,
       (SELECT value FROM ev WHERE metric = 'ratings') AS ratings
  FROM r_test t;

-- errors
SELECT regress.err($$SELECT * FROM recsys.train('x', 'r', 'biased_mf')$$);
SELECT regress.err($$SELECT * FROM recsys.train('x', 'r', 'als', '{"factors": 0}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('x', 'r', 'bpr', '{"iterations": 5}')$$);
SELECT model FROM recsys.train('knn', 'r', 'item_knn');
SELECT model FROM recsys.train('pop', 'r', 'popularity');
SELECT regress.err($$SELECT * FROM recsys.similar_users(1, 5, 'knn')$$);
-- popularity does not depend on the user: no history item explains it
SELECT count(*) AS pop_explained FROM recsys.explain(1, 2, 'pop');
SELECT regress.err($$SELECT * FROM recsys.explain(1, 2, 'als', 0)$$);
SELECT regress.err($$SELECT recsys.predict(1, 2, 'nope')$$);
-- item_knn explains too: weight × similarity of the user's items
SELECT bool_and(contribution > 0) AS positive FROM recsys.explain(1, (SELECT item_id FROM recsys.recommend(1, 1, 'knn')), 'knn');

-- cancel: statement_timeout stops a long training within an iteration; the deployed
-- version keeps serving
CREATE TABLE big AS SELECT user_id, item_id FROM recsys.synthetic_interactions(3000, 400, 60000, 3);
SET statement_timeout = '300ms';
-- (query_canceled is not caught by plpgsql's WHEN OTHERS, so this is a plain ERROR line)
SELECT version FROM recsys.train('als', 'big', 'als', '{"iterations": 10000}');
RESET statement_timeout;
SELECT version FROM recsys.models WHERE name = 'als' AND deployed;
SELECT count(*) AS still_serving FROM recsys.recommend(1, 5, 'als');
