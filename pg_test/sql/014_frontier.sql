-- rp3beta and slim (neighbour tables, explained exactly, served from the live history),
-- diversity (MMR), dislikes, count weighting, a per-user filter ($1), tune's random search,
-- successive halving and 'auto', and content similar_items for an item added after training.
\set VERBOSITY terse
-- (training and tuning NOTICEs carry times)
SET client_min_messages = warning;
CREATE TABLE f14 AS SELECT user_id, item_id, rating FROM recsys.synthetic_interactions(120, 50, 2400, 7);
CREATE INDEX ON f14 (user_id);
SELECT model, algorithm, users, items FROM recsys.train('rp3', 'f14', 'rp3beta', '{"k": 10}');
SELECT model, algorithm, users, items FROM recsys.train('slim', 'f14', 'slim', '{"k": 10, "alpha": 0.05}');
SELECT name, params FROM recsys.models WHERE name IN ('rp3', 'slim') ORDER BY name;
SELECT regress.err($$SELECT * FROM recsys.train('x', 'f14', 'rp3beta', '{"beta": -1}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('x', 'f14', 'slim', '{"l1_ratio": 2}')$$);
-- ease with dropout is DLAE: another model than plain EASE at the same lambda, its parts still
-- summing to the score; dropout is a rate below 1
SELECT model, algorithm FROM recsys.train('ease_f14', 'f14', 'ease', '{"lambda": 20}');
SELECT model, algorithm FROM recsys.train('dlae_f14', 'f14', 'ease', '{"lambda": 20, "dropout": 0.5}');
SELECT (SELECT params->>'dropout' FROM recsys.models WHERE name = 'dlae_f14') AS dropout,
       (SELECT array_agg(item_id || ':' || round(score::numeric, 4) ORDER BY rank) FROM recsys.recommend(1, 5, 'dlae_f14'))
         IS DISTINCT FROM (SELECT array_agg(item_id || ':' || round(score::numeric, 4) ORDER BY rank) FROM recsys.recommend(1, 5, 'ease_f14')) AS differs,
       abs((SELECT sum(contribution) FROM recsys.explain(1, r.item_id, 'dlae_f14', 1000)) - r.score) < 1e-5 AS parts_sum_to_score
  FROM recsys.recommend(1, 1, 'dlae_f14') r;
SELECT regress.err($$SELECT * FROM recsys.train('x', 'f14', 'ease', '{"dropout": 1}')$$);

-- neighbour tables: at most k per item (rp3beta), slim's weights positive and never an item itself
SELECT m.name, count(*) > 0 AS has_rows, bool_and(n.score > 0) AS positive, bool_and(n.item_id <> n.neighbor_id) AS no_diagonal
  FROM recsys.models m JOIN recsys.item_neighbors n ON n.model_id = m.id
 WHERE m.name IN ('rp3', 'slim') AND m.deployed GROUP BY m.name ORDER BY 1;
SELECT max(c) <= 10 AS at_most_k FROM (SELECT count(*) AS c FROM recsys.item_neighbors n JOIN recsys.models m
    ON m.id = n.model_id AND m.name = 'rp3' AND m.deployed GROUP BY n.item_id) x;
-- 5 unseen items in score order; explain's parts sum to the score exactly
SELECT m, count(*) AS n, bool_and(item_id NOT IN (SELECT item_id FROM f14 WHERE user_id = 1)) AS unseen,
       bool_and(rank = rk) AS ordered
  FROM unnest(array['rp3', 'slim']) m,
       LATERAL (SELECT *, row_number() OVER (ORDER BY score DESC, item_id) AS rk FROM recsys.recommend(1, 5, m)) x
 GROUP BY m ORDER BY m;
SELECT m, abs((SELECT sum(contribution) FROM recsys.explain(1, r.item_id, m, 1000)) - r.score) < 1e-5 AS parts_sum_to_score
  FROM unnest(array['rp3', 'slim']) m, LATERAL recsys.recommend(1, 1, m) r ORDER BY m;
-- served from the live history: a new row changes the answer without retraining
CREATE TABLE f14_live AS SELECT * FROM f14;
SELECT recsys.train('rp3_live', 'f14_live', 'rp3beta', '{"k": 10}') IS NOT NULL AS trained;
CREATE TEMP TABLE before AS SELECT item_id FROM recsys.recommend(1, 5, 'rp3_live');
INSERT INTO f14_live SELECT 1, item_id, 1 FROM before;
SELECT count(*) FILTER (WHERE item_id IN (SELECT item_id FROM before)) AS old_items_left FROM recsys.recommend(1, 5, 'rp3_live');

-- diversity: λ = 0 is the plain ranking; λ > 0 lowers the list's similarity by the model's own
-- neighbours (summed over pairs), and every list keeps n items ranked 1..n
CREATE FUNCTION pg_temp.ils(m text, l float8) RETURNS float8 LANGUAGE sql AS $$
  SELECT coalesce(sum(n.score), 0)::float8 FROM recsys.recommend(1, 8, m, diversity => l) a
    JOIN recsys.recommend(1, 8, m, diversity => l) b ON a.item_id < b.item_id
    JOIN recsys.item_neighbors n ON n.model_id = (SELECT id FROM recsys.models WHERE name = m AND deployed)
     AND ((n.item_id = a.item_id AND n.neighbor_id = b.item_id) OR (n.item_id = b.item_id AND n.neighbor_id = a.item_id)) $$;
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM recsys.recommend(1, 8, 'rp3')) AS zero_is_plain
  FROM recsys.recommend(1, 8, 'rp3', diversity => 0);
SELECT m, pg_temp.ils(m, 0.7) < pg_temp.ils(m, 0) AS less_similar,
       (SELECT array_agg(rank ORDER BY rank) FROM recsys.recommend(1, 8, m, diversity => 0.7)) AS ranks
  FROM unnest(array['rp3', 'slim']) m ORDER BY m;
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 5, 'rp3', diversity => 1.5)$$);
SELECT recsys.train('uk14', 'f14', 'user_knn') IS NOT NULL AS trained;
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 5, 'uk14', diversity => 0.3)$$);

-- dislikes: a negative value is never recommended back (even with seen items allowed); ALS
-- learns from it (negative confidence) and item models train on the other rows
CREATE TABLE likes (user_id int, item_id int, v real);
INSERT INTO likes SELECT user_id, item_id, 1 FROM f14;
SELECT recsys.train('als_l', 'likes', 'als', '{"factors": 8}', rating_column => 'v') IS NOT NULL AS trained;
CREATE TEMP TABLE top1 AS SELECT item_id FROM recsys.recommend(1, 1, 'als_l', exclude_seen => false);
INSERT INTO likes SELECT 1, item_id, -3 FROM top1;
SELECT count(*) AS disliked_recommended FROM recsys.recommend(1, 50, 'als_l', exclude_seen => false) WHERE item_id IN (SELECT item_id FROM top1);
SELECT recsys.train('als_l', 'likes', 'als', '{"factors": 8}', rating_column => 'v') IS NOT NULL AS retrained_with_a_dislike;
SELECT recsys.train('slim_l', 'likes', 'slim', '{"k": 10, "alpha": 0.05}', rating_column => 'v') IS NOT NULL AS slim_trained;
SELECT count(*) AS disliked_recommended FROM recsys.recommend(1, 50, 'slim_l', exclude_seen => false) WHERE item_id IN (SELECT item_id FROM top1);

-- counts: weighting auto is log2(1 + count) when a value exceeds 1; bm25 and tfidf on request;
-- rating models take none
CREATE TABLE plays (user_id int, item_id int, n real);
INSERT INTO plays SELECT user_id, item_id, 1 + (user_id * 7 + item_id * 13) % 3000 FROM f14;
SELECT w, recsys.train('plays_' || w, 'plays', 'item_knn', jsonb_build_object('weighting', w), rating_column => 'n') IS NOT NULL AS trained,
       (SELECT count(*) FROM recsys.recommend(1, 5, 'plays_' || w)) AS n
  FROM unnest(array['auto', 'log', 'bm25', 'tfidf', 'none']) w;
SELECT name, params->>'weighting' AS weighting FROM recsys.models WHERE name LIKE 'plays_%' ORDER BY name;
SELECT regress.err($$SELECT * FROM recsys.train('x', 'plays', 'biased_mf', '{"weighting": "log"}', rating_column => 'n')$$);
SELECT regress.err($$SELECT * FROM recsys.train('x', 'plays', 'item_knn', '{"weighting": "sqrt"}')$$);

-- a filter may name the user being served as $1 (a bigint)
CREATE TABLE f14_items AS SELECT DISTINCT item_id FROM f14;
CREATE TABLE shown (user_id bigint, item_id bigint);
INSERT INTO shown SELECT 1, item_id FROM recsys.recommend(1, 3, 'rp3');
SELECT count(*) AS shown_again FROM recsys.recommend(1, 5, 'rp3', filter => 'item_id NOT IN (SELECT item_id FROM shown WHERE user_id = $1)', items => 'f14_items')
 WHERE item_id IN (SELECT item_id FROM shown);
SELECT (SELECT array_agg(item_id ORDER BY rank) FROM recsys.recommend(2, 5, 'rp3', filter => 'item_id NOT IN (SELECT item_id FROM shown WHERE user_id = $1)', items => 'f14_items'))
     = (SELECT array_agg(item_id ORDER BY rank) FROM recsys.recommend(2, 5, 'rp3')) AS other_users_unaffected;

-- tune: random points of ranges, successive halving, budgets; 'auto' over the portfolio
SELECT count(*) AS trials, count(*) FILTER (WHERE best) AS best, bool_and((params->>'lambda')::float8 BETWEEN 10 AND 1000) AS in_range
  FROM recsys.tune('t_rand', 'f14', 'ease', '{"lambda": {"min": 10, "max": 1000, "log": true}}', search => 'random', trials => 3);
SELECT array_agg(users_share ORDER BY users_share) AS shares, count(*) FILTER (WHERE best) AS best
  FROM (SELECT round(users_share::numeric, 3) AS users_share, best
          FROM recsys.tune('t_half', 'f14', 'slim', '{"alpha": {"min": 0.01, "max": 0.5, "log": true}, "k": 10}', search => 'halving', trials => 9)) x;
SELECT count(*) AS trials FROM recsys.tune('t_budget', 'f14', 'ease', '{"lambda": {"min": 10, "max": 1000}}', search => 'random', trials => 50, time_budget => 0.001);
SELECT array_agg(DISTINCT algorithm ORDER BY algorithm) AS tried, count(*) FILTER (WHERE best) AS best
  FROM recsys.tune('t_auto', 'f14', 'auto', trials => 6);
SELECT m.params = (SELECT l->'params' FROM jsonb_array_elements(metrics->'leaderboard') l WHERE l ? 'ndcg@10_mean'
                   ORDER BY (l->>'ndcg@10_mean')::float8 DESC LIMIT 1) AS deployed_the_best_mean,
       (SELECT count(*) FROM jsonb_array_elements(metrics->'leaderboard') l WHERE (l->>'holdouts')::int = 4) AS finalists,
       jsonb_array_length(metrics->'leaderboard') AS candidates, metrics->>'tuned_on' AS tuned_on
  FROM recsys.models m WHERE name = 't_auto' AND deployed;
SELECT regress.err($$SELECT * FROM recsys.tune('x', 'f14', 'ease', '{"lambda": {"min": 10, "max": 1000}}')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('x', 'f14', 'auto', '{"lambda": [1]}')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('x', 'f14', 'ease', search => 'bayes')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('x', 'f14', 'ease', '{"lambda": {"min": 0, "max": 10, "log": true}}', search => 'random')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('x', 'f14', 'ease', search => 'random', trials => 0)$$);

-- content: similar_items of an item added to the items table after training, from its text
CREATE TABLE s_items (item_id int PRIMARY KEY, title text);
INSERT INTO s_items VALUES (1, 'space adventure'), (2, 'space horror'), (3, 'romantic comedy'), (4, 'fantasy adventure');
CREATE TABLE s_plays (user_id int, item_id int);
INSERT INTO s_plays VALUES (1, 1), (1, 2), (2, 3), (2, 4), (3, 1);
SELECT recsys.train('s', 's_plays', 'content', items => 's_items', item_text => 'title') IS NOT NULL AS trained;
INSERT INTO s_items VALUES (9, 'space opera adventure');
SELECT item_id, round(score::numeric, 4) AS score FROM recsys.similar_items(9, 3, 's');
SELECT count(*) AS unknown_item FROM recsys.similar_items(99, 3, 's');
