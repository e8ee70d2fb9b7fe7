-- recsys.synthetic_interactions: deterministic demo data with power-law popularity
\set VERBOSITY terse

SELECT count(*) AS rows, count(DISTINCT (user_id, item_id)) AS distinct_pairs,
       count(DISTINCT user_id) AS users, min(item_id) >= 1 AND max(item_id) <= 300 AS items_in_range,
       min(rating) >= 1 AND max(rating) <= 5 AS ratings_in_range, bool_and(ts IS NOT NULL) AS has_time
FROM recsys.synthetic_interactions(200, 300, 5000, 42);
-- same seed, same rows; another seed, other rows
SELECT (SELECT md5(string_agg(format('%s %s %s %s', user_id, item_id, rating, ts), ',' ORDER BY user_id, item_id))
          FROM recsys.synthetic_interactions(50, 80, 900, 7))
     = (SELECT md5(string_agg(format('%s %s %s %s', user_id, item_id, rating, ts), ',' ORDER BY user_id, item_id))
          FROM recsys.synthetic_interactions(50, 80, 900, 7)) AS same_seed_same_rows,
       (SELECT md5(string_agg(format('%s %s', user_id, item_id), ',' ORDER BY user_id, item_id))
          FROM recsys.synthetic_interactions(50, 80, 900, 7))
     = (SELECT md5(string_agg(format('%s %s', user_id, item_id), ',' ORDER BY user_id, item_id))
          FROM recsys.synthetic_interactions(50, 80, 900, 8)) AS other_seed_same_rows;
-- power law: the 10 % most popular items hold a large share of interactions
SELECT round(sum(c) FILTER (WHERE r <= 30)::numeric / sum(c), 2) > 0.3 AS head_heavy
FROM (SELECT count(*) c, row_number() OVER (ORDER BY count(*) DESC) r
      FROM recsys.synthetic_interactions(500, 300, 15000, 3) GROUP BY item_id) s;
-- every pair at most once, so users × items is the maximum
SELECT count(*) AS dense FROM recsys.synthetic_interactions(3, 4, 12);
SELECT count(*) AS none FROM recsys.synthetic_interactions(3, 4, 0);
SELECT regress.err($$SELECT * FROM recsys.synthetic_interactions(3, 4, 13)$$);
SELECT regress.err($$SELECT * FROM recsys.synthetic_interactions(0, 4, 1)$$);
SELECT regress.err($$SELECT * FROM recsys.synthetic_interactions(3, -1, 1)$$);
SELECT regress.err($$SELECT * FROM recsys.synthetic_interactions(3, 4, -1)$$);
SELECT count(*) AS null_argument FROM recsys.synthetic_interactions(NULL, 4, 1);

-- collaborative filtering finds the planted tastes: item_knn beats popularity on held-out rows
CREATE TABLE syn AS SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts DESC) AS recency
FROM recsys.synthetic_interactions(400, 300, 12000, 11);
CREATE TABLE syn_train AS SELECT user_id, item_id FROM syn WHERE recency > 3;
CREATE TABLE syn_test AS SELECT user_id, item_id FROM syn WHERE recency <= 3;
CREATE INDEX ON syn_train (user_id);
SELECT count(*) > 0 AS trained FROM recsys.train('syn_pop', 'syn_train', 'popularity');
SELECT count(*) > 0 AS trained FROM recsys.train('syn_knn', 'syn_train', 'item_knn', '{"k": 50}');
WITH users AS (SELECT DISTINCT user_id FROM syn_test),
hits AS (
  SELECT m.model, count(t.item_id) AS hits
  FROM (VALUES ('syn_pop'), ('syn_knn')) m(model)
  CROSS JOIN users u
  CROSS JOIN LATERAL recsys.recommend(u.user_id, 10, m.model) r
  LEFT JOIN syn_test t ON t.user_id = u.user_id AND t.item_id = r.item_id
  GROUP BY m.model)
SELECT (SELECT hits FROM hits WHERE model = 'syn_knn') > 1.2 * (SELECT hits FROM hits WHERE model = 'syn_pop')
  AS knn_beats_popularity_by_20_percent;
SELECT recsys.drop_model('syn_pop'), recsys.drop_model('syn_knn');
DROP TABLE syn, syn_train, syn_test;
