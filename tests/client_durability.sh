#!/usr/bin/env bash
# Durability and upgrades: models survive pg_dump -> restore into a new database with the same
# answers; an install of 0.1.0 that has trained models upgrades with ALTER EXTENSION ... UPDATE,
# keeps serving, and ends with the same schema as a fresh install; a crash (kill -9 of the
# postmaster and its backends during a train) leaves a consistent catalog after restart.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
OUT=$(pwd)/target/durability && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
fail() { echo "FAIL: $*"; exit 1; }
MODELS="m_knn m_als m_ease m_ncf m_content m_hybrid m_seq"
answers() {  # answers DB: top-5 of users 1..10 for every model
  psql -X -q -At -d "$1" -c "SELECT string_agg(m || ':' || (SELECT string_agg(item_id::text, ',' ORDER BY rank)
      FROM recsys.recommend(u, 5, m, items => CASE WHEN m = 'm_content' THEN 'items'::regclass END)), ' ' ORDER BY m, u)
    FROM unnest(string_to_array('$MODELS', ' ')) m, generate_series(1, 10) u"
}

# 1. Dump and restore.
DB=pg_recsys_dump
fresh_db $DB
$P -c "CREATE TABLE clicks AS SELECT * FROM recsys.synthetic_interactions(300, 150, 6000, 21)" \
   -c "CREATE INDEX ON clicks (user_id)" \
   -c "CREATE TABLE items AS SELECT i AS item_id, 'item ' || i || ' kind' || (i % 9) AS title FROM generate_series(1, 150) i" \
   -c "SELECT recsys.train('m_knn', 'clicks', 'item_knn')" \
   -c "SELECT recsys.train('m_als', 'clicks', 'als', '{\"iterations\": 3}')" \
   -c "SELECT recsys.train('m_als', 'clicks', 'als')" \
   -c "SELECT recsys.train('m_ease', 'clicks', 'ease')" \
   -c "SELECT recsys.train('m_ncf', 'clicks', 'ncf', '{\"epochs\": 2}')" \
   -c "SELECT recsys.train('m_content', 'clicks', 'content', items => 'items', item_text => 'title')" \
   -c "SELECT recsys.train('m_hybrid', 'clicks', 'hybrid', '{\"members\": [{\"algorithm\": \"ease\"}, {\"algorithm\": \"als\"}]}')" \
   -c "SELECT recsys.train('m_seq', 'clicks', 'sequential', '{\"epochs\": 2}', time_column => 'ts')" \
   -c "SELECT recsys.deploy('m_als', 1)" >/dev/null
before=$(answers $DB)
catalog="SELECT string_agg(concat_ws('/', name, version, algorithm, deployed, owner, users, items, interactions,
           (SELECT md5(string_agg(data, ''::bytea ORDER BY part)) FROM recsys.model_blobs b WHERE b.model_id = m.id),
           (SELECT count(*) FROM recsys.item_neighbors n WHERE n.model_id = m.id),
           (SELECT count(*) FROM recsys.item_factors f WHERE f.model_id = m.id)), ',' ORDER BY name, version)
         FROM recsys.models m"
cat_before=$(psql -X -q -At -d $DB -c "$catalog")
pg_dump -Fc -f "$OUT/dump.pgc" $DB
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS ${DB}_restored" -c "CREATE DATABASE ${DB}_restored"
pg_restore --exit-on-error -d ${DB}_restored "$OUT/dump.pgc"
[ "$(psql -X -q -At -d ${DB}_restored -c "$catalog")" = "$cat_before" ] || fail "the restored catalog differs"
[ "$(answers ${DB}_restored)" = "$before" ] || fail "the restored models answer differently"
# The restored database trains new versions after the restored ones (the id sequence came along).
psql -X -q -At -d ${DB}_restored -c "SELECT version FROM recsys.train('m_knn', 'clicks', 'item_knn')" | grep -qx 2 \
  || fail "a new train after restore is not version 2"
echo "durability: pg_dump -Fc -> pg_restore: $(wc -w <<<"$MODELS") models, $(psql -X -q -At -d $DB -c "SELECT count(*) FROM recsys.models") versions, same catalog and same answers"
psql -X -q -d postgres -c "DROP DATABASE ${DB}_restored"

# 2. Upgrade from 0.1.0.
fingerprint="SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT 'fn ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || pg_get_function_result(p.oid)
         || ' ' || p.provolatile::text || ' ' || p.prosecdef || ' ' || p.proisstrict || ' ' || coalesce(p.proacl::text, '') AS x FROM pg_proc p
   WHERE p.pronamespace = 'recsys'::regnamespace
  UNION ALL SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
         || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum WHERE c.relnamespace = 'recsys'::regnamespace
  UNION ALL SELECT 'rel ' || relname || ' ' || relkind::text || ' rls ' || relrowsecurity || ' ' || coalesce(relacl::text, '')
    FROM pg_class WHERE relnamespace = 'recsys'::regnamespace
  UNION ALL SELECT 'con ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
   WHERE connamespace = 'recsys'::regnamespace
  UNION ALL SELECT 'idx ' || pg_get_indexdef(indexrelid) FROM pg_index
   WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'recsys'::regnamespace)
  UNION ALL SELECT 'pol ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || array_to_string(roles, ',') || ' ' || coalesce(qual, '')
    FROM pg_policies WHERE schemaname = 'recsys'
  UNION ALL SELECT 'cmt ' || classoid::regclass || ' ' || CASE WHEN classoid = 'pg_proc'::regclass THEN objoid::regprocedure::text
                                                               ELSE objoid::regclass::text END || ' ' || objsubid || ' ' || description
    FROM pg_description WHERE (classoid = 'pg_class'::regclass AND objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'recsys'::regnamespace))
       OR (classoid = 'pg_proc'::regclass AND objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'recsys'::regnamespace))
  UNION ALL SELECT 'ext ' || extversion || ' ' || array_length(extconfig, 1) FROM pg_extension WHERE extname = 'pg_recsys') s"
UP=pg_recsys_upgrade
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $UP" -c "CREATE DATABASE $UP"
U="psql -X -q -At -v ON_ERROR_STOP=1 -d $UP"
$U -c "CREATE EXTENSION pg_recsys VERSION '0.1.0'"
[ "$($U -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_recsys'")" = 0.1.0 ] || fail "0.1.0 not installed"
$U -c "CREATE TABLE clicks AS SELECT * FROM recsys.synthetic_interactions(300, 150, 6000, 21)" \
   -c "SELECT recsys.train('m_knn', 'clicks', 'item_knn')" -c "SELECT recsys.train('m_als', 'clicks', 'als')" >/dev/null
old=$($U -c "SELECT string_agg(item_id::text, ',' ORDER BY m, rank) FROM unnest(ARRAY['m_knn', 'm_als']) m, recsys.recommend(7, 10, m)")
# Models written by the 0.2.0 code, one per algorithm (tests/fixtures/models-0.2.0, made by its
# generate.rs), stored as 0.2.0 stored them, with the top 10 that 0.2.0 gave for eight users.
$U -c "ALTER EXTENSION pg_recsys UPDATE TO '0.2.0'"
python3 tests/fixtures/models-0.2.0/load.py | $U >/dev/null
[ "$($U -c "SELECT count(*) FROM recsys.models WHERE name LIKE 'fx_%'")" = 15 ] || fail "the 0.2.0 fixtures did not load"
$U -c "ALTER EXTENSION pg_recsys UPDATE"
# Every expected row must come back: same item at the same rank, same score (to float precision).
fixture_diff=$($U -c "SELECT e.model || ' user ' || e.user_id || ' rank ' || e.rank || ': ' || e.item_id || ' ' || e.score
  || ' got ' || coalesce(r.item_id || ' ' || r.score, 'nothing') FROM fixture_expected e
  LEFT JOIN LATERAL (SELECT * FROM recsys.recommend(e.user_id, 10, 'fx_' || e.model) x WHERE x.rank = e.rank) r ON true
  WHERE r.item_id IS DISTINCT FROM e.item_id OR abs(r.score - e.score) > 1e-5 * greatest(abs(e.score), 1) ORDER BY 1 LIMIT 5")
[ -z "$fixture_diff" ] || fail "models written by 0.2.0 answer differently after the upgrade: $fixture_diff"
[ "$($U -c "SELECT count(*) FROM fixture_expected")" = 1200 ] || fail "the fixture answers are incomplete"
# Exported, an old model is a current-format file that imports and answers the same.
$U -c "SELECT version FROM recsys.import_model('fx_als_again', recsys.export_model('fx_als'), 'fixture_rows', time_column => 't')" >/dev/null
[ "$($U -c "SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(3, 10, 'fx_als_again')")" \
  = "$($U -c "SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(3, 10, 'fx_als')")" ] \
  || fail "an exported 0.2.0 model answers differently once imported"
$U -c "SELECT recsys.drop_model(name) FROM (SELECT DISTINCT name FROM recsys.models WHERE name LIKE 'fx_%') n" \
   -c "DROP TABLE fixture_rows, fixture_items, fixture_expected" >/dev/null
[ "$($U -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_recsys'")" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)" ] \
  || fail "ALTER EXTENSION UPDATE did not reach the current version"
new=$($U -c "SELECT string_agg(item_id::text, ',' ORDER BY m, rank) FROM unnest(ARRAY['m_knn', 'm_als']) m, recsys.recommend(7, 10, m)")
[ "$old" = "$new" ] && [ -n "$new" ] || fail "models trained on 0.1.0 answer differently after the upgrade"
$U -c "SELECT recsys.train('m_knn', 'clicks', 'item_knn')" >/dev/null
fresh_db pg_recsys_fresh
$U -c "$fingerprint" > "$OUT/schema_upgraded.txt"
psql -X -q -At -v ON_ERROR_STOP=1 -d pg_recsys_fresh -c "$fingerprint" > "$OUT/schema_fresh.txt"
[ "$(wc -l < "$OUT/schema_fresh.txt")" -gt 50 ] || fail "the schema fingerprint is too small to mean anything"
diff "$OUT/schema_upgraded.txt" "$OUT/schema_fresh.txt" > "$OUT/schema.diff" \
  || { cat "$OUT/schema.diff"; fail "the upgraded schema differs from a fresh install"; }
echo "durability: 0.1.0 -> $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml) upgrade: models trained on 0.1.0 and 15 models written by 0.2.0 serve the same answers, schema equals a fresh install ($(wc -l < "$OUT/schema_fresh.txt") catalog facts compared)"
psql -X -q -d postgres -c "DROP DATABASE $UP" -c "DROP DATABASE pg_recsys_fresh"

# 3. Crash during training: kill -9 the postmaster and every backend, restart, check the catalog.
psql -X -q -d $DB -c "CREATE TABLE big AS SELECT user_id, item_id FROM recsys.synthetic_interactions(20000, 3000, 1500000, 5)" >/dev/null
versions_before=$(psql -X -q -At -d $DB -c "SELECT count(*) FROM recsys.models")
(psql -X -q -d $DB -c "SELECT recsys.train('m_crash', 'big', 'als', '{\"iterations\": 200}')" > "$OUT/crash_train.txt" 2>&1 || true) &
started=0
for _ in $(seq 1 100); do
  if [ "$(psql -X -q -At -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT recsys.train(''m_crash''%' AND state = 'active'
        AND now() - query_start > interval '2 seconds'")" = 1 ]; then started=1; break; fi
  sleep 0.2
done
# The crash must land in a running train, or the checks below prove nothing.
[ $started = 1 ] || fail "the ALS train to crash did not start"
# Only this run's part of the server log counts (the log is appended across runs).
log_from=$(stat -c %s "$PGHOST/server.log")
DATA=$PGHOST/data
postmaster=$(head -1 "$DATA/postmaster.pid")
# shellcheck disable=SC2046
kill -9 "$postmaster" $(pgrep -P "$postmaster")
wait
grep -q "server closed the connection\|connection to server was lost\|terminat" "$OUT/crash_train.txt" \
  || fail "the train was not running when the server was killed: $(cat "$OUT/crash_train.txt")"
# The killed backends take a moment to release shared memory: retry the start.
for _ in $(seq 1 30); do
  sleep 1
  .ci/cluster start >/dev/null 2>&1 && psql -X -q -At -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
done
tail -c +$((log_from + 1)) "$PGHOST/server.log" | grep -q "database system was interrupted\|was not properly shut down" \
  || fail "no crash recovery in this run's server log"
[ "$(psql -X -q -At -d $DB -c "SELECT count(*) FROM recsys.models WHERE name = 'm_crash'")" = 0 ] || fail "the crashed train left a version"
[ "$(psql -X -q -At -d $DB -c "SELECT count(*) FROM recsys.models")" = "$versions_before" ] || fail "versions changed across the crash"
[ "$(psql -X -q -At -d $DB -c "SELECT count(*) FROM recsys.model_blobs b WHERE NOT EXISTS (SELECT FROM recsys.models m WHERE m.id = b.model_id)")" = 0 ] \
  || fail "orphan blobs after the crash"
[ "$(answers $DB)" = "$before" ] || fail "models answer differently after the crash"
psql -X -q -At -d $DB -c "SELECT version FROM recsys.train('m_crash', 'clicks', 'popularity')" | grep -qx 1 || fail "cannot train after the crash"
echo "durability: kill -9 of the postmaster and backends during an ALS train: recovered, no partial version, every model serves as before"
psql -X -q -d postgres -c "DROP DATABASE $DB"
echo "durability: ok"
