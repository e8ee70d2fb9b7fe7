-- content: TF-IDF over item text, a profile from the live history, cosine; content neighbours;
-- new items reachable by their text; explain splits the score over the history.
\set VERBOSITY terse
CREATE TABLE c_items (item_id int PRIMARY KEY, title text);
INSERT INTO c_items VALUES
  (1, 'The Lord of the Rings: adventure fantasy'), (2, 'The Hobbit: fantasy adventure'),
  (3, 'Star Wars: space adventure'), (4, 'Alien: space horror'), (5, 'The Shining: horror'),
  (6, 'Toy Story: animation comedy'), (7, 'Shrek: animation comedy fantasy'), (8, NULL);
CREATE TABLE c_plays (user_id int, item_id int, stars real);
INSERT INTO c_plays VALUES (1, 1, 5), (1, 3, 2), (2, 4, 4), (3, 6, 5), (4, 2, 3), (4, 5, 4), (5, 8, 1);
SELECT regress.err($$SELECT * FROM recsys.train('c', 'c_plays', 'content')$$);
SELECT regress.err($$SELECT * FROM recsys.train('c', 'c_plays', 'content', '{"ngrams": 4}', items => 'c_items', item_text => 'title')$$);
SELECT regress.err($$SELECT * FROM recsys.train('c', 'c_plays', 'content', '{"stop_words": "klingon"}', items => 'c_items', item_text => 'title')$$);
SELECT model, algorithm, users, items FROM recsys.train('c', 'c_plays', 'content', items => 'c_items', item_text => 'title');
SELECT params FROM recsys.models WHERE name = 'c';

-- user 1 (Lord of the Rings, Star Wars): adventure and fantasy first; items sharing no word with
-- the history come last with score 0 (popularity fill)
SELECT item_id, round(score::numeric, 4) AS score, rank FROM recsys.recommend(1, 5, 'c');
-- (Shrek, 7, has no plays: it is ranked from its text.) With rating_column the profile is
-- rating-weighted: the 5-star Lord of the Rings outweighs the 2-star Star Wars, so fantasy (7)
-- now comes before space (4)
SELECT recsys.train('cr', 'c_plays', 'content', items => 'c_items', item_text => 'title', rating_column => 'stars') IS NOT NULL AS trained;
SELECT item_id FROM recsys.recommend(1, 3, 'cr');
-- content neighbours, stored and served
SELECT item_id, round(score::numeric, 4) AS score FROM recsys.similar_items(4, 2, 'c');
SELECT count(*) > 0 AS has_neighbor_rows FROM recsys.item_neighbors n JOIN recsys.models m ON m.id = n.model_id WHERE m.name = 'c';
-- explain: the history items that share words with the item, their parts sum to the score
SELECT because_item_id, round(contribution::numeric, 4) FROM recsys.explain(1, 2, 'c');
SELECT abs((SELECT sum(contribution) FROM recsys.explain(1, 2, 'c')) - recsys.predict(1, 2, 'c')) < 1e-5 AS parts_sum_to_score;
-- a new item, added after training, reaches users by its text
INSERT INTO c_items VALUES (9, 'Dune: space adventure epic');
SELECT item_id FROM recsys.recommend(1, 1, 'c', candidates => ARRAY[4, 5, 9]);
-- a new user whose only row is the new item
INSERT INTO c_plays VALUES (6, 9, 1);
SELECT item_id FROM recsys.recommend(6, 2, 'c');
-- no history: popularity
SELECT count(*) AS popularity_rows FROM recsys.recommend(4242, 3, 'c');

\c
\set VERBOSITY terse
SELECT item_id, round(score::numeric, 4) AS score FROM recsys.similar_items(4, 2, 'c');
