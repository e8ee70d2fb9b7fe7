-- What a new user meets first: train's seconds is the whole call, predict is NULL for a user a
-- model cannot place, user_knn pearson needs ratings, split prints no NOTICEs, reasons name items
-- by an items table's text for any model, recsys.algorithms lists what train accepts, and every
-- object has a comment.
CREATE TABLE fh AS SELECT user_id, item_id, rating FROM recsys.synthetic_interactions(200, 100, 3000, 11);
CREATE TABLE fh_items AS SELECT i AS item_id, 'film number ' || i AS title FROM generate_series(1, 100) i;
SELECT model, algorithm FROM recsys.train('fh_knn', 'fh', 'item_knn', items => 'fh_items', item_text => 'title');
SELECT seconds >= (metrics->>'read_seconds')::float8 + (metrics->>'fit_seconds')::float8
                   + (metrics->>'write_seconds')::float8 AS seconds_is_the_whole_call
  FROM recsys.models WHERE name = 'fh_knn';
-- reasons use the items table's text, for a model that does not encode text
SELECT count(*) AS reasons_with_titles FROM recsys.recommend(1, 5, 'fh_knn', with_reasons => true) WHERE reason LIKE '%"film number %';
SELECT regress.err($$SELECT recsys.train('fh_x', 'fh', 'item_knn', items => 'fh_items')$$);
SELECT regress.err($$SELECT recsys.train('fh_x', 'fh', 'user_knn', '{"similarity": "pearson"}')$$);
SELECT model FROM recsys.train('fh_up', 'fh', 'user_knn', '{"similarity": "pearson"}', rating_column => 'rating');
-- a user with no rows: NULL from every model that places users by their rows
SELECT model FROM recsys.train('fh_pop', 'fh', 'popularity');
SELECT model FROM recsys.train('fh_ease', 'fh', 'ease');
SELECT model FROM recsys.train('fh_uknn', 'fh', 'user_knn');
SELECT model FROM recsys.train('fh_hyb', 'fh', 'hybrid', '{"members": [{"algorithm": "item_knn"}, {"algorithm": "ease"}]}');
SELECT model FROM recsys.train('fh_als', 'fh', 'als', '{"iterations": 2}');
SELECT m, recsys.predict(999999, 5, m) AS no_rows, recsys.predict(1, 5, m) IS NOT NULL AS known_user
  FROM unnest(ARRAY['fh_knn', 'fh_pop', 'fh_ease', 'fh_uknn', 'fh_hyb', 'fh_als']) m;
-- split says nothing it does not mean
SET client_min_messages = notice;
SELECT split, rows > 0 AS has_rows FROM recsys.split('fh', 'fh_train', 'fh_test');
RESET client_min_messages;
-- the algorithms, from the engine's own parsing code
SELECT name, family, needs_ratings, needs_time, needs_item_text, neural, jsonb_array_length(params) AS params
  FROM recsys.algorithms ORDER BY name;
SELECT jsonb_pretty(params) FROM recsys.algorithms WHERE name = 'ease';
-- every function, table, view and column of the schema has a comment
SELECT count(*) AS functions_without_comment FROM pg_proc
 WHERE pronamespace = 'recsys'::regnamespace AND obj_description(oid, 'pg_proc') IS NULL;
SELECT count(*) AS relations_without_comment FROM pg_class
 WHERE relnamespace = 'recsys'::regnamespace AND relkind IN ('r', 'v') AND obj_description(oid, 'pg_class') IS NULL;
SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'recsys'::regnamespace AND c.relkind IN ('r', 'v') AND col_description(c.oid, a.attnum) IS NULL;
