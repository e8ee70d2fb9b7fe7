-- Operations (0.6.0): read-only transactions (every transaction of a hot standby) serve but do
-- not train; evaluate answers without storing; deleting a version removes its neighbour and
-- factor rows (a trigger, since the foreign keys are gone for the write phase's sake); the
-- jobs and progress views and train_async's checks.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE TABLE ops AS SELECT user_id, item_id FROM recsys.synthetic_interactions(80, 40, 1200, 3);
CREATE TABLE ops_test AS SELECT user_id, item_id FROM recsys.synthetic_interactions(80, 40, 200, 4);
SELECT model, version FROM recsys.train('ops_knn', 'ops', 'item_knn', '{"k": 5}');
SELECT model, version FROM recsys.train('ops_als', 'ops', 'als', '{"factors": 4, "iterations": 2}');

BEGIN READ ONLY;
SELECT count(*) AS served FROM recsys.recommend(3, 5, 'ops_knn');
SELECT count(*) AS metrics FROM recsys.evaluate('ops_knn', 'ops_test');
SELECT regress.err($$SELECT * FROM recsys.train('ops_knn', 'ops', 'item_knn')$$);
SELECT regress.err($$SELECT recsys.train_async('ops_knn', 'ops', 'item_knn')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('ops_knn', 'ops', 'item_knn', '{"k": [5, 10]}')$$);
ROLLBACK;
-- evaluate in a read-only transaction stored nothing
SELECT metrics ? 'ndcg@10' AS stored FROM recsys.models WHERE name = 'ops_knn';

-- neighbour tables (0.7.0): one row per item (user) with its neighbours best first, read as pairs
-- through the views; the pairs are what similar_items / similar_users answer, in their order
SELECT model, version FROM recsys.train('ops_users', 'ops', 'user_knn', '{"k": 4}');
SELECT (SELECT count(*) FROM recsys.item_neighbor_lists l JOIN recsys.models m ON m.id = l.model_id WHERE m.name = 'ops_knn')
     = (SELECT count(DISTINCT item_id) FROM ops) AS one_row_per_item,
       (SELECT bool_and(cardinality(neighbor_ids) = cardinality(scores) AND cardinality(neighbor_ids) BETWEEN 1 AND 5)
          FROM recsys.item_neighbor_lists) AS arrays_match;
SELECT count(*) AS items_differing FROM (SELECT DISTINCT item_id FROM ops) i
 WHERE (SELECT array_agg(s.item_id ORDER BY s.o) FROM recsys.similar_items(i.item_id, 5, 'ops_knn') WITH ORDINALITY s(item_id, score, o))
       IS DISTINCT FROM (SELECT array_agg(n.neighbor_id) FROM recsys.item_neighbors n
                           JOIN recsys.models m ON m.id = n.model_id AND m.name = 'ops_knn' WHERE n.item_id = i.item_id);
SELECT count(*) AS users_differing FROM (SELECT DISTINCT user_id FROM ops) u
 WHERE (SELECT array_agg(s.user_id ORDER BY s.o) FROM recsys.similar_users(u.user_id, 4, 'ops_users') WITH ORDINALITY s(user_id, score, o))
       IS DISTINCT FROM (SELECT array_agg(n.neighbor_id) FROM recsys.user_neighbors n
                           JOIN recsys.models m ON m.id = n.model_id AND m.name = 'ops_users' WHERE n.user_id = u.user_id);
SELECT recsys.drop_model('ops_users');
SELECT count(*) AS orphan_user_lists FROM recsys.user_neighbor_lists l WHERE NOT EXISTS (SELECT FROM recsys.models m WHERE m.id = l.model_id);

-- dropping versions removes their rows
SELECT (SELECT count(*) > 0 FROM recsys.item_neighbors) AS neighbours, (SELECT count(*) > 0 FROM recsys.item_factors) AS factors;
SELECT recsys.drop_model('ops_knn');
SELECT recsys.drop_model('ops_als');
SELECT (SELECT count(*) FROM recsys.item_neighbors n WHERE NOT EXISTS (SELECT FROM recsys.models m WHERE m.id = n.model_id)) AS orphan_neighbours,
       (SELECT count(*) FROM recsys.item_factors f WHERE NOT EXISTS (SELECT FROM recsys.models m WHERE m.id = f.model_id)) AS orphan_item_factors,
       (SELECT count(*) FROM recsys.user_factors f WHERE NOT EXISTS (SELECT FROM recsys.models m WHERE m.id = f.model_id)) AS orphan_user_factors;

-- train_async checks its request before queueing anything
SELECT regress.err($$SELECT recsys.train_async('x', 'ops', 'als', '{"factors": 0}')$$);
SELECT regress.err($$SELECT recsys.train_async('x', 'ops', 'sequential')$$);
SELECT regress.err($$SELECT recsys.train_async('x', 'ops', 'nope')$$);
SELECT regress.err($$SELECT recsys.train_async(NULL, 'ops', 'item_knn')$$);
SELECT regress.err($$SELECT recsys.cancel_job(123456789)$$);
SELECT count(*) AS jobs FROM recsys.job_runs;
-- the views' columns
SELECT column_name FROM information_schema.columns WHERE table_schema = 'recsys' AND table_name = 'jobs' ORDER BY ordinal_position;
SELECT column_name FROM information_schema.columns WHERE table_schema = 'recsys' AND table_name = 'progress' ORDER BY ordinal_position;
SELECT count(*) AS in_progress FROM recsys.progress;
SELECT name, setting, context FROM pg_settings WHERE name = 'recsys.max_jobs';
