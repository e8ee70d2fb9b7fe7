-- recsys.train: catalog rows, item_neighbors, params, column handling and errors
\set VERBOSITY terse

-- the catalog exists and is registered for pg_dump
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension WHERE extname = 'pg_recsys' ORDER BY 1;

-- Users 1..4, items 10..40; (4,10) twice (summed); one NULL user and one NULL item (skipped).
CREATE TABLE events (user_id int, item_id bigint, stars numeric, ts timestamptz, label text);
INSERT INTO events VALUES
  (1, 10, 5, '2024-01-01', 'a'), (1, 20, 3, '2024-01-02', 'b'),
  (2, 10, 4, '2024-01-01', 'c'), (2, 20, 5, '2024-01-03', 'd'), (2, 30, 1, '2024-01-04', 'e'),
  (3, 30, 4, '2024-01-01', 'f'), (3, 40, 2, '2024-01-02', 'g'),
  (4, 40, 5, '2024-01-01', 'h'), (4, 10, 1, '2024-01-02', 'i'), (4, 10, 1, '2024-01-05', 'j'),
  (NULL, 10, 1, '2024-01-01', 'k'), (5, NULL, 1, '2024-01-01', 'l');

SELECT model, version, algorithm, users, items, interactions, seconds >= 0 AS timed
FROM recsys.train('pop', 'events', 'popularity');
SET client_min_messages = notice;
SELECT model, version, algorithm, users, items, interactions
FROM recsys.train('knn', 'events', 'item_knn', '{"k": 2}', rating_column => 'stars', time_column => 'ts');
RESET client_min_messages;
SELECT name, version, algorithm, params, source, columns, deployed, users, items, interactions
FROM recsys.models ORDER BY id;
-- top-2 neighbours per item; (4,10) counts 1 + 1 = 2 stars
SELECT n.item_id, n.neighbor_id, round(n.score::numeric, 4) AS score
FROM recsys.item_neighbors n JOIN recsys.models m ON m.id = n.model_id
WHERE m.name = 'knn' ORDER BY 1, 3 DESC, 2;

-- retraining makes a new deployed version; the old one stays in the catalog
SELECT model, version FROM recsys.train('knn', 'events', 'item_knn', '{"similarity": "jaccard", "shrink": 1}');
SELECT name, version, deployed, params FROM recsys.models WHERE name = 'knn' ORDER BY version;

-- a view, other column names, mixed-case identifiers that need quoting
CREATE VIEW "Plays View" AS SELECT user_id AS "Who", item_id::smallint AS "What" FROM events;
SELECT model, version, users, items, interactions
FROM recsys.train('from view', '"Plays View"', 'item_knn', user_column => 'Who', item_column => 'What');
SELECT source, columns FROM recsys.models WHERE name = 'from view';

-- errors: each names the problem; nothing is written
SELECT count(*) AS versions_before FROM recsys.models;
SELECT regress.err($$SELECT recsys.train('x', 'events', 'deep_magic')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'item_knn', '{"k": 0}')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'item_knn', '{"k": "many"}')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'item_knn', '{"similarity": "euclid"}')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'item_knn', '{"neighbours": 5}')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'popularity', '{"k": 5}')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'item_knn', '[1, 2]')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', 'item_knn', '{"shrink": -1}')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', user_column => 'customer')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', item_column => 'label')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', rating_column => 'label')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', time_column => 'stars')$$);
SELECT regress.err($$SELECT recsys.train(NULL, 'events')$$);
SELECT regress.err($$SELECT recsys.train('', 'events')$$);
SELECT regress.err($$SELECT recsys.train('x', NULL)$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', NULL)$$);
SELECT regress.err($$SELECT recsys.train('x', 'no_such_table')$$);
SELECT regress.err($$SELECT recsys.train('x', 'events', items => 'events')$$);
CREATE TABLE empty_events (user_id int, item_id int);
SELECT regress.err($$SELECT recsys.train('x', 'empty_events')$$);
INSERT INTO empty_events VALUES (NULL, 1), (1, NULL);
SELECT regress.err($$SELECT recsys.train('x', 'empty_events')$$);
CREATE TABLE big AS SELECT user_id, item_id FROM recsys.synthetic_interactions(3000, 4000, 60000, 1);
SET recsys.max_memory_mb = 1;
SELECT regress.err($$SELECT recsys.train('x', 'big', 'item_knn')$$);
RESET recsys.max_memory_mb;
SELECT count(*) AS versions_after FROM recsys.models;
DROP TABLE big, empty_events;
DROP VIEW "Plays View";
SELECT recsys.drop_model(name) FROM (SELECT DISTINCT name FROM recsys.models) m;
DROP TABLE events;
