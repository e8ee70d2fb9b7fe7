#!/usr/bin/env bash
# `make bench-frontier`: rp3beta, slim, ease with dropout (DLAE) and algorithm 'auto' on the shared
# splits, against a numpy RP3beta (Dacrema et al.'s formulation), scikit-learn ElasticNet SLIM
# (Dacrema et al.'s SLIMElasticNetRecommender setup) and a numpy DLAE with the same hyper-parameters — the ones recsys.tune chose on a
# validation split carved from train (random search, 12 points, seed 42), never on test — same
# machine, same run; then diversity: NDCG@10 and intra-list similarity of recommend(...,
# diversity => λ) at λ ∈ {0, 0.3, 0.6} on ML-100K. Writes the "frontier" section of
# benches/REPORT.md (benches/frontier.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
SHARED=${SHARED:-$(pwd)/../shared}
[ -d "$SHARED/eval/splits" ] || { echo "bench-frontier: ../shared/eval not found"; exit 2; }
OUT=$(pwd)/target/bench-frontier && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
VENV=target/py-venv
$VENV/bin/python -c "import numpy, scipy, sklearn" 2>/dev/null || {
  [ -x $VENV/bin/python ] || python3 -m venv $VENV
  $VENV/bin/pip install -q numpy scipy scikit-learn
}
SPLITS=${SPLITS:-ml100k_implicit_all ml100k_implicit_pos4 mllatestsmall_implicit_all}
SLIM_SPACE='{"alpha": {"min": 0.02, "max": 0.5, "log": true}, "l1_ratio": {"min": 0.001, "max": 0.2, "log": true}, "k": [100, 300]}'
DLAE_SPACE='{"lambda": {"min": 50, "max": 1000, "log": true}, "dropout": {"min": 0.1, "max": 0.8}}'
RP3_SPACE='{"alpha": {"min": 0.4, "max": 1.2}, "beta": {"min": 0.2, "max": 0.8}, "k": [100, 200, 400]}'
DB=pg_recsys_bench_frontier
echo "split,model,algorithm,params,fit_s,ndcg" > "$OUT/ours.csv"
for s in $SPLITS; do
  fresh_db $DB
  $P -c "CREATE TABLE train (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy train FROM '$SHARED/eval/splits/${s}_train.csv' WITH (FORMAT csv, HEADER)" \
     -c "CREATE INDEX ON train (user_id)" \
     -c "CREATE TABLE test (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy test FROM '$SHARED/eval/splits/${s}_test.csv' WITH (FORMAT csv, HEADER)" -c "ANALYZE train"
  for m in slim rp3beta dlae auto defaults_slim defaults_rp3beta; do
    case $m in
      slim) q="SELECT 1 FROM recsys.tune('$m', 'train', 'slim', '$SLIM_SPACE', search => 'random', trials => 12) LIMIT 1" ;;
      rp3beta) q="SELECT 1 FROM recsys.tune('$m', 'train', 'rp3beta', '$RP3_SPACE', search => 'random', trials => 12) LIMIT 1" ;;
      dlae) q="SELECT 1 FROM recsys.tune('$m', 'train', 'ease', '$DLAE_SPACE', search => 'random', trials => 12) LIMIT 1" ;;
      auto) q="SELECT 1 FROM recsys.tune('$m', 'train', 'auto') LIMIT 1" ;;
      defaults_*) q="SELECT 1 FROM recsys.train('$m', 'train', '${m#defaults_}')" ;;
    esac
    t0=$(date +%s.%N)
    $P -c "SET client_min_messages = warning" -c "$q" >/dev/null
    wall=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
    $P -At -F'|' -c "SET client_min_messages = warning" \
       -c "SELECT '$s', '$m', m.algorithm, m.params, round((m.metrics->>'fit_seconds')::numeric, 3), e.value
             FROM recsys.models m, recsys.evaluate('$m', 'test', 10) e WHERE m.name = '$m' AND m.deployed AND e.metric = 'ndcg@10'" \
      | python3 -c "import csv, sys; w = csv.writer(sys.stdout); [w.writerow(l.rstrip('\n').split('|')) for l in sys.stdin if l.strip()]" >> "$OUT/ours.csv"
    echo "bench-frontier: $s $m done in ${wall}s (search and final fit)"
  done
  $P -At -c "SELECT metrics->'leaderboard' FROM recsys.models WHERE name = 'auto' AND deployed" > "$OUT/leaderboard_$s.json"
  if [ "$s" = ml100k_implicit_all ]; then
    for m in slim auto; do
      for l in 0 0.3 0.6; do
        $P -c "\copy (SELECT u.user_id AS \"user\", r.item_id AS item, r.rank FROM (SELECT DISTINCT user_id FROM test) u, LATERAL recsys.recommend(u.user_id, 10, '$m', diversity => $l) r ORDER BY 1, 3) TO '$OUT/div_${m}_$l.csv' WITH (FORMAT csv, HEADER)"
      done
    done
  fi
done
psql -X -q -d postgres -c "DROP DATABASE $DB" >/dev/null
echo "bench-frontier: running the peers (numpy RP3beta, scikit-learn SLIM, numpy DLAE)"
OPENBLAS_NUM_THREADS=$(nproc) $VENV/bin/python benches/frontier.py --shared "$SHARED" --ours "$OUT/ours.csv" --dir "$OUT" \
  --cores "$(nproc)" | python3 benches/section.py frontier
echo "bench-frontier: written to benches/REPORT.md (section frontier)"
