-- EASE, user_knn, item_knn on ratings (KNNBaseline), neighbour tables, explain, recsys.tune.
\set VERBOSITY terse
CREATE TABLE n7 AS SELECT user_id, item_id, rating FROM recsys.synthetic_interactions(120, 50, 2400, 5);
CREATE INDEX ON n7 (user_id);

SELECT model, algorithm, users, items FROM recsys.train('ease', 'n7', 'ease', '{"lambda": 50, "neighbors": 5}');
SELECT model, algorithm, users, items FROM recsys.train('uknn', 'n7', 'user_knn', '{"k": 10}');
SELECT model, algorithm, users, items
  FROM recsys.train('pb', 'n7', 'item_knn', '{"similarity": "pearson_baseline"}', rating_column => 'rating');
SELECT name, params FROM recsys.models WHERE name IN ('ease', 'uknn', 'pb') ORDER BY name;

-- all three recommend 5 unseen items in score order
SELECT m, count(*) AS n,
       bool_and(item_id NOT IN (SELECT item_id FROM n7 WHERE user_id = 1)) AS unseen,
       bool_and(rank = rk) AS ordered
  FROM unnest(array['ease', 'uknn', 'pb']) m,
       LATERAL (SELECT *, row_number() OVER (ORDER BY score DESC, item_id) AS rk FROM recsys.recommend(1, 5, m)) x
 GROUP BY m ORDER BY m;

-- neighbour tables: EASE's largest weights per item (at most 5), user_knn's neighbours per user
SELECT m.name, count(*) > 0 AS has_rows, max(c) <= 5 AS at_most_k
  FROM recsys.models m
  JOIN LATERAL (SELECT item_id, count(*) AS c FROM recsys.item_neighbors n WHERE n.model_id = m.id GROUP BY 1) x ON true
 WHERE m.name = 'ease' AND m.deployed GROUP BY m.name;
SELECT count(DISTINCT user_id) AS users_with_neighbors, max(c) <= 10 AS at_most_k
  FROM (SELECT user_id, count(*) OVER (PARTITION BY user_id) AS c FROM recsys.user_neighbors n
          JOIN recsys.models m ON m.id = n.model_id AND m.name = 'uknn' AND m.deployed) x;
-- similar_users of user_knn are its stored neighbours
SELECT count(*) = (SELECT least(3, count(*)) FROM recsys.user_neighbors n JOIN recsys.models m
                    ON m.id = n.model_id AND m.name = 'uknn' AND m.deployed AND n.user_id = 1) AS from_table
  FROM recsys.similar_users(1, 3, 'uknn');
SELECT count(*) AS n, bool_and(item_id <> 1) AS not_self FROM recsys.similar_items(1, 3, 'ease');

-- explain: parts are the user's own items and sum to the score for EASE and user_knn
SELECT m, bool_and(own) AS own_items, abs(sum(contribution) - max(score)) < 1e-4 AS sums_to_score
  FROM unnest(array['ease', 'uknn']) m,
       LATERAL (SELECT item_id, score FROM recsys.recommend(1, 1, m)) r,
       LATERAL (SELECT contribution, because_item_id IN (SELECT item_id FROM n7 WHERE user_id = 1) AS own
                  FROM recsys.explain(1, r.item_id, m, 1000)) e
 GROUP BY m ORDER BY m;
-- pearson_baseline: explain gives the neighbours' weighted residuals
SELECT count(*) > 0 AS explained FROM recsys.explain(1, (SELECT item_id FROM recsys.recommend(1, 1, 'pb')), 'pb');

-- rating kNN predicts ratings inside the observed range, and evaluate scores RMSE/MAE
SELECT bool_and(recsys.predict(u, i, 'pb') BETWEEN 1 AND 5) AS in_range
  FROM generate_series(1, 10) u, generate_series(1, 50) i;
CREATE TABLE n7_test AS SELECT user_id, item_id, rating FROM n7 WHERE user_id <= 5;
SELECT metric FROM recsys.evaluate('pb', 'n7_test', 5) WHERE metric IN ('rmse', 'mae') ORDER BY 1;

-- real time: user_knn and EASE answer a new user from their first rows
INSERT INTO n7 SELECT 7000, item_id, rating FROM n7 WHERE user_id = 3;
SELECT m, count(*) AS n FROM unnest(array['ease', 'uknn']) m, LATERAL recsys.recommend(7000, 5, m) GROUP BY m ORDER BY m;
SELECT (SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(7000, 5, 'uknn'))
    <> (SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(424242, 5, 'uknn')) AS personalised;

-- recsys.tune: every grid point scored on a validation split, the best deployed
SELECT params, metric, best FROM recsys.tune('tuned', 'n7', 'ease', '{"lambda": [10, 100, 1000]}', 'ndcg', 5);
SELECT count(*) AS versions, bool_and(deployed) AS deployed,
       (SELECT params FROM recsys.models WHERE name = 'tuned') = (SELECT params FROM recsys.tune('tuned2', 'n7', 'ease', '{"lambda": [10, 100, 1000]}', 'ndcg', 5) WHERE best) AS same_choice
  FROM recsys.models WHERE name = 'tuned';
SELECT params->'epochs' AS epochs, metric, value > 0 AS positive
  FROM recsys.tune('mf_tuned', 'n7', 'biased_mf', '{"epochs": [2, 4], "factors": 4}', 'rmse', rating_column => 'rating')
 ORDER BY 1;

-- errors
SELECT regress.err($$SELECT * FROM recsys.tune('t', 'n7', 'ease', '{"lambda": []}')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('t', 'n7', 'ease', '[1, 2]')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('t', 'n7', 'ease', '{"lambda": [1, -5]}')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('t', 'n7', 'ease', '{}', 'auc')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('t', 'n7', 'ease', '{}', 'rmse')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('t', 'n7', 'ease', '{}', validation_fraction => 1.5)$$);
SELECT regress.err($$SELECT * FROM recsys.train('t', 'n7', 'item_knn', '{"similarity": "pearson"}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('t', 'n7', 'user_knn', '{"similarity": "pearson_baseline"}')$$);
SET recsys.max_memory_mb = 1;
CREATE TABLE wide AS SELECT g % 50 AS user_id, g AS item_id FROM generate_series(1, 2000) g;
SELECT regress.err($$SELECT * FROM recsys.train('t', 'wide', 'ease')$$);
RESET recsys.max_memory_mb;
SELECT count(*) AS nothing_written FROM recsys.models WHERE name = 't';
