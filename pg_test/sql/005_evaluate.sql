-- recsys.split and recsys.evaluate
\set VERBOSITY terse

-- 6 users × 5 items with times; user 6 has 2 rows (stays in train for random/temporal)
CREATE TABLE ev (user_id int, item_id int, stars real, ts timestamptz, note text);
INSERT INTO ev SELECT u, i, (u + i) % 5 + 1, timestamptz '2024-01-01' + (u * 10 + i) * interval '1 hour', 'u' || u
FROM generate_series(1, 5) u, generate_series(1, 5) i;
INSERT INTO ev VALUES (6, 1, 5, '2024-02-01', 'u6'), (6, 2, 4, '2024-02-02', 'u6'), (NULL, 3, 1, '2024-02-03', 'null user');

-- random: round-half-up(0.4 × 5) = 2 rows per user with 5; the NULL-user row stays in train
SELECT * FROM recsys.split('ev', 'ev_train', 'ev_test', 'random', 0.4, 7);
SELECT user_id, count(*) FROM ev_test GROUP BY 1 ORDER BY 1;
SELECT (SELECT count(*) FROM ev_train) + (SELECT count(*) FROM ev_test) = (SELECT count(*) FROM ev) AS nothing_lost;
-- the tables have the source's columns
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'ev_test'::regclass AND attnum > 0 ORDER BY attnum;
-- same seed, same split
SELECT * FROM recsys.split('ev', 'ev_train2', 'ev_test2', 'random', 0.4, 7);
SELECT count(*) AS differences FROM ((TABLE ev_test EXCEPT TABLE ev_test2) UNION ALL (TABLE ev_test2 EXCEPT TABLE ev_test)) d;
DROP TABLE ev_train2, ev_test2;

-- temporal: the latest rows of each user
SELECT * FROM recsys.split('ev', 'tr_t', 'te_t', 'temporal', 0.4, time_column => 'ts');
SELECT user_id, string_agg(item_id::text, ',' ORDER BY item_id) FROM te_t GROUP BY 1 ORDER BY 1;
-- leave-one-out: the latest row per user with at least 2
SELECT * FROM recsys.split('ev', 'tr_l', 'te_l', 'leave_one_out', time_column => 'ts');
SELECT user_id, item_id FROM te_l ORDER BY 1;
-- global cut-off
SELECT * FROM recsys.split('ev', 'tr_g', 'te_g', 'global_temporal', time_column => 'ts', cutoff => '2024-02-01');
SELECT user_id, item_id FROM te_g ORDER BY 1, 2;
DROP TABLE tr_t, te_t, tr_l, te_l, tr_g, te_g;

-- split errors: nothing is created
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'b', 'kfold')$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'b', 'random', 0)$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'b', 'random', 1.5)$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'b', 'temporal')$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'ev_train', 'b')$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'ev_test')$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'a')$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', NULL, 'b')$$);
SELECT regress.err($$SELECT * FROM recsys.split('ev', 'a', 'b', time_column => 'note')$$);
SELECT to_regclass('a') IS NULL AND to_regclass('b') IS NULL AS nothing_created;

-- evaluate: popularity on the random split, by hand. Train popularity: every item has 5 or 6
-- users; each test user gets the items they lack in train, in popularity order.
CREATE INDEX ON ev_train (user_id);
SELECT model FROM recsys.train('ev_pop', 'ev_train', 'popularity');
SELECT metric, round(value::numeric, 6) FROM recsys.evaluate('ev_pop', 'ev_test', 3);
SELECT metrics - 'engine_seconds' - 'fit_seconds' - 'read_seconds' - 'write_seconds' - 'peak_rss_mb' AS stored FROM recsys.models WHERE name = 'ev_pop';
-- training's own figures: read, fit and write seconds, the backend's peak resident memory
SELECT metrics ?& ARRAY['fit_seconds', 'read_seconds', 'write_seconds', 'peak_rss_mb'] AS timings,
       (metrics->>'peak_rss_mb')::float8 > 1 AS rss_measured FROM recsys.models WHERE name = 'ev_pop';
SELECT model FROM recsys.train('ev_knn', 'ev_train', 'item_knn');
SELECT metric, round(value::numeric, 6) FROM recsys.evaluate('ev_knn', 'ev_test', 5);

-- evaluate errors
SELECT regress.err($$SELECT * FROM recsys.evaluate('ev_pop', 'ev_test', 0)$$);
SELECT regress.err($$SELECT * FROM recsys.evaluate('ev_pop', NULL)$$);
SELECT regress.err($$SELECT * FROM recsys.evaluate('nope', 'ev_test')$$);
CREATE TABLE other_cols (customer int, product int);
SELECT regress.err($$SELECT * FROM recsys.evaluate('ev_pop', 'other_cols')$$);
SELECT recsys.drop_model('ev_pop'), recsys.drop_model('ev_knn');
DROP TABLE ev, ev_train, ev_test, other_cols;
