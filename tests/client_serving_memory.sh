#!/usr/bin/env bash
# Serving memory does not grow with the number of calls in one statement: a model larger than
# the model cache is decoded on every call, and each call's copy of the stored model file must
# be freed when the call ends (pgrx's typed SPI reads copy values into TopTransactionContext,
# which kept one copy per call until the transaction ended: +380 MB per recommend() call for a
# 9,724-item EASE model, until the kernel killed the backend). Linux /proc only.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_serving_memory
fresh_db $DB
Q="$P -At"
$Q -c "CREATE TABLE clicks AS SELECT DISTINCT user_id, item_id FROM recsys.synthetic_interactions(2500, 3000, 60000, 9)" \
   -c "CREATE INDEX ON clicks (user_id)" \
   -c "SELECT 1 FROM recsys.train('m_ease', 'clicks', 'ease')" >/dev/null
file_mb=$($Q -c "SELECT octet_length(recsys.export_model('m_ease')) / 1048576")
[ "$file_mb" -ge 30 ] || { echo "FAIL: the model file is too small ($file_mb MB) to show a per-call copy"; exit 1; }
peak_kb() {  # peak_kb CALLS: the backend's peak RSS after one statement of CALLS recommend calls
  $Q <<SQL | tail -1
SET recsys.model_cache_mb = 1;
\o /dev/null
SELECT count(*) FROM generate_series(1, $1) u, recsys.recommend(u, 10, 'm_ease');
SELECT recsys.predict(u, 5, 'm_ease') FROM generate_series(1, $1) u;
\o
SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmHWM:\s+(\d+)'))[1];
SQL
}
one=$(peak_kb 1)
many=$(peak_kb 25)
echo "serving memory: a ${file_mb} MB model decoded on every call: peak RSS ${one} kB for 1 call, ${many} kB for 25 calls in one statement"
# 25 kept copies would add 24 x the file; allow two files of slack for the allocator.
[ "$many" -lt $((one + 2 * file_mb * 1024)) ] || { echo "FAIL: serving memory grows with the calls of one statement"; exit 1; }

# Long item texts (compressed by PostgreSQL, so detoasted on every read) are read by text models
# on every call: the same check (this path held before the fix too; it guards text models), and
# the answers still come from the texts.
$Q -c "CREATE TABLE items AS SELECT i AS item_id, repeat('kind' || (i % 40) || ' ', 1500) || 'item' || i AS body
         FROM generate_series(1, 3000) i" \
   -c "SELECT 1 FROM recsys.train('m_text', 'clicks', 'content', items => 'items', item_text => 'body')" >/dev/null
[ "$($Q -c "SELECT pg_column_size(body) < octet_length(body) FROM items LIMIT 1")" = t ] || { echo "FAIL: the long texts are not compressed"; exit 1; }
text_peak() {
  $Q <<SQL | tail -1
\o /dev/null
SELECT count(*) FROM generate_series(1, $1) u, recsys.recommend(u, 10, 'm_text', with_reasons => true);
\o
SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmHWM:\s+(\d+)'))[1];
SQL
}
text_mb=$($Q -c "SELECT sum(octet_length(body)) / 1048576 FROM items")
one=$(text_peak 1)
many=$(text_peak 25)
echo "serving memory: content over ${text_mb} MB of item text: peak RSS ${one} kB for 1 call, ${many} kB for 25 calls"
[ "$many" -lt $((one + 2 * text_mb * 1024)) ] || { echo "FAIL: reading item texts grows with the calls of one statement"; exit 1; }
$Q -c "SELECT reason FROM recsys.recommend(1, 3, 'm_text', with_reasons => true)" | grep -q "shared words: kind" \
  || { echo "FAIL: content recommendations from long texts have no shared words"; exit 1; }
echo "serving memory: ok"
