#!/usr/bin/env bash
# `make bench-latency`: serving latency and throughput of
#   SELECT * FROM recsys.recommend(:uid, 10, '<model>')
# for uniformly random users, measured with pgbench (custom script, prepared statements, fixed
# duration, every transaction logged) at 1, 2, 4 and 8 clients, on ML-100K models: item_knn, als
# and ease; then (SCALE=1, the default) on an als model (64 factors) trained on a synthetic set
# shaped like MovieLens-20M: recsys.synthetic_interactions(138000, 27000, 20000000, 42), power-law
# item popularity. Writes target/bench/latency/latency.csv (data, model, clients, calls/s,
# p50/p95/p99 ms). DURATION (seconds per run, default 10), MODELS and SCALE can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
SHARED=${SHARED:-$(pwd)/../shared}
[ -d "$SHARED/data" ] || SHARED=/work/shared
DATA=$SHARED/data/ml-100k/u.data
[ -f "$DATA" ] || { echo "bench-latency: $DATA not found"; exit 2; }
OUT=$(pwd)/target/bench/latency && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
DURATION=${DURATION:-10}
MODELS=${MODELS:-"item_knn als ease"}
SCALE=${SCALE:-1}
DB=pg_recsys_latency
fresh_db $DB
$P -c "CREATE TABLE events (user_id int, item_id int, rating real, ts bigint)" \
   -c "\copy events FROM '$DATA' WITH (FORMAT text)" \
   -c "CREATE INDEX ON events (user_id)" -c "ANALYZE events" >/dev/null
echo "data,model,clients,calls_per_s,p50_ms,p95_ms,p99_ms,calls" > "$OUT/latency.csv"
run() {  # data-label table model
  local data=$1 table=$2 model=$3 users
  users=$($P -At -c "SELECT max(user_id) FROM $table")
  printf '\\set uid random(1, %s)\nSELECT * FROM recsys.recommend(:uid, 10, '"'"'%s'"'"');\n' "$users" "$model" > "$OUT/$model.sql"
  for clients in 1 2 4 8; do
    (cd "$OUT" && pgbench -n -M prepared -f "$model.sql" -c $clients -j $clients -T "$DURATION" \
       -l --log-prefix="log_${model}_$clients" $DB > "${model}_$clients.txt" 2>&1)
    python3 - "$OUT" "$model" "$clients" "$data" <<'PY' >> "$OUT/latency.csv"
import glob, re, sys
out, model, clients, data = sys.argv[1:5]
# pgbench's per-transaction log: client_id transaction_no latency_us script_no epoch epoch_us
lat = sorted(int(l.split()[2]) for f in glob.glob(f"{out}/log_{model}_{clients}.*") for l in open(f))
tps = float(re.search(r"tps = ([0-9.]+)", open(f"{out}/{model}_{clients}.txt").read()).group(1))
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"{data},{model},{clients},{tps:.0f},{pct(0.50):.3f},{pct(0.95):.3f},{pct(0.99):.3f},{len(lat)}")
PY
    rm -f "$OUT"/log_"${model}"_"$clients".*
    tail -1 "$OUT/latency.csv" | sed 's/^/bench-latency: /'
  done
}
for model in $MODELS; do
  $P -c "SELECT 1 FROM recsys.train('$model', 'events', '$model')" >/dev/null
  run ml100k events "$model"
done
if [ "$SCALE" = 1 ]; then
  t0=$(date +%s.%N)
  $P -c "CREATE TABLE big AS SELECT user_id, item_id FROM recsys.synthetic_interactions(138000, 27000, 20000000, 42)" \
     -c "CREATE INDEX ON big (user_id)" -c "ANALYZE big" >/dev/null
  echo "bench-latency: 20M-shaped set loaded in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
  $P -c "SELECT 1 FROM recsys.train('als20m', 'big', 'als', '{\"factors\": 64}')" >/dev/null
  $P -At -c "SELECT 'bench-latency: als20m trained: ' || users || ' users, ' || items || ' items, ' || interactions || ' interactions, ' || round(seconds::numeric, 1) || ' s' FROM recsys.models WHERE name = 'als20m' AND deployed"
  run synthetic20m big als20m
fi
psql -X -q -d postgres -c "DROP DATABASE $DB"
column -s, -t "$OUT/latency.csv"
