-- Sequential (SASRec) next-item model: needs the time order, serves the latest items from the
-- live table (a new click changes the next answer), persists as safetensors; recsys.device.
\set VERBOSITY terse
-- 36 users each walk 6 steps of a 12-item cycle from their own start: after item i comes i + 1.
CREATE TABLE s9 AS
  SELECT u AS user_id, (u + s) % 12 + 1 AS item_id, timestamptz '2024-01-01' + s * interval '1 hour' AS ts
    FROM generate_series(0, 35) u, generate_series(0, 5) s;
CREATE INDEX ON s9 (user_id);
SELECT regress.err($$SELECT * FROM recsys.train('seq', 's9', 'sequential')$$);
SELECT model, algorithm, users, items, interactions FROM recsys.train('seq', 's9', 'sequential',
  '{"factors": 16, "max_len": 6, "blocks": 1, "epochs": 40, "batch_size": 16, "lr": 0.01}', time_column => 'ts');
SELECT columns FROM recsys.models WHERE name = 'seq';

-- user 0 saw 1..6 in order: the next item is 7
SELECT item_id, rank FROM recsys.recommend(0, 1, 'seq');
-- a click just made (item 10, later than the rest) changes the next answer to 11
INSERT INTO s9 VALUES (0, 10, timestamptz '2024-01-02');
SELECT item_id, rank FROM recsys.recommend(0, 1, 'seq');
SELECT abs(recsys.predict(0, 11, 'seq') - score) < 1e-5 AS predict_agrees FROM recsys.recommend(0, 1, 'seq');
-- a user the model never saw is served from their live history too; no history: popularity
INSERT INTO s9 VALUES (900, 3, timestamptz '2024-01-01'), (900, 4, timestamptz '2024-01-01 01:00');
SELECT item_id FROM recsys.recommend(900, 1, 'seq');
SELECT count(*) AS popularity_rows FROM recsys.recommend(424242, 3, 'seq');
SELECT count(*) AS similar FROM recsys.similar_items(5, 3, 'seq');
-- explain: how much the next item's score drops when a history item is left out
SELECT count(*) > 0 AS explained, bool_and(contribution > 0) AS positive,
       bool_and(because_item_id IN (SELECT item_id FROM s9 WHERE user_id = 7)) AS from_history
  FROM recsys.explain(7, (SELECT item_id FROM recsys.recommend(7, 1, 'seq')), 'seq');

-- persistence across connections
CREATE TABLE before9 AS SELECT item_id, score, rank FROM recsys.recommend(7, 5, 'seq');
\c
\set VERBOSITY terse
SELECT count(*) AS same_after_reconnect FROM recsys.recommend(7, 5, 'seq') r JOIN before9 b USING (rank)
 WHERE r.item_id = b.item_id AND r.score = b.score;

-- errors
SELECT regress.err($$SELECT * FROM recsys.train('x', 's9', 'sequential', '{"max_len": 1}', time_column => 'ts')$$);
SELECT regress.err($$SELECT * FROM recsys.train('x', 's9', 'sequential', time_column => 'nope')$$);
SELECT regress.err($$SELECT * FROM recsys.tune('x', 's9', 'sequential', '{"epochs": [1, 2]}')$$);

-- recsys.device: cuda needs the cuda build; unknown names are refused; auto falls back to the CPU
SET recsys.device = 'cuda';
SELECT regress.err($$SELECT * FROM recsys.train('x', 's9', 'sequential', '{"epochs": 1}', time_column => 'ts')$$);
SELECT regress.err($$SELECT * FROM recsys.train('x', 's9', 'ncf', '{"epochs": 1}')$$);
-- non-neural models ignore it
SELECT algorithm FROM recsys.train('pop9', 's9', 'popularity');
SET recsys.device = 'gpu';
SELECT regress.err($$SELECT * FROM recsys.train('x', 's9', 'sequential', '{"epochs": 1}', time_column => 'ts')$$);
SET recsys.device = 'auto';
SELECT algorithm FROM recsys.train('seq_auto', 's9', 'sequential', '{"factors": 8, "max_len": 4, "epochs": 1}', time_column => 'ts');
RESET recsys.device;

-- cancel within a batch; the deployed version keeps serving
SET statement_timeout = '300ms';
SELECT version FROM recsys.train('seq', 's9', 'sequential', '{"epochs": 10000}', time_column => 'ts');
RESET statement_timeout;
SELECT version, deployed FROM recsys.models WHERE name = 'seq';
SELECT count(*) AS still_serving FROM recsys.recommend(1, 5, 'seq');
