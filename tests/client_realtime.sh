#!/usr/bin/env bash
# Serving across connections: a backend that has a model cached sees a new version as soon as
# another connection's train commits, and sees new behaviour rows at once, without retraining.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_realtime
fresh_db $DB
P="$P -At"
$P -c "CREATE TABLE clicks AS SELECT user_id, item_id FROM recsys.synthetic_interactions(300, 200, 6000, 3)" \
   -c "CREATE INDEX ON clicks (user_id)" \
   -c "SELECT recsys.train('m', 'clicks', 'popularity')" >/dev/null

# One long-lived session (A) runs everything below; \! runs a second connection (B) in between.
out=$($P <<SQL
SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(1, 5, 'm');
\! psql -X -q -At -d $DB -c "SELECT recsys.train('m', 'clicks', 'item_knn')" >/dev/null
SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(1, 5, 'm');
SELECT version FROM recsys.models WHERE name = 'm' AND deployed;
SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(-7, 5, 'm');
\! psql -X -q -At -d $DB -c "INSERT INTO clicks SELECT -7, item_id FROM clicks WHERE user_id = 1"
SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(-7, 5, 'm');
SQL
)
mapfile -t lines <<<"$out"
echo "popularity v1 for user 1:  ${lines[0]}"
echo "item_knn v2 for user 1:    ${lines[1]}"
echo "new user -7, cold:         ${lines[3]}"
echo "user -7 after copying history of user 1: ${lines[4]}"
[ "${lines[2]}" = 2 ] || { echo "FAIL: version 2 should be deployed"; exit 1; }
[ "${lines[0]}" != "${lines[1]}" ] || { echo "FAIL: session A still serves the cached version 1"; exit 1; }
[ "${lines[3]}" != "${lines[4]}" ] || { echo "FAIL: new rows did not change the answer"; exit 1; }
[ "${lines[1]}" = "${lines[4]}" ] || { echo "FAIL: same history should give the same answer"; exit 1; }
echo "realtime: ok"
