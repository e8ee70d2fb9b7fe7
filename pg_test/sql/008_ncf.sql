-- NCF (NeuMF) with Candle on the CPU: training, serving, persistence as safetensors, cancel.
\set VERBOSITY terse
CREATE TABLE n8 AS SELECT user_id, item_id FROM recsys.synthetic_interactions(80, 40, 1600, 9);
CREATE INDEX ON n8 (user_id);
SELECT model, algorithm, users, items
  FROM recsys.train('ncf', 'n8', 'ncf', '{"factors": 8, "hidden": 16, "epochs": 3, "batch_size": 256}');
SELECT params FROM recsys.models WHERE name = 'ncf';

-- recommendations: 5 unseen items in score order; an unknown user gets the popularity answer
SELECT count(*) AS n, bool_and(item_id NOT IN (SELECT item_id FROM n8 WHERE user_id = 1)) AS unseen,
       bool_and(rank = rk) AS ordered
  FROM (SELECT *, row_number() OVER (ORDER BY score DESC, item_id) AS rk FROM recsys.recommend(1, 5, 'ncf')) x;
SELECT recsys.train('pop8', 'n8', 'popularity') IS NOT NULL AS pop_trained;
SELECT (SELECT array_agg(item_id ORDER BY rank) FROM recsys.recommend(424242, 5, 'ncf'))
     = (SELECT array_agg(item_id ORDER BY rank) FROM recsys.recommend(424242, 5, 'pop8')) AS cold_is_popularity;
SELECT abs(recsys.predict(1, x.item_id, 'ncf') - x.score) < 1e-6 AS predict_agrees FROM recsys.recommend(1, 1, 'ncf') x;
-- explain: NCF scores come from the user's embedding; the history items whose item embeddings are
-- closest to the recommended item explain it; similar_items by the same embeddings
SELECT count(*) > 0 AS explained, bool_and(because_item_id IN (SELECT item_id FROM n8 WHERE user_id = 1)) AS from_history
  FROM recsys.explain(1, (SELECT item_id FROM recsys.recommend(1, 1, 'ncf')), 'ncf');
SELECT count(*) AS similar, bool_and(item_id <> 1) AS not_self FROM recsys.similar_items(1, 5, 'ncf');
SELECT count(*) AS reasons FROM recsys.recommend(1, 5, 'ncf', with_reasons => true) WHERE reason LIKE 'because of item %';

-- persistence: a new connection decodes the stored safetensors and gives the same answer
CREATE TABLE before8 AS SELECT item_id, score, rank FROM recsys.recommend(2, 10, 'ncf');
\c
\set VERBOSITY terse
SELECT count(*) AS same_after_reconnect FROM recsys.recommend(2, 10, 'ncf') r JOIN before8 b USING (rank)
 WHERE r.item_id = b.item_id AND r.score = b.score;
-- the same seed trains the same model
SELECT recsys.train('ncf_again', 'n8', 'ncf', '{"factors": 8, "hidden": 16, "epochs": 3, "batch_size": 256}') IS NOT NULL AS trained;
SELECT count(*) AS deterministic FROM recsys.recommend(2, 10, 'ncf_again') r JOIN before8 b USING (rank)
 WHERE r.item_id = b.item_id AND r.score = b.score;

-- errors
SELECT regress.err($$SELECT * FROM recsys.train('x', 'n8', 'ncf', '{"negatives": 0}')$$);

-- cancel within a batch; the deployed version keeps serving
SET statement_timeout = '300ms';
SELECT version FROM recsys.train('ncf', 'n8', 'ncf', '{"epochs": 10000}');
RESET statement_timeout;
SELECT version, deployed FROM recsys.models WHERE name = 'ncf';
SELECT count(*) AS still_serving FROM recsys.recommend(1, 5, 'ncf');
