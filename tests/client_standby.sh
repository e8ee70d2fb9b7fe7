#!/usr/bin/env bash
# Serving from a hot standby. A primary of its own (not the scratch cluster, so the base backup
# stays small) and a streaming replica made with `pg_basebackup -R` on this machine:
#   1. every serving function (recommend with and without reasons and diversity, predict, explain,
#      similar_items, similar_users, evaluate) answers on the standby exactly as on the primary,
#      for neighbour, factor, dense, text and hybrid models;
#   2. rows inserted on the primary change the standby's answer once replayed (live history);
#   3. a new version trained on the primary is served by an open standby connection without
#      reconnecting;
#   4. training on the standby is refused with 25006 (read-only transaction), and the standby's
#      connection survives every call (no crash in its log).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --bindir)
ROOT=$(pwd)/target/standby
P1=28917
P2=28918
as_pg() { sudo -u postgres "$@"; }
fail() { echo "FAIL: $*"; exit 1; }
stop_all() {
  for d in "$ROOT/standby" "$ROOT/primary"; do
    [ -f "$d/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
}
[ -n "${KEEP:-}" ] || trap stop_all EXIT
stop_all
rm -rf "$ROOT" && mkdir -p "$ROOT" && chown postgres: "$ROOT" && chmod 755 "$ROOT"
d=$ROOT; while [ "$d" != / ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done

as_pg "$BIN/initdb" -D "$ROOT/primary" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$BIN/pg_ctl" -D "$ROOT/primary" -l "$ROOT/primary.log" -w start \
  -o "-p $P1 -k $ROOT -c listen_addresses='' -c wal_level=replica -c max_wal_senders=4" >/dev/null
PRI="psql -X -q -v ON_ERROR_STOP=1 -h $ROOT -p $P1 -U postgres -d shop"
STB="psql -X -q -At -h $ROOT -p $P2 -U postgres -d shop"
export PGOPTIONS="-c client_min_messages=warning"
psql -X -q -h "$ROOT" -p $P1 -U postgres -d postgres -c "CREATE DATABASE shop"
$PRI -c "CREATE EXTENSION pg_recsys" \
  -c "CREATE TABLE clicks AS SELECT * FROM recsys.synthetic_interactions(300, 150, 6000, 31)" \
  -c "CREATE INDEX ON clicks (user_id)" \
  -c "CREATE TABLE items AS SELECT i AS item_id, 'item ' || i || ' kind' || (i % 9) AS title FROM generate_series(1, 150) i" \
  -c "CREATE TABLE clicks_test AS SELECT user_id, (item_id % 150) + 1 AS item_id FROM clicks WHERE user_id % 7 = 0 AND item_id % 5 = 0" \
  -c "SELECT recsys.train('m_knn', 'clicks', 'item_knn')" \
  -c "SELECT recsys.train('m_uknn', 'clicks', 'user_knn')" \
  -c "SELECT recsys.train('m_als', 'clicks', 'als', '{\"iterations\": 4}')" \
  -c "SELECT recsys.train('m_ease', 'clicks', 'ease')" \
  -c "SELECT recsys.train('m_rp3', 'clicks', 'rp3beta')" \
  -c "SELECT recsys.train('m_content', 'clicks', 'content', items => 'items', item_text => 'title')" \
  -c "SELECT recsys.train('m_hybrid', 'clicks', 'hybrid', '{\"members\": [{\"algorithm\": \"ease\"}, {\"algorithm\": \"als\"}]}')" >/dev/null

as_pg "$BIN/pg_basebackup" -h "$ROOT" -p $P1 -U postgres -D "$ROOT/standby" -R -X stream -c fast >/dev/null
as_pg "$BIN/pg_ctl" -D "$ROOT/standby" -l "$ROOT/standby.log" -w start \
  -o "-p $P2 -k $ROOT -c listen_addresses='' -c hot_standby=on" >/dev/null
[ "$($STB -c "SELECT pg_is_in_recovery()")" = t ] || fail "the standby is not in recovery"

# Wait until the standby has replayed everything the primary has written so far.
replayed() {
  local lsn i
  lsn=$($PRI -At -c "SELECT pg_current_wal_lsn()")
  for i in $(seq 1 100); do
    [ "$($STB -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && return 0
    sleep 0.1
  done
  fail "the standby did not replay up to $lsn in 10 s"
}

MODELS="m_knn m_uknn m_als m_ease m_rp3 m_content m_hybrid"
# Everything the serving functions give for a few users and items, one line per model.
SERVE="SELECT m || ' | ' || concat_ws(' | ',
    (SELECT string_agg(item_id || ':' || round(score::numeric, 4), ',' ORDER BY rank)
       FROM recsys.recommend(u, 5, m, items => CASE WHEN m = 'm_content' THEN 'items'::regclass END)),
    (SELECT string_agg(item_id::text || coalesce(reason, ''), ',' ORDER BY rank)
       FROM recsys.recommend(u, 3, m, items => 'items', with_reasons => true)),
    (SELECT string_agg(item_id::text, ',' ORDER BY rank)
       FROM recsys.recommend(u, 5, m, diversity => 0.5) WHERE m NOT IN ('m_uknn', 'm_content')),
    (SELECT string_agg(item_id::text, ',' ORDER BY rank)
       FROM recsys.recommend(u, 5, m, filter => 'item_id % 2 = 0', items => 'items')),
    round(recsys.predict(u, 7, m)::numeric, 4),
    (SELECT string_agg(because_item_id || ':' || round(contribution::numeric, 4), ',')
       FROM recsys.explain(u, 7, m, 3) WHERE m NOT IN ('m_content')),
    (SELECT string_agg(item_id::text, ',') FROM recsys.similar_items(u, 3, m) WHERE m NOT IN ('m_uknn')),
    (SELECT string_agg(user_id::text, ',') FROM recsys.similar_users(u, 3, m) WHERE m IN ('m_uknn', 'm_als')))
  FROM unnest(string_to_array('$MODELS', ' ')) m, generate_series(1, 6) u ORDER BY m, u"
EVAL="SELECT string_agg(m || ':' || metric || '=' || round(value::numeric, 6), ' ' ORDER BY m, metric)
  FROM unnest(string_to_array('m_knn m_als m_ease', ' ')) m, recsys.evaluate(m, 'clicks_test', 10)"

replayed
a=$($PRI -At -c "$SERVE"); b=$($STB -c "$SERVE")
[ -n "$a" ] && [ "$(echo "$a" | wc -l)" = 42 ] || fail "the primary's answers are not what the test expects: $a"
[ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") || true; fail "the standby serves other answers than the primary"; }
a=$($PRI -At -c "$EVAL"); b=$($STB -c "$EVAL")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "evaluate differs on the standby: $a / $b"
echo "ok: $(echo "$MODELS" | wc -w) models give identical answers on the primary and the standby"

# An open standby connection (a pool's), kept across what follows.
coproc SB { psql -X -q -At -h "$ROOT" -p $P2 -U postgres -d shop; }
ask() {  # ask SQL: one line back from the open standby connection
  local line
  echo "$1;" >&"${SB[1]}"
  read -r -t 60 line <&"${SB[0]}" || fail "the open standby connection gave no answer to: $1"
  echo "$line"
}
SB_PID=$(ask "SELECT pg_backend_pid()")
TOP="SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(1, 5, 'm_knn')"
ask "$TOP" >/dev/null  # the model is now decoded and cached in that backend

# 2. New rows on the primary reach the standby's answer once replayed.
before=$(ask "$TOP")
$PRI -c "INSERT INTO clicks (user_id, item_id, rating, ts)
         SELECT 1, item_id, 1, now() FROM recsys.recommend(1, 5, 'm_knn')"
replayed
after=$(ask "$TOP")
[ "$after" = "$($PRI -At -c "$TOP")" ] || fail "after the insert the standby ($after) and the primary differ"
[ "$after" != "$before" ] || fail "rows inserted on the primary did not change the standby's answer ($before)"
echo "ok: rows inserted on the primary change the standby's answer once replayed"

# 3. A new version trained on the primary is served by the same standby connection.
VERSION="SELECT version FROM recsys.models WHERE name = 'm_knn' AND deployed"
v1=$(ask "$VERSION")
$PRI -c "SELECT recsys.train('m_knn', 'clicks', 'item_knn', '{\"k\": 5}')" >/dev/null
replayed
v2=$(ask "$VERSION")
[ "$v2" = $((v1 + 1)) ] || fail "the standby sees version $v2 deployed, expected $((v1 + 1))"
now=$(ask "$TOP")
[ "$now" = "$($PRI -At -c "$TOP")" ] || fail "the standby's open connection serves $now, the primary's new version another answer"
nbrs=$(ask "SELECT max(c) FROM (SELECT count(*) c FROM recsys.similar_items(3, 50, 'm_knn')) s")
[ "$nbrs" -le 5 ] || fail "the standby's open connection still serves the old version ($nbrs neighbours, k is now 5)"
echo "ok: version $v2 trained on the primary is served by an open standby connection"

# recsys.progress on a server without pg_recsys preloaded: empty, and it says why.
out=$(PGOPTIONS="-c client_min_messages=notice" $STB -c "SELECT count(*) FROM recsys.progress" 2>&1)
echo "$out" | grep -q "not in shared_preload_libraries" && echo "$out" | grep -qx 0 \
  || fail "recsys.progress without shared_preload_libraries did not say why it is empty: $out"

# Error paths and the model's own items table serve read-only too (a query that marked the
# transaction as writing failed there with XX000 "cannot assign TransactionIds during recovery").
out=$($STB -v VERBOSITY=verbose -c "SELECT * FROM recsys.recommend(1, 5, 'no_such_model')" 2>&1 || true)
echo "$out" | grep -q "42704" || fail "an unknown model on the standby is not 42704: $out"
a=$($PRI -At -c "SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(2, 5, 'm_content', filter => 'item_id % 3 = 0')")
b=$($STB -c "SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(2, 5, 'm_content', filter => 'item_id % 3 = 0')")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "a filter over the model's own items table differs on the standby: $a / $b"

# 4. Training on the standby is refused cleanly; the connection survived it all.
out=$($STB -v VERBOSITY=verbose -c "SELECT recsys.train('m_new', 'clicks', 'item_knn')" 2>&1 || true)
echo "$out" | grep -q "25006" || fail "train on the standby did not fail with 25006: $out"
[ "$(ask "SELECT pg_backend_pid()")" = "$SB_PID" ] || fail "the open standby connection did not survive"
echo "\\q" >&"${SB[1]}"
if grep -E "terminated by signal|was terminated by|reinitializing" "$ROOT/standby.log" "$ROOT/primary.log"; then
  fail "a server log shows a crashed backend"
fi
echo "client_standby: all checks passed"
