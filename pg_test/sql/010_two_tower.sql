-- two_tower: item tower over item text, user tower over the history; an item added to the items
-- table after training is recommended from its text without retraining.
\set VERBOSITY terse
CREATE TABLE tt_items (item_id int PRIMARY KEY, title text);
INSERT INTO tt_items
  SELECT i, CASE WHEN i <= 10 THEN 'red fruit ' || (ARRAY['apple','pear','plum','grape','lemon'])[i % 5 + 1]
                 ELSE 'fast car ' || (ARRAY['engine','wheel','brake','tyre','gear'])[i % 5 + 1] END
    FROM generate_series(1, 20) i;
-- users 1..20 like fruit items, users 21..40 car items; each user misses some of their group's
CREATE TABLE tt AS
  SELECT u AS user_id, i AS item_id FROM generate_series(1, 40) u, generate_series(1, 20) i
   WHERE (u <= 20) = (i <= 10) AND (u * 7 + i * 3) % 4 <> 0;
CREATE INDEX ON tt (user_id);
SELECT regress.err($$SELECT * FROM recsys.train('tt', 'tt', 'two_tower')$$);
SELECT regress.err($$SELECT * FROM recsys.train('tt', 'tt', 'two_tower', items => 'tt_items', item_text => 'nope')$$);
SELECT regress.err($$SELECT * FROM recsys.train('tt', 'tt', 'two_tower', items => 'tt_items', item_text => 'item_id')$$);
SELECT regress.err($$SELECT * FROM recsys.train('tt', 'tt', 'ncf', item_text => 'title')$$);
SELECT model, algorithm, users, items FROM recsys.train('tt', 'tt', 'two_tower',
  '{"factors": 16, "buckets": 512, "epochs": 20, "batch_size": 64, "lr": 0.01}', items => 'tt_items', item_text => 'title');
SELECT columns->>'items' AS items, columns->>'item_text' AS item_text FROM recsys.models WHERE name = 'tt';

-- a fruit user gets their two unseen fruit items, a car user car items
SELECT bool_and(item_id <= 10) AS fruit_for_fruit_user FROM recsys.recommend(1, 2, 'tt');
SELECT bool_and(item_id > 10) AS cars_for_car_user FROM recsys.recommend(21, 3, 'tt');
-- two items added after training: each user gets the one that matches their taste, by its text
INSERT INTO tt_items VALUES (98, 'fast car truck'), (99, 'red fruit cherry');
SELECT item_id FROM recsys.recommend(1, 1, 'tt', candidates => ARRAY[98, 99]);
SELECT item_id FROM recsys.recommend(21, 1, 'tt', candidates => ARRAY[98, 99]);
SELECT count(*) FILTER (WHERE item_id IN (98, 99)) AS new_items_ranked FROM recsys.recommend(1, 30, 'tt');
-- a new user whose only click is the new fruit item gets fruit
INSERT INTO tt VALUES (500, 99);
SELECT bool_and(item_id <= 10) AS fruit_from_new_item FROM recsys.recommend(500, 3, 'tt');
SELECT count(*) AS similar FROM recsys.similar_items(1, 3, 'tt');
-- explain: leave-one-out over the history; reasons in words
SELECT count(*) > 0 AS explained, bool_and(because_item_id IN (SELECT item_id FROM tt WHERE user_id = 1)) AS from_history
  FROM recsys.explain(1, (SELECT item_id FROM recsys.recommend(1, 1, 'tt')), 'tt');
SELECT count(*) AS reasons FROM recsys.recommend(1, 3, 'tt', with_reasons => true) WHERE reason LIKE 'because of "%';

-- persistence across connections
CREATE TABLE before10 AS SELECT item_id, score, rank FROM recsys.recommend(3, 5, 'tt');
\c
\set VERBOSITY terse
SELECT count(*) AS same_after_reconnect FROM recsys.recommend(3, 5, 'tt') r JOIN before10 b USING (rank)
 WHERE r.item_id = b.item_id AND abs(r.score - b.score) < 1e-6;
