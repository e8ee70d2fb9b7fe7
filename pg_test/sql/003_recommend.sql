-- recsys.recommend, similar_items, deploy, drop_model and the default model
\set VERBOSITY terse

-- no model yet
SELECT regress.err($$SELECT * FROM recsys.recommend(1)$$);

-- Items 10..60: 10 and 20 always together, 50 most popular, 60 only with 50.
CREATE TABLE likes (user_id bigint, item_id int);
INSERT INTO likes VALUES (1, 10), (1, 20), (2, 10), (2, 20), (2, 50), (3, 30), (3, 50),
                         (4, 50), (4, 40), (5, 50), (5, 60), (6, 20);
CREATE INDEX ON likes (user_id);
SELECT model, version FROM recsys.train('pop', 'likes', 'popularity');
SELECT model, version FROM recsys.train('knn', 'likes', 'item_knn');

-- popularity: distinct users per item, ties by item id
SELECT * FROM recsys.recommend(99, 3, 'pop');
-- item_knn from the live history of user 6 ({20}); unreachable items follow with score 0
SELECT item_id, round(score::numeric, 4) AS score, rank FROM recsys.recommend(6, 10, 'knn');
-- seen items are excluded unless asked; candidates restrict and still fill to n
SELECT item_id, rank FROM recsys.recommend(1, 3, 'knn', exclude_seen => false);
SELECT item_id, rank FROM recsys.recommend(1, 10, 'knn', candidates => '{60, 40, 10, 999, NULL}');
SELECT count(*) AS all_eligible FROM recsys.recommend(1, 2147483647, 'knn');
-- unknown user: popularity; NULL user: no rows
SELECT item_id, rank FROM recsys.recommend(424242, 3, 'knn');
SELECT count(*) AS null_user FROM recsys.recommend(NULL, 3, 'knn');

-- real time: a new like changes the answer without retraining
SELECT string_agg(item_id::text, ',' ORDER BY rank) AS before FROM recsys.recommend(7, 3, 'knn');
INSERT INTO likes VALUES (7, 60);
SELECT string_agg(item_id::text, ',' ORDER BY rank) AS after FROM recsys.recommend(7, 3, 'knn');

-- similar items
SELECT item_id, round(score::numeric, 4) AS score FROM recsys.similar_items(10, 3, 'knn');
SELECT count(*) AS unknown_item FROM recsys.similar_items(12345, 3, 'knn');
SELECT regress.err($$SELECT * FROM recsys.similar_items(10, 3, 'pop')$$);

-- model resolution: several deployed, then recsys.default_model
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 3)$$);
SET recsys.default_model = 'pop';
SELECT item_id, rank FROM recsys.recommend(99, 2);
RESET recsys.default_model;

-- versions: retrain, deploy the old one back
SELECT model, version FROM recsys.train('knn', 'likes', 'popularity');
SELECT item_id, rank FROM recsys.recommend(6, 2, 'knn');
SELECT recsys.deploy('knn', 1);
SELECT version, algorithm, deployed FROM recsys.models WHERE name = 'knn' ORDER BY version;
SELECT item_id, rank FROM recsys.recommend(6, 2, 'knn');

-- errors
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 0, 'knn')$$);
SELECT regress.err($$SELECT * FROM recsys.recommend(1, -5, 'knn')$$);
SELECT regress.err($$SELECT * FROM recsys.recommend(1, NULL, 'knn')$$);
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 3, 'knn', exclude_seen => NULL)$$);
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 3, 'nope')$$);
SELECT regress.err($$SELECT * FROM recsys.similar_items(10, 0, 'knn')$$);
SELECT regress.err($$SELECT recsys.deploy('knn', 7)$$);
SELECT regress.err($$SELECT recsys.deploy('nope', 1)$$);
SELECT regress.err($$SELECT recsys.drop_model('nope')$$);
SELECT recsys.drop_model('nope', if_exists => true);

-- a model whose source table is gone
CREATE TABLE tmp_likes AS SELECT * FROM likes;
SELECT model FROM recsys.train('gone', 'tmp_likes', 'popularity');
DROP TABLE tmp_likes;
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 3, 'gone')$$);

-- dropping removes every version and its rows
SELECT recsys.drop_model('knn');
SELECT regress.err($$SELECT * FROM recsys.recommend(1, 3, 'knn')$$);
SELECT count(*) AS neighbor_rows_left FROM recsys.item_neighbors;
SELECT recsys.drop_model('pop');
SELECT recsys.drop_model('gone');
SELECT count(*) AS models_left FROM recsys.models;
DROP TABLE likes;
