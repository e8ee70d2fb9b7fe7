#!/usr/bin/env bash
# `make bench`: pg_recsys and its peers side by side on the shared splits, same machine, same run.
# For every split: load train/test into the scratch cluster, train every algorithm pg_recsys has,
# time fit (recsys.train) and recommend-for-all-test-users (recsys.recommend via \copy, wall
# clock), score with recsys.evaluate; then run the peers (benches/peers.py, in a venv under
# target/) and write benches/REPORT.md with PNG plots.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
SHARED=${SHARED:-$(pwd)/../shared}
[ -d "$SHARED/eval/splits" ] || { echo "bench: ../shared/eval not found"; exit 2; }
OUT=target/bench && mkdir -p $OUT && chmod 777 $OUT
SPLITS="ml100k_implicit_all ml100k_implicit_pos4 mllatestsmall_implicit_all"

. benches/venv.sh

now() { date +%s.%N; }
# Item texts for the text models: ML-100K u.item (Latin-1; title + genre names), ml-latest-small
# movies.csv (title + genres) and the movie's tags from tags.csv.
python3 - "$SHARED" "$OUT" <<'PY'
import csv, sys
shared, out = sys.argv[1], sys.argv[2]
genres = [l.split("|")[0] for l in open(f"{shared}/data/ml-100k/u.genre", encoding="latin-1") if l.strip()]
with open(f"{out}/items_ml100k.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    for line in open(f"{shared}/data/ml-100k/u.item", encoding="latin-1"):
        f = line.rstrip("\n").split("|")
        w.writerow([f[0], f[1] + " " + " ".join(g for g, flag in zip(genres, f[5:24]) if flag == "1")])
tags = {}
for r in csv.DictReader(open(f"{shared}/data/ml-latest-small/tags.csv", encoding="utf-8")):
    tags.setdefault(r["movieId"], []).append(r["tag"])
with open(f"{out}/items_mllatestsmall.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    for r in csv.DictReader(open(f"{shared}/data/ml-latest-small/movies.csv", encoding="utf-8")):
        w.writerow([r["movieId"], " ".join([r["title"], r["genres"].replace("|", " ")] + tags.get(r["movieId"], []))])
PY
echo "split,algorithm,fit_s,engine_fit_s,recommend_s,metric,value" > $OUT/ours.csv
for s in $SPLITS; do
  fresh_db pg_recsys_bench
  $P -c "CREATE TABLE train (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy train FROM '$SHARED/eval/splits/${s}_train.csv' WITH (FORMAT csv, HEADER)" \
     -c "CREATE INDEX ON train (user_id)" \
     -c "CREATE TABLE test (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy test FROM '$SHARED/eval/splits/${s}_test.csv' WITH (FORMAT csv, HEADER)" \
     -c "ANALYZE train" -c "ANALYZE test" \
     -c "CREATE TABLE items (item_id int PRIMARY KEY, text text)" \
     -c "\copy items FROM '$(pwd)/$OUT/items_${s%%_*}.csv' WITH (FORMAT csv)"
  while IFS='|' read -r label alg params; do
    # two_tower's full softmax over ml-latest-small's 9k items takes minutes an epoch on 2 cores:
    # it is benched on the ML-100K splits only.
    if [ "$alg" = two_tower ] && [ "${s#ml100k}" = "$s" ]; then continue; fi
    # EASE's lambda is chosen by recsys.tune on a validation split of train (never on test); the
    # fit time reported is then the final fit's. On ml-latest-small (9k items, minutes per fit)
    # the default lambda is used. (Two statements: a query does not see the catalog row its own
    # train call inserts.)
    if [ "$alg" = ease ] && [ "${s#ml100k}" != "$s" ]; then
      train="SELECT 1 FROM recsys.tune('m', 'train', 'ease', '$params')"
    elif [ "$alg" = ease ]; then
      train="SELECT 1 FROM recsys.train('m', 'train', 'ease')"
    elif [ "$alg" = two_tower ] || [ "$alg" = content ] || [[ "$params" == *content* ]]; then
      train="SELECT 1 FROM recsys.train('m', 'train', '$alg', '$params', items => 'items', item_text => 'text')"
    else
      train="SELECT 1 FROM recsys.train('m', 'train', '$alg', '$params')"
    fi
    fit=$($P -At -F, -c "$train" \
                     -c "SELECT (metrics->>'fit_seconds')::float8 + (seconds - (metrics->>'fit_seconds')::float8) * (algorithm <> 'ease')::int, metrics->>'fit_seconds'
                           FROM recsys.models WHERE name = 'm' AND deployed" | tail -1)
    t0=$(now)
    $P -c "\copy (SELECT u.user_id, r.item_id, r.rank FROM (SELECT DISTINCT user_id FROM test) u, LATERAL recsys.recommend(u.user_id, 10, 'm') r) TO '/dev/null'"
    rec=$(python3 -c "print(round($(now) - $t0, 4))")
    $P -At -F, -c "SELECT '$s', '$label', $fit, $rec, metric, value FROM recsys.evaluate('m', 'test', 10)" >> $OUT/ours.csv
    $P -At -F, -c "SELECT '$s', '$label', $fit, $rec, 'epochs', (params->>'epochs')::float8 FROM recsys.models
                     WHERE name = 'm' AND deployed AND params ? 'epochs'" >> $OUT/ours.csv
    $P -c "SELECT recsys.drop_model('m')" >/dev/null
    echo "bench: $s $label fit ${fit}s recommend-all ${rec}s"
  done <<'ALGS'
popularity|popularity|{}
item_knn|item_knn|{"k": 100}
user_knn|user_knn|{}
ease|ease|{"lambda": [100, 200, 350, 500, 750, 1000, 1500]}
svd|svd|{}
als|als|{}
bpr|bpr|{}
ncf|ncf|{}
two_tower|two_tower|{}
content|content|{}
hybrid|hybrid|{"members": [{"algorithm": "ease"}, {"algorithm": "als"}]}
hybrid_content|hybrid|{"members": [{"algorithm": "ease"}, {"algorithm": "als"}, {"algorithm": "content", "weight": 0.3}]}
ALGS
done

# Sequential: ML-100K u.data with timestamps, split per user by time with recsys.split('temporal')
# (each user's latest 20 % are test); sequential, ALS and EASE trained and scored on that split.
echo "algorithm,fit_s,engine_fit_s,metric,value" > $OUT/ours_temporal.csv
fresh_db pg_recsys_bench
$P -c "CREATE TABLE events (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy events FROM '$SHARED/data/ml-100k/u.data' WITH (FORMAT text)" \
   -c "SELECT * FROM recsys.split('events', 'ttrain', 'ttest', method => 'temporal', time_column => 'ts')" \
   -c "CREATE INDEX ON ttrain (user_id)" -c "ANALYZE ttrain" >/dev/null
$P -c "\copy (SELECT user_id, item_id, ts FROM ttrain) TO '$(pwd)/$OUT/temporal_train.csv' WITH (FORMAT csv)"
for alg in sequential als ease; do
  $P -c "SELECT 1 FROM recsys.train('t', 'ttrain', '$alg', time_column => 'ts')" >/dev/null
  $P -At -F, -c "SELECT '$alg', (SELECT seconds FROM recsys.models WHERE name = 't' AND deployed),
                        (SELECT (metrics->>'fit_seconds')::float8 FROM recsys.models WHERE name = 't' AND deployed), metric, value
                   FROM recsys.evaluate('t', 'ttest', 10)" >> $OUT/ours_temporal.csv
  $P -At -F, -c "SELECT '$alg', seconds, (metrics->>'fit_seconds')::float8, 'epochs', (params->>'epochs')::float8
                   FROM recsys.models WHERE name = 't' AND deployed AND params ? 'epochs'" >> $OUT/ours_temporal.csv
  $P -c "SELECT recsys.drop_model('t')" >/dev/null
  echo "bench: temporal $alg done"
done

# Cold items: 10 % of ML-100K's items (abs(hashint4(item_id)) % 10 = 0) are held out of training
# entirely; each user who has any of them (in the split's train or test rows) must find them among
# the held-out items alone (recommend with a filter over the items table): hit-rate@10. Popularity
# knows none of them; a seeded random ranking of the held-out items is the floor.
echo "model,hitrate,users,cold_items" > $OUT/ours_cold.csv
fresh_db pg_recsys_bench
COLD="abs(hashint4(item_id)) % 10 = 0"
$P -c "CREATE TABLE alltrain (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy alltrain FROM '$SHARED/eval/splits/ml100k_implicit_all_train.csv' WITH (FORMAT csv, HEADER)" \
   -c "CREATE TABLE alltest (LIKE alltrain)" \
   -c "\copy alltest FROM '$SHARED/eval/splits/ml100k_implicit_all_test.csv' WITH (FORMAT csv, HEADER)" \
   -c "CREATE TABLE items (item_id int PRIMARY KEY, text text)" \
   -c "\copy items FROM '$(pwd)/$OUT/items_ml100k.csv' WITH (FORMAT csv)" \
   -c "CREATE TABLE ctrain AS SELECT user_id, item_id FROM alltrain WHERE NOT ($COLD)" \
   -c "CREATE TABLE ctest AS SELECT DISTINCT user_id, item_id FROM (SELECT * FROM alltrain UNION ALL SELECT * FROM alltest) a
         WHERE $COLD AND user_id IN (SELECT user_id FROM ctrain)" \
   -c "CREATE INDEX ON ctrain (user_id)" -c "ANALYZE ctrain" >/dev/null
cold_hits() {  # $1: label, $2: the query giving each test user's 10 items (u.user_id in scope)
  $P -At -F, -c "SELECT '$1', avg(hit::int), count(*), (SELECT count(*) FROM items WHERE $COLD)
                   FROM (SELECT u.user_id, EXISTS (SELECT 1 FROM ($2) r JOIN ctest t ON t.user_id = u.user_id AND t.item_id = r.item_id) AS hit
                         FROM (SELECT DISTINCT user_id FROM ctest) u) x" >> $OUT/ours_cold.csv
}
cold_hits random "SELECT item_id FROM items WHERE $COLD ORDER BY md5(u.user_id || ':' || item_id) LIMIT 10"
for alg in popularity content two_tower; do
  case $alg in
    popularity) $P -c "SELECT 1 FROM recsys.train('c', 'ctrain', 'popularity')" >/dev/null ;;
    *) $P -c "SELECT 1 FROM recsys.train('c', 'ctrain', '$alg', items => 'items', item_text => 'text')" >/dev/null ;;
  esac
  cold_hits $alg "SELECT item_id FROM recsys.recommend(u.user_id, 10, 'c', filter => '$COLD', items => 'items')"
  $P -c "SELECT recsys.drop_model('c')" >/dev/null
  echo "bench: cold items $alg done"
done

# Rating prediction on the ML-100K folds u1..u5: RMSE/MAE from recsys.evaluate on each test fold
# (recsys.predict for every row; the training mean where it gives NULL, as Surprise does).
echo "algorithm,fold,rmse,mae,fit_s,engine_fit_s" > $OUT/ours_rating.csv
ML100K=$SHARED/data/ml-100k
for k in 1 2 3 4 5; do
  fresh_db pg_recsys_bench
  $P -c "CREATE TABLE base (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy base FROM '$ML100K/u$k.base' WITH (FORMAT text)" -c "CREATE INDEX ON base (user_id)" \
     -c "CREATE TABLE fold (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy fold FROM '$ML100K/u$k.test' WITH (FORMAT text)"
  while IFS='|' read -r label alg params; do
    $P -c "SELECT 1 FROM recsys.train('m', 'base', '$alg', '$params', rating_column => 'rating')" >/dev/null
    $P -At -F, -c "SELECT '$label', $k, max(value) FILTER (WHERE metric = 'rmse'), max(value) FILTER (WHERE metric = 'mae'),
                          (SELECT seconds FROM recsys.models WHERE name = 'm' AND deployed),
                          (SELECT (metrics->>'fit_seconds')::float8 FROM recsys.models WHERE name = 'm' AND deployed)
                     FROM recsys.evaluate('m', 'fold')" >> $OUT/ours_rating.csv
    $P -c "SELECT recsys.drop_model('m')" >/dev/null
  done <<'RATING'
biased_mf|biased_mf|{}
svdpp|svdpp|{}
item_knn pearson_baseline k=40|item_knn|{"similarity": "pearson_baseline"}
RATING
  echo "bench: ml-100k fold u$k done"
done

# Scale: ALS (64 factors, 15 iterations) on ~5M synthetic interactions, 100k users x 20k items.
fresh_db pg_recsys_bench
$P -c "CREATE TABLE syn AS SELECT user_id, item_id FROM recsys.synthetic_interactions(100000, 20000, 5000000, 42)" \
   -c "CREATE INDEX ON syn (user_id)" -c "ANALYZE syn"
$P -c "\copy syn TO '$(pwd)/$OUT/syn.csv' WITH (FORMAT csv)"
$P -c "SELECT 1 FROM recsys.train('m', 'syn', 'als', '{\"factors\": 64, \"iterations\": 15}')" >/dev/null
$P -At -F, -c "SELECT users, items, interactions, seconds, (metrics->>'fit_seconds')::float8
                 FROM recsys.models WHERE name = 'm' AND deployed" > $OUT/ours_scale.csv
echo "bench: synthetic ALS $(cat $OUT/ours_scale.csv)"
psql -X -q -d postgres -c "DROP DATABASE pg_recsys_bench"

echo "bench: running peers (implicit, numpy EASE, Surprise)"
OPENBLAS_NUM_THREADS=1 $VENV/bin/python benches/peers.py --shared "$SHARED" --splits $SPLITS --scale $OUT/syn.csv --out $OUT/peers.json
rm -f $OUT/syn.csv
# The PyTorch epoch-time comparison is benches/neural.sh (make bench-neural, run by make bench).
$VENV/bin/python benches/report.py --ours $OUT/ours.csv --ours-rating $OUT/ours_rating.csv --ours-scale $OUT/ours_scale.csv \
  --ours-temporal $OUT/ours_temporal.csv --ours-cold $OUT/ours_cold.csv --peers $OUT/peers.json --out benches
echo "bench: wrote benches/REPORT.md and benches/*.png"
