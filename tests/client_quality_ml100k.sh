#!/usr/bin/env bash
# End-to-end quality on the shared ML-100K implicit split, scored by the reference scorer:
# load train into a table, train popularity, item_knn (cosine, k=100), als, bpr and svd with their
# defaults, export recommend(u, 10) for every test user with \copy, run
# ../shared/eval/evaluate_topn.py, and require NDCG@10 at least a floor just under (about 0.5 %) what
# each model measures here, so that a real regression fails;
# and require recsys.evaluate on the same model and test table to agree with the scorer to 1e-6.
# Then rating prediction on the ML-100K folds u1..u5: mean RMSE from recsys.evaluate of biased_mf
# at most 0.918 (measured 0.9139; Surprise SVD 0.9378), of svdpp at most 0.918 (measured 0.9136;
# Surprise SVD++ 0.9220), of item_knn pearson_baseline at most 0.9245 (measured 0.9220; Surprise
# KNNBaseline 0.9204). rp3beta and slim (defaults) have floors against their numpy/scikit-learn
# twins' NDCG, and recsys.tune(..., 'auto') must deploy a model better than ALS alone (0.450),
# and reach 0.335 on the pos4 split.
# EASE is trained with recsys.tune
# (lambda chosen on a validation split of train) and must reach 0.437 (numpy EASE 0.4381).
# two_tower (item text from u.item) has a floor on the same split; a hybrid of EASE and ALS must
# reach its best member; content must find items held out of training by their text (hit-rate@10
# among them, against a random ranking); sequential, on a per-user
# temporal split made by recsys.split, must beat ALS and EASE trained on that split.
# Skips (exit 0, with a message) when ../shared is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
SHARED=${SHARED:-$(pwd)/../shared}
SPLIT=$SHARED/eval/splits/ml100k_implicit_all
if [ ! -f "${SPLIT}_train.csv" ] || [ ! -f "$SHARED/eval/evaluate_topn.py" ]; then
  echo "SKIP quality_ml100k: ../shared/eval (splits and scorer) not found"
  exit 0
fi
OUT=target/quality && mkdir -p $OUT && chmod 777 $OUT
fresh_db pg_recsys_quality
$P -c "CREATE TABLE train (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy train FROM '${SPLIT}_train.csv' WITH (FORMAT csv, HEADER)" \
   -c "CREATE INDEX ON train (user_id)" \
   -c "CREATE TABLE test (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy test FROM '${SPLIT}_test.csv' WITH (FORMAT csv, HEADER)" \
   -c "SELECT recsys.train('pop', 'train', 'popularity')" \
   -c "SELECT recsys.train('knn', 'train', 'item_knn', '{\"k\": 100, \"similarity\": \"cosine\"}')" \
   -c "SELECT recsys.train('als', 'train', 'als')" \
   -c "SELECT recsys.train('bpr', 'train', 'bpr')" \
   -c "SELECT recsys.train('svd', 'train', 'svd')" \
   -c "SELECT recsys.train('uknn', 'train', 'user_knn')" \
   -c "SELECT recsys.train('ncf', 'train', 'ncf')" \
   -c "SELECT 1 FROM recsys.tune('ease', 'train', 'ease', '{\"lambda\": [100, 200, 350, 500, 750, 1000, 1500]}')" \
   -c "SELECT recsys.train('rp3', 'train', 'rp3beta')" \
   -c "SELECT recsys.train('slim', 'train', 'slim')" \
   -c "SET client_min_messages = warning" -c "SELECT 1 FROM recsys.tune('auto', 'train', 'auto') LIMIT 1" \
   -c "SELECT 1 FROM recsys.tune('als_tuned', 'train', 'als', '{\"factors\": [64, 128], \"regularization\": {\"min\": 15, \"max\": 60, \"log\": true}, \"alpha\": {\"min\": 2, \"max\": 6, \"log\": true}, \"reg_exponent\": [0, 0.5, 1]}', search => 'random', trials => 16) LIMIT 1" >/dev/null

check() { # model floor peer_ndcg
  local model=$1 floor=$2 peer=$3
  $P -c "\copy (SELECT u.user_id AS \"user\", r.item_id AS item, r.rank FROM (SELECT DISTINCT user_id FROM test) u, LATERAL recsys.recommend(u.user_id, 10, '$model') r ORDER BY 1, 3) TO '$OUT/$model.csv' WITH (FORMAT csv, HEADER)"
  python3 "$SHARED/eval/evaluate_topn.py" --recs "$OUT/$model.csv" --test "${SPLIT}_test.csv" \
    --train "${SPLIT}_train.csv" --json "$OUT/$model.json" | sed "s/^/  $model: /"
  python3 - "$OUT/$model.json" "$peer" "$model" "$floor" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); peer = float(sys.argv[2]); name = sys.argv[3]; floor = float(sys.argv[4])
ndcg = m["ndcg@10"]
print(f"  {name}: NDCG@10 {ndcg:.4f} vs peer {peer:.4f} (ratio {ndcg / peer:.3f})")
assert m["recs_of_already_seen_train_items"] == 0, "recommended a training item"
assert m["users_without_recs"] == 0 and m["users_with_short_lists"] == 0, "short lists"
assert ndcg >= floor, f"{name}: NDCG@10 {ndcg:.4f} is below {floor} (peer {peer})"
PY
  $P -At -F, -c "SELECT metric, value FROM recsys.evaluate('$model', 'test', 10)" > "$OUT/$model.evaluate.csv"
  python3 - "$OUT/$model.json" "$OUT/$model.evaluate.csv" "$model" <<'PY'
import csv, json, sys
ref = json.load(open(sys.argv[1])); name = sys.argv[3]
ours = {m: float(v) for m, v in csv.reader(open(sys.argv[2]))}
assert ours["users"] == ref["n_eval_users"], (ours["users"], ref["n_eval_users"])
for m in ["precision@10", "recall@10", "ndcg@10", "map@10", "hitrate@10", "coverage@10"]:
    assert abs(ours[m] - ref[m]) < 1e-6, f"{name}: recsys.evaluate {m} = {ours[m]!r}, scorer {ref[m]!r}"
print(f"  {name}: recsys.evaluate agrees with evaluate_topn.py to 1e-6 on all six metrics")
PY
}
check pop 0.2135 0.2142  # measured 0.2142
check knn 0.3400 0.3426  # measured 0.3422
check als 0.4440 0.3554  # measured 0.4466
check bpr 0.3320 0.3401  # measured 0.3349
check svd 0.3455 0.3479  # no peer: our own measured figure (0.3479)
check uknn 0.3855 0.3881  # no peer: our own measured figure (0.3881)
check ncf 0.3725 0.3754  # no peer: our own measured figure (sparse Adam embeddings) (implicit ALS 0.3554 on this split)
check ease 0.4370 0.4381  # measured 0.4396; lambda chosen by recsys.tune on a validation split of train
check rp3 0.4000 0.4021  # measured 0.4021; peer: numpy RP3beta, same params (make bench-frontier)
check slim 0.4360 0.4380  # measured 0.4385; peer: scikit-learn ElasticNet SLIM, same params
check auto 0.4530 0.4466  # 'auto' deploys slim 0.3 + als 0.7: measured 0.4550; slim + als at 0.5 each (0.4523) before its finalists were scored on 4 hold-outs; ALS alone (0.4466) before it held out 0.1 and paired the best three
# auto's leaderboard in the catalog: every candidate, and its 5 finalists with their mean over 4
# hold-outs; what is deployed is the finalist with the best mean.
$P -At -c "SELECT params, metrics->'leaderboard' FROM recsys.models WHERE name = 'auto' AND deployed" | python3 -c '
import json, sys
params, board = sys.stdin.read().split("|", 1)
params, board = json.loads(params), json.loads(board)
finalists = [e for e in board if "ndcg@10_mean" in e]
assert len(board) >= 50, f"the leaderboard has {len(board)} candidates"
assert len(finalists) == 5 and all(e["holdouts"] == 4 for e in finalists), finalists
best = max(finalists, key=lambda e: e["ndcg@10_mean"])
strip = lambda p: [(m["algorithm"], m["weight"]) for m in p["members"]] if "members" in p else p
chosen, mean = strip(best["params"]), best["ndcg@10_mean"]
assert chosen == strip(params), f"deployed {strip(params)}, best mean {chosen}"
print(f"  auto: {len(board)} candidates; deployed the best mean of 5 finalists over 4 hold-outs ({mean:.4f}): {chosen}")
' || { echo "FAIL quality_ml100k: auto's leaderboard"; exit 1; }
# 'auto' on the pos4 split (ratings >= 4 are the positives): measured 0.3422 (slim 0.3 + als 0.7);
# 0.3383 (slim + als at 0.5 each) before the finalists' 4 hold-outs; 0.3339 before it held out
# 0.1 and paired the best three.
SPLIT4=$SHARED/eval/splits/ml100k_implicit_pos4
$P -c "CREATE TABLE train4 (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy train4 FROM '${SPLIT4}_train.csv' WITH (FORMAT csv, HEADER)" -c "CREATE INDEX ON train4 (user_id)" \
   -c "CREATE TABLE test4 (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy test4 FROM '${SPLIT4}_test.csv' WITH (FORMAT csv, HEADER)" \
   -c "SET client_min_messages = warning" -c "SELECT 1 FROM recsys.tune('auto4', 'train4', 'auto') LIMIT 1" >/dev/null
auto4=$($P -At -c "SET client_min_messages = warning" -c "SELECT round(value::numeric, 4) FROM recsys.evaluate('auto4', 'test4', 10) WHERE metric = 'ndcg@10'")
python3 -c "import sys; v = float('$auto4'); print(f'  auto on pos4: NDCG@10 {v:.4f} (floor 0.3400)'); sys.exit(0 if v >= 0.3400 else 1)" \
  || { echo "FAIL quality_ml100k: auto on the pos4 split scores $auto4, under 0.3400"; exit 1; }
check als_tuned 0.4480 0.3554  # random search on validation picks 128 factors, reg_exponent 1: measured 0.4503

ML100K=$SHARED/data/ml-100k
if [ -f "$ML100K/u.item" ]; then
  # two_tower on the same split; item text = title + genre names from u.item (Latin-1).
  python3 - "$ML100K" "$OUT/items.csv" <<'PY'
import csv, sys
d, out = sys.argv[1], sys.argv[2]
genres = [l.split("|")[0] for l in open(f"{d}/u.genre", encoding="latin-1") if l.strip()]
with open(out, "w", newline="") as fh:
    for line in open(f"{d}/u.item", encoding="latin-1"):
        f = line.rstrip("\n").split("|")
        csv.writer(fh).writerow([f[0], f[1] + " " + " ".join(g for g, x in zip(genres, f[5:24]) if x == "1")])
PY
  $P -c "CREATE TABLE items (item_id int PRIMARY KEY, text text)" -c "\copy items FROM '$OUT/items.csv' WITH (FORMAT csv)" \
     -c "SELECT recsys.train('tt', 'train', 'two_tower', items => 'items', item_text => 'text')" \
     -c "SELECT recsys.train('content', 'train', 'content', items => 'items', item_text => 'text')" >/dev/null
  # no peer: our own measured figure (implicit ALS 0.3554 on this split). two_tower's NDCG moves
  # with any change of rounding: seeds 42/1/2 gave 0.3773/0.3908/0.3667 by recsys.evaluate
  # (2026-12-03), and this check has seen 0.3688-0.3747 across builds and CPUs (AVX2 and AVX-512
  # products round differently), so the floor sits below that spread: it catches a broken
  # model, not rounding. For one build and CPU a seed gives one result (checked twice in the backend).
  check tt 0.3650 0.3734
  check content 0.0405 0.0412  # no peer: our own measured figure (text alone is weak here)

  # hybrid: EASE (default lambda) + ALS, score fusion, must reach at least its best member, each
  # trained alone on the same rows.
  $P -c "SELECT recsys.train('hyb', 'train', 'hybrid', '{\"members\": [{\"algorithm\": \"ease\"}, {\"algorithm\": \"als\"}]}')" \
     -c "SELECT recsys.train('ease500', 'train', 'ease')" >/dev/null
  check hyb 0.4450 0.4475  # no peer: our own measured figure (members: ease 0.4381, als 0.4466)
  $P -At -F, -c "SELECT m, value FROM unnest(ARRAY['hyb', 'ease500', 'als']) m, recsys.evaluate(m, 'test', 10) WHERE metric = 'ndcg@10'" > "$OUT/hybrid.csv"
  python3 - "$OUT/hybrid.csv" <<'PY'
import csv, sys
r = {m: float(v) for m, v in csv.reader(open(sys.argv[1]))}
print(f"  hybrid NDCG@10 {r['hyb']:.4f} vs members ease {r['ease500']:.4f}, als {r['als']:.4f}")
assert r["hyb"] >= max(r["ease500"], r["als"]), "hybrid is below its best member"
PY

  # cold items: 10 % of the items held out of training entirely; content must find a user's
  # held-out items among them (recommend with a filter) far more often than a random ranking.
  COLD="abs(hashint4(item_id)) % 10 = 0"
  $P -c "CREATE TABLE ctrain AS SELECT user_id, item_id FROM train WHERE NOT ($COLD)" -c "CREATE INDEX ON ctrain (user_id)" \
     -c "CREATE TABLE ctest AS SELECT DISTINCT user_id, item_id FROM (SELECT user_id, item_id FROM train UNION ALL SELECT user_id, item_id FROM test) a
           WHERE $COLD AND user_id IN (SELECT user_id FROM ctrain)" \
     -c "SELECT recsys.train('ccontent', 'ctrain', 'content', items => 'items', item_text => 'text')" >/dev/null
  $P -At -F, -c "SELECT avg(EXISTS (SELECT 1 FROM recsys.recommend(u.user_id, 10, 'ccontent', filter => '$COLD') r
                                   JOIN ctest t ON t.user_id = u.user_id AND t.item_id = r.item_id)::int),
                        avg(EXISTS (SELECT 1 FROM (SELECT item_id FROM items WHERE $COLD ORDER BY md5(u.user_id || ':' || item_id) LIMIT 10) r
                                   JOIN ctest t ON t.user_id = u.user_id AND t.item_id = r.item_id)::int)
                   FROM (SELECT DISTINCT user_id FROM ctest) u" > "$OUT/cold.csv"
  python3 - "$OUT/cold.csv" <<'PY'
import csv, sys
content, rnd = map(float, next(csv.reader(open(sys.argv[1]))))
print(f"  cold items hit-rate@10: content {content:.4f}, random {rnd:.4f}")
assert content >= 0.7 and content > 1.5 * rnd, "content does not find held-out items"
PY

  # sequential on a per-user temporal split of u.data (recsys.split), against ALS and EASE trained
  # on the same split: it must beat both, and reach its floor.
  $P -c "CREATE TABLE events (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy events FROM '$ML100K/u.data' WITH (FORMAT text)" \
     -c "SELECT * FROM recsys.split('events', 'ttrain', 'ttest', method => 'temporal', time_column => 'ts')" \
     -c "CREATE INDEX ON ttrain (user_id)" \
     -c "SELECT recsys.train('seq', 'ttrain', 'sequential', time_column => 'ts')" \
     -c "SELECT recsys.train('tals', 'ttrain', 'als')" -c "SELECT recsys.train('tease', 'ttrain', 'ease')" >/dev/null
  $P -At -F, -c "SELECT m, value FROM unnest(ARRAY['seq', 'tals', 'tease']) m, recsys.evaluate(m, 'ttest', 10) WHERE metric = 'ndcg@10'" > "$OUT/temporal.csv"
  python3 - "$OUT/temporal.csv" <<'PY'
import csv, sys
r = {m: float(v) for m, v in csv.reader(open(sys.argv[1]))}
print(f"  temporal split NDCG@10: sequential {r['seq']:.4f}, als {r['tals']:.4f}, ease {r['tease']:.4f}")
assert r["seq"] > max(r["tals"], r["tease"]), "sequential does not beat ALS and EASE on the temporal split"
assert r["seq"] >= 0.222, f"sequential NDCG@10 {r['seq']:.4f} below 0.222 (measured 0.2253)"
PY
else
  echo "  SKIP two_tower and sequential: $ML100K/u.item not found"
fi
if [ -f "$ML100K/u1.base" ]; then
  : > "$OUT/rmse.csv"
  for k in 1 2 3 4 5; do
    $P -c "DROP TABLE IF EXISTS base, fold" \
       -c "CREATE TABLE base (user_id int, item_id int, rating real, ts bigint)" \
       -c "\copy base FROM '$ML100K/u$k.base' WITH (FORMAT text)" -c "CREATE INDEX ON base (user_id)" \
       -c "CREATE TABLE fold (user_id int, item_id int, rating real, ts bigint)" \
       -c "\copy fold FROM '$ML100K/u$k.test' WITH (FORMAT text)" \
       -c "SELECT recsys.train('mf$k', 'base', 'biased_mf', rating_column => 'rating')" \
       -c "SELECT recsys.train('pp$k', 'base', 'svdpp', rating_column => 'rating')" \
       -c "SELECT recsys.train('kb$k', 'base', 'item_knn', '{\"similarity\": \"pearson_baseline\"}', rating_column => 'rating')" >/dev/null
    $P -At -F, -c "SELECT 'biased_mf', value FROM recsys.evaluate('mf$k', 'fold') WHERE metric = 'rmse'" \
               -c "SELECT 'svdpp', value FROM recsys.evaluate('pp$k', 'fold') WHERE metric = 'rmse'" \
               -c "SELECT 'pearson_baseline', value FROM recsys.evaluate('kb$k', 'fold') WHERE metric = 'rmse'" >> "$OUT/rmse.csv"
  done
  python3 - "$OUT/rmse.csv" <<'PY'
import csv, sys
from collections import defaultdict
r = defaultdict(list)
for alg, v in csv.reader(open(sys.argv[1])):
    r[alg].append(float(v))
for alg, limit, peer in [("biased_mf", 0.918, 0.9378), ("svdpp", 0.918, 0.9220), ("pearson_baseline", 0.9245, 0.9204)]:
    assert len(r[alg]) == 5, r
    mean = sum(r[alg]) / 5
    print(f"  {alg}: mean RMSE over u1..u5 {mean:.4f} (limit {limit}, Surprise {peer})")
    assert mean <= limit, f"{alg}: mean RMSE {mean:.4f} above {limit}"
PY
else
  echo "  SKIP rating folds: $ML100K not found"
fi
echo "quality_ml100k: ok"
