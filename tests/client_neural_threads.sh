#!/usr/bin/env bash
# A neural training stays inside the threads it was given and says where it runs:
# - the backend's threads after a sequential training are the threads it had before (the
#   training pool is gone; Candle's own element-wise pool, sized by the host's cores, was never
#   started: _PG_init settles CANDLE_NUM_THREADS), and during it never more than
#   recsys.max_threads besides the backend itself;
# - the training's memory goes back when it ends: the backend does not keep most of its peak
#   (mimalloc's purge delay is only raised while a training runs, src/engine/memory.rs);
# - serving that model (recommend, similar_items) starts no thread at all: rayon's global pool,
#   one thread per core, kept for the backend's life, is never started;
# - a NOTICE names the device: "ncf trains on cpu", and with recsys.device = 'auto' the choice.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_neural_threads
fresh_db $DB
fail() { echo "FAIL: $*"; exit 1; }
# 300 users × 60 time-ordered events: batches of 128 windows × 50 positions × 64 factors, so
# Candle's element-wise ops are past the size it runs on its own pool.
$P -c "CREATE TABLE ev AS SELECT user_id, item_id, timestamptz '2024-01-01' + row_number() OVER (PARTITION BY user_id ORDER BY item_id) * interval '1 minute' AS ts
       FROM recsys.synthetic_interactions(300, 400, 18000, 5)" -c "CREATE INDEX ON ev (user_id)" >/dev/null

coproc C { psql -X -q -At -d $DB 2>&1; }
ask() { local l; echo "$1;" >&"${C[1]}"; read -r -t 600 l <&"${C[0]}"; echo "$l"; }
pid=$(ask "SELECT pg_backend_pid()")
threads() { ls "/proc/$pid/task" | wc -l; }
before=$(threads)
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
rss_before=$(status_kb VmRSS)
ask "SELECT set_config('recsys.max_threads', '2', false)" >/dev/null
# Sample the backend's thread count while it trains.
peak=$before
echo "SELECT count(*) FROM recsys.train('seq', 'ev', 'sequential', '{\"epochs\": 2}', time_column => 'ts');" >&"${C[1]}"
while :; do
  if read -r -t 0.05 line <&"${C[0]}"; then break; fi
  n=$(threads); [ "$n" -gt "$peak" ] && peak=$n
done
[ "$line" = 1 ] || fail "sequential training: $line"
after=$(threads)
rss_after=$(status_kb VmRSS); hwm=$(status_kb VmHWM)
# Serving the neural model (its products and fused ops) runs on the backend's own thread.
[ "$(ask "SELECT count(*) FROM recsys.recommend(1, 10, 'seq')")" = 10 ] || fail "recommend from the sequential model"
[ "$(ask "SELECT count(*) FROM recsys.similar_items(1, 10, 'seq')")" = 10 ] || fail "similar_items from the sequential model"
served=$(threads)
echo "\\q" >&"${C[1]}"; wait "$C_PID" 2>/dev/null || true
echo "backend threads: before $before, peak while training $peak, after $after, after serving $served"
echo "backend memory: RSS ${rss_before} kB before training, peak ${hwm} kB, ${rss_after} kB after"
[ $((rss_after - rss_before)) -lt $(((hwm - rss_before) / 2)) ] || fail "the backend kept most of the training's memory after it ended"
[ "$served" -eq "$before" ] || fail "serving the sequential model left $((served - before)) thread(s) in the backend (rayon's global pool?)"
[ "$after" -eq "$before" ] || fail "the backend kept $((after - before)) thread(s) after training (Candle's own pool?)"
[ "$peak" -le $((before + 2)) ] || fail "the backend ran $peak threads while training with recsys.max_threads = 2"
[ "$peak" -gt "$before" ] || echo "note: no training thread was sampled (training too short to see)"

out=$(psql -X -q -d $DB -c "SET client_min_messages = notice" \
        -c "SELECT count(*) FROM recsys.train('n', 'ev', 'ncf', '{\"epochs\": 1}')" 2>&1)
grep -q "NOTICE:  pg_recsys: ncf trains on cpu$" <<<"$out" || fail "no device NOTICE for ncf: $out"
out=$(psql -X -q -d $DB -c "SET client_min_messages = notice" -c "SET recsys.device = 'auto'" \
        -c "SELECT count(*) FROM recsys.train('n', 'ev', 'ncf', '{\"epochs\": 1}')" 2>&1)
grep -q "NOTICE:  pg_recsys: ncf trains on cpu (recsys.device = 'auto')" <<<"$out" || fail "no device NOTICE under auto: $out"
echo "client_neural_threads: ok"
