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
[ -d "$SHARED/eval/splits" ] || SHARED=/work/shared
[ -d "$SHARED/eval/splits" ] || { echo "bench: ../shared/eval not found"; exit 2; }
OUT=target/bench && mkdir -p $OUT && chmod 777 $OUT
SPLITS="ml100k_implicit_all ml100k_implicit_pos4 mllatestsmall_implicit_all"

VENV=target/bench-venv
if [ ! -x $VENV/bin/python ] || ! $VENV/bin/python -c "import implicit, surprise, matplotlib" 2>/dev/null; then
  python3 -m venv $VENV 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $VENV; }
  $VENV/bin/pip install -q "implicit==0.7.3" "scikit-surprise==1.1.5" numpy scipy matplotlib
fi

now() { date +%s.%N; }
echo "split,algorithm,fit_s,recommend_s,metric,value" > $OUT/ours.csv
for s in $SPLITS; do
  fresh_db pg_recsys_bench
  $P -c "CREATE TABLE train (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy train FROM '$SHARED/eval/splits/${s}_train.csv' WITH (FORMAT csv, HEADER)" \
     -c "CREATE INDEX ON train (user_id)" \
     -c "CREATE TABLE test (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy test FROM '$SHARED/eval/splits/${s}_test.csv' WITH (FORMAT csv, HEADER)" \
     -c "ANALYZE train" -c "ANALYZE test"
  while IFS='|' read -r alg params; do
    fit=$($P -At -c "SELECT seconds FROM recsys.train('m', 'train', '$alg', '$params')")
    t0=$(now)
    $P -c "\copy (SELECT u.user_id, r.item_id, r.rank FROM (SELECT DISTINCT user_id FROM test) u, LATERAL recsys.recommend(u.user_id, 10, 'm') r) TO '/dev/null'"
    rec=$(python3 -c "print(round($(now) - $t0, 4))")
    $P -At -F, -c "SELECT '$s', '$alg', $fit, $rec, metric, value FROM recsys.evaluate('m', 'test', 10)" >> $OUT/ours.csv
    $P -c "SELECT recsys.drop_model('m')" >/dev/null
    echo "bench: $s $alg fit ${fit}s recommend-all ${rec}s"
  done <<'ALGS'
popularity|{}
item_knn|{"k": 100}
ALGS
done
echo "bench: running peers (implicit, numpy EASE, Surprise)"
OPENBLAS_NUM_THREADS=1 $VENV/bin/python benches/peers.py --shared "$SHARED" --splits $SPLITS --out $OUT/peers.json
$VENV/bin/python benches/report.py --ours $OUT/ours.csv --peers $OUT/peers.json --out benches
echo "bench: wrote benches/REPORT.md and benches/*.png"
