#!/usr/bin/env bash
# Concurrency: 8 connections call recommend() in a loop (pgbench) while another connection trains
# and deploys new versions of the same model over and over: no call fails, every answer is a full
# list of 10 from a complete version, no deadlock; two trains of one name at the same time both
# succeed, as two versions.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_concurrency
fresh_db $DB
P="$P -At"
OUT=$(pwd)/target/concurrency && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
fail() { echo "FAIL: $*"; exit 1; }
DURATION=${DURATION:-20}
$P -c "CREATE TABLE clicks AS SELECT user_id, item_id FROM recsys.synthetic_interactions(2000, 500, 60000, 8)" \
   -c "CREATE INDEX ON clicks (user_id)" -c "SELECT recsys.train('live', 'clicks', 'item_knn')" >/dev/null
log_lines=$(wc -l < "$PGHOST/server.log")
# An incomplete answer (fewer than 10 rows) fails the call with a division by zero.
cat > "$OUT/serve.sql" <<'SQL'
\set uid random(1, 2000)
SELECT CASE WHEN count(*) = 10 THEN 1 ELSE 1 / (count(*) - count(*)) END FROM recsys.recommend(:uid, 10, 'live');
SQL
(cd "$OUT" && pgbench -n -M prepared -f serve.sql -c 8 -j 8 -T "$DURATION" $DB > pgbench.txt 2>&1; echo $? > pgbench.rc) &
bench=$!
trains=0 deploys=0
end=$(( $(date +%s) + DURATION - 2 ))
algs=(als ease popularity item_knn bpr)
while [ "$(date +%s)" -lt "$end" ]; do
  v=$($P -c "SELECT version FROM recsys.train('live', 'clicks', '${algs[$((trains % 5))]}')")
  trains=$((trains + 1))
  if [ $((trains % 2)) = 0 ]; then $P -c "SELECT recsys.deploy('live', $((v - 1)))" >/dev/null; deploys=$((deploys + 1)); fi
done
wait $bench
cat "$OUT/pgbench.txt" | grep -E "processed|failed|tps" | sed 's/^/concurrency: /'
[ "$(cat "$OUT/pgbench.rc")" = 0 ] || { cat "$OUT/pgbench.txt"; fail "pgbench reported errors"; }
calls=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$OUT/pgbench.txt")
[ "${calls:-0}" -gt 0 ] || fail "no calls were made"
if tail -n +"$((log_lines + 1))" "$PGHOST/server.log" | grep -E "deadlock|ERROR" | grep -v "canceling statement" > "$OUT/errors.txt"; then
  cat "$OUT/errors.txt"; fail "errors in the server log during the run"
fi
echo "concurrency: $calls recommend calls from 8 connections, 0 errors, while $trains trains and $deploys deploys of the same model ran"

# Two trains of one name at once: both succeed as separate versions.
before=$($P -c "SELECT max(version) FROM recsys.models WHERE name = 'live'")
$P -c "SELECT version FROM recsys.train('live', 'clicks', 'als')" > "$OUT/a.txt" &
$P -c "SELECT version FROM recsys.train('live', 'clicks', 'ease')" > "$OUT/b.txt" &
wait
got=$(sort -n "$OUT/a.txt" "$OUT/b.txt" | tr '\n' ' ')
[ "$got" = "$((before + 1)) $((before + 2)) " ] || fail "concurrent trains gave versions '$got' after $before"
[ "$($P -c "SELECT count(*) FROM recsys.models WHERE name = 'live' AND deployed")" = 1 ] || fail "not exactly one deployed version"
echo "concurrency: two simultaneous trains of one name -> versions $got"
psql -X -q -d postgres -c "DROP DATABASE $DB"
echo "concurrency: ok"
