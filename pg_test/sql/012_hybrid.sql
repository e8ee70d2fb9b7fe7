-- hybrid models, reasons, filters over an items table, fallback models for users a model cannot
-- place, item_text as an SQL expression.
\set VERBOSITY terse
CREATE TABLE h_items (item_id int PRIMARY KEY, title text, genre text, in_stock bool, price numeric);
INSERT INTO h_items
  SELECT i, 'Film ' || i, CASE WHEN i % 3 = 0 THEN 'space adventure' WHEN i % 3 = 1 THEN 'horror' ELSE 'comedy animation' END,
         i % 2 = 0, (i % 17) + 0.99
  FROM generate_series(1, 400) i;
CREATE TABLE h_events (user_id int, item_id int);
-- 60 users; user u likes items of genre u % 3, with a shared popular head
INSERT INTO h_events
  SELECT u, i FROM generate_series(1, 60) u, generate_series(1, 400) i
  WHERE i % 3 = u % 3 AND (i * 7 + u * 13) % 10 < 3;
INSERT INTO h_events SELECT u, 1 + u % 5 FROM generate_series(1, 60) u;

-- bad member lists are refused before any data is read
SELECT regress.err($$SELECT * FROM recsys.train('h', 'h_events', 'hybrid')$$);
SELECT regress.err($$SELECT * FROM recsys.train('h', 'h_events', 'hybrid', '{"members": [{"algorithm": "ease"}, {"algorithm": "hybrid"}]}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('h', 'h_events', 'hybrid', '{"members": [{"algorithm": "ease"}, {"algorithm": "als", "params": {"factorz": 3}}]}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('h', 'h_events', 'hybrid', '{"members": [{"algorithm": "ease", "weight": -1}, {"algorithm": "als"}]}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('h', 'h_events', 'hybrid', '{"members": [{"algorithm": "ease"}, {"algorithm": "content"}]}')$$);

-- a hybrid of item_knn, ALS and content (item text is an SQL expression over h_items)
SELECT model, algorithm, users, items FROM recsys.train('h', 'h_events', 'hybrid',
  '{"members": [{"algorithm": "item_knn", "weight": 1}, {"algorithm": "als", "params": {"factors": 8, "iterations": 5}, "weight": 1},
                {"algorithm": "content", "weight": 0.5}]}',
  items => 'h_items', item_text => $$title || ' ' || genre$$);
SELECT params->'fusion' AS fusion, jsonb_array_length(params->'members') AS members FROM recsys.models WHERE name = 'h';
-- user 3 likes genre 0 (space adventure): the hybrid's top 10 stay in that genre
SELECT count(*) AS in_genre FROM recsys.recommend(3, 10, 'h') r JOIN h_items USING (item_id) WHERE item_id % 3 = 0;
SELECT count(*) AS rows FROM recsys.recommend(3, 10, 'h');
SELECT count(*) > 0 AS explained, bool_and(because_item_id IN (SELECT item_id FROM h_events WHERE user_id = 3)) AS from_history
  FROM recsys.explain(3, (SELECT item_id FROM recsys.recommend(3, 1, 'h')), 'h');
SELECT abs(recsys.predict(3, r.item_id, 'h') - r.score) < 1e-4 AS predict_agrees FROM recsys.recommend(3, 1, 'h') r;
-- evaluate works on a hybrid like on any model
CREATE TABLE h_test AS SELECT u AS user_id, i AS item_id FROM generate_series(1, 60) u, generate_series(1, 400) i
  WHERE i % 3 = u % 3 AND (i * 7 + u * 13) % 10 = 5;
SELECT metric, value FROM recsys.evaluate('h', 'h_test') WHERE metric = 'users';
-- rank fusion
SELECT recsys.train('hr', 'h_events', 'hybrid', '{"members": [{"algorithm": "item_knn"}, {"algorithm": "ease"}], "fusion": "rank"}') IS NOT NULL AS trained;
SELECT count(*) AS in_genre FROM recsys.recommend(3, 10, 'hr') WHERE item_id % 3 = 0;

-- reasons: NULL unless asked; from the history, or "popular" for what fills the list
SELECT count(*) FILTER (WHERE reason IS NULL) AS null_reasons FROM recsys.recommend(3, 5, 'h');
SELECT reason FROM recsys.recommend(3, 2, 'hr', with_reasons => true);
SELECT recsys.train('hk', 'h_events', 'item_knn', '{"k": 5}') IS NOT NULL AS trained;
SELECT DISTINCT reason FROM recsys.recommend(3, 400, 'hk', with_reasons => true) WHERE score = 0;
SELECT reason FROM recsys.recommend(424242, 1, 'hk', with_reasons => true);
SELECT recsys.train('hc', 'h_events', 'content', items => 'h_items', item_text => $$genre$$) IS NOT NULL AS trained;
SELECT reason FROM recsys.recommend(3, 1, 'hc', with_reasons => true);

-- filters: a predicate over the items table; min(n, eligible) rows however few items pass
SELECT count(*) AS rows, bool_and(item_id % 100 = 0) AS all_pass
  FROM recsys.recommend(3, 10, 'hk', filter => 'item_id % 100 = 0', items => 'h_items');
SELECT count(*) AS rows FROM recsys.recommend(3, 3, 'hk', filter => 'item_id % 100 = 0', items => 'h_items');
SELECT count(*) AS rows, bool_and(i.in_stock AND i.price < 5) AS all_pass
  FROM recsys.recommend(3, 10, 'h', filter => 'in_stock and price < 5') r JOIN h_items i USING (item_id);
SELECT count(*) AS rows FROM recsys.recommend(3, 10, 'h', filter => 'in_stock', candidates => ARRAY[2, 3, 4]);
SELECT count(*) AS rows FROM recsys.recommend(3, 10, 'h', filter => 'false');
SELECT regress.err($$SELECT * FROM recsys.recommend(3, 10, 'hk', filter => 'in_stock')$$);
SELECT regress.err($$SELECT * FROM recsys.recommend(3, 10, 'hk', filter => 'nope > 1', items => 'h_items')$$);
SELECT regress.err($$SELECT * FROM recsys.recommend(3, 10, 'hk', filter => 'price', items => 'h_items')$$);
-- a second command cannot ride in on the filter
SELECT regress.err($$SELECT * FROM recsys.recommend(3, 10, 'hk', filter => 'true; DROP TABLE h_items', items => 'h_items')$$);
SELECT count(*) AS items_still_there FROM h_items;

-- item_text expressions are checked when training
SELECT regress.err($$SELECT * FROM recsys.train('hx', 'h_events', 'content', items => 'h_items', item_text => 'price')$$);
SELECT regress.err($$SELECT * FROM recsys.train('hx', 'h_events', 'content', items => 'h_items', item_text => 'title ||| genre')$$);

-- fallback: a user item_knn cannot place (only items it does not know) is answered by content
SELECT regress.err($$SELECT * FROM recsys.train('hf', 'h_events', 'item_knn', '{"fallback": "no_such_model"}')$$);
SELECT regress.err($$SELECT * FROM recsys.train('hf', 'h_events', 'item_knn', '{"fallback": "hf"}')$$);
SELECT recsys.train('hf', 'h_events', 'item_knn', '{"k": 5, "fallback": "hc"}') IS NOT NULL AS trained;
SELECT params->>'fallback' AS fallback FROM recsys.models WHERE name = 'hf';
INSERT INTO h_items VALUES (401, 'Film 401', 'space adventure', true, 1);
INSERT INTO h_events VALUES (77, 401);
-- without a fallback, item_knn gives user 77 the popularity answer; with it, space adventure
SELECT count(*) AS in_genre FROM recsys.recommend(77, 5, 'hk') WHERE item_id % 3 = 0;
SELECT count(*) AS in_genre FROM recsys.recommend(77, 5, 'hf') WHERE item_id % 3 = 0;
SELECT reason FROM recsys.recommend(77, 1, 'hf', with_reasons => true);
-- a known user is still answered by item_knn itself
SELECT (SELECT array_agg(item_id) FROM recsys.recommend(3, 5, 'hf')) = (SELECT array_agg(item_id) FROM recsys.recommend(3, 5, 'hk')) AS same;

-- recency: with a time column, recency_half_life weights a user's latest items most
SELECT regress.err($$SELECT * FROM recsys.train('hrc', 'h_events', 'content', '{"recency_half_life": 2}', items => 'h_items', item_text => 'genre')$$);
CREATE TABLE h_timed (user_id int, item_id int, ts timestamptz);
INSERT INTO h_timed VALUES (1, 3, '2024-01-01'), (1, 1, '2024-01-02'), (2, 6, '2024-01-01'), (2, 4, '2024-01-03'), (3, 2, '2024-01-01');
SELECT recsys.train('hrc', 'h_timed', 'content', '{"recency_half_life": 1}', time_column => 'ts', items => 'h_items', item_text => 'genre') IS NOT NULL AS trained;
-- user 1 saw a space adventure (3), then a horror film (1): horror first
SELECT genre FROM recsys.recommend(1, 1, 'hrc') JOIN h_items USING (item_id);
-- then another space adventure: space adventure first again, without retraining
INSERT INTO h_timed VALUES (1, 9, '2024-01-05');
SELECT genre FROM recsys.recommend(1, 1, 'hrc') JOIN h_items USING (item_id);

-- a source of 10,000 rows or more with no index leading with the user column: a WARNING at
-- train time, with the CREATE INDEX that fixes it as its hint; none once the index exists
CREATE TABLE h_big AS SELECT (i % 500) AS user_id, (i % 97) AS item_id FROM generate_series(1, 12000) i;
SELECT recsys.train('hbig', 'h_big', 'popularity') IS NOT NULL AS trained;
CREATE INDEX ON h_big (user_id, item_id);
SELECT recsys.train('hbig', 'h_big', 'popularity') IS NOT NULL AS trained;
