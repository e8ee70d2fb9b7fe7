#!/usr/bin/env bash
# A hostile tenant. A plain login role (mallory) stores code everywhere a model lets her — the
# item_text expression, a view as the behaviour table, a view as the items table, fallback
# chains, hybrid members, the model a session uses by default — and waits for a superuser (or a
# member of her role with more rights) to serve, explain or evaluate her models. Her code checks
# whether it runs as a superuser and then makes her one. Pass: she never becomes one; every
# limit she tries to raise is refused with a clean SQLSTATE; a model larger than memory is a
# clean ERROR (54000 under the ceiling, 53200 above what the machine has), never an abort; a
# sentinel connection opened at the start is still the same backend at the end, and the server
# log of this run has no crashed backend.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_tenants
fresh_db $DB
P="$P -At"
fail() { echo "FAIL: $*"; exit 1; }
checks=0
same() {  # same WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  checks=$((checks + 1))
}
# refused SQLSTATE ROLE SQL: SQL run as ROLE (- for the superuser) fails with exactly SQLSTATE.
refused() {
  local state=$1 role=$2 out; shift 2
  local setrole=(); [ "$role" = - ] || setrole=(-c "SET ROLE $role")
  if out=$(psql -X -q -At -d $DB -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "${setrole[@]}" -c "$*" 2>&1); then
    fail "$role: expected $state from: $*"
  fi
  grep -q "ERROR:  $state" <<<"$out" || fail "$role: expected $state from: $* — got: $out"
  checks=$((checks + 1))
}
as_mallory() { $P -c "SET ROLE ten_mallory" -c "$*"; }
escalated() { $P -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'ten_mallory'"; }

psql -X -q -d postgres -c "DROP ROLE IF EXISTS ten_mallory, ten_member" \
  -c "CREATE ROLE ten_mallory LOGIN" -c "CREATE ROLE ten_member LOGIN CREATEROLE IN ROLE ten_mallory"

# The sentinel: one connection that must survive everything below (see tests/lib.sh).
sentinel_start $DB

# Mallory's code: harmless for her, it makes her a superuser when a superuser runs it.
$P >/dev/null <<'SQL'
CREATE SCHEMA mal AUTHORIZATION ten_mallory;
SET ROLE ten_mallory;
CREATE FUNCTION mal.pwn() RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE ten_mallory SUPERUSER';
  END IF;
  RETURN '';
END $f$;
CREATE TABLE mal.clicks AS SELECT user_id, item_id, rating, ts FROM recsys.synthetic_interactions(300, 120, 6000, 3);
CREATE INDEX ON mal.clicks (user_id);
CREATE TABLE mal.items AS SELECT i AS item_id, 'film ' || i || ' genre' || (i % 7) AS title FROM generate_series(1, 120) i;
-- A behaviour "table" and an items "table" that run her code when read.
CREATE VIEW mal.clicks_v AS SELECT user_id, item_id FROM mal.clicks WHERE mal.pwn() = '';
CREATE VIEW mal.items_v AS SELECT item_id, title FROM mal.items WHERE mal.pwn() = '';
SET search_path = mal, public;
-- item_text calls her function unqualified: it resolves through her search_path at training.
SELECT 1 FROM recsys.train('mal_content', 'mal.clicks', 'content', items => 'mal.items', item_text => $$title || pwn()$$);
SELECT 1 FROM recsys.train('mal_tower', 'mal.clicks', 'two_tower', '{"epochs": 1, "factors": 8, "buckets": 64}',
                           items => 'mal.items', item_text => $$title || pwn()$$);
SELECT 1 FROM recsys.train('mal_hybrid', 'mal.clicks', 'hybrid',
                           '{"members": [{"algorithm": "item_knn"}, {"algorithm": "content"}]}',
                           items => 'mal.items', item_text => $$title || pwn()$$);
SELECT 1 FROM recsys.train('mal_view', 'mal.clicks_v', 'item_knn');
SELECT 1 FROM recsys.train('mal_items_view', 'mal.clicks', 'content', items => 'mal.items_v', item_text => 'title');
SELECT 1 FROM recsys.train('mal_chain', 'mal.clicks', 'item_knn', '{"fallback": "mal_content"}');
SQL

same "mallory trained as herself" "$(escalated)" f

# Every path by which her stored code could run during a superuser's call.
$P -c "CREATE TABLE mal_test AS SELECT user_id, item_id FROM mal.clicks WHERE (user_id + item_id) % 5 = 0" >/dev/null
# Each path is tried on its own: an escalation is recorded and undone, and all are listed.
escalations=()
while read -r sql; do
  out=$($P -c "$sql" 2>&1) || fail "superuser: $sql — $out"
  if [ "$(escalated)" != f ]; then
    escalations+=("$sql")
    $P -c "ALTER ROLE ten_mallory NOSUPERUSER" >/dev/null
  fi
  checks=$((checks + 1))
done <<'CALLS'
SELECT count(*) FROM recsys.recommend(1, 5, 'mal_content')
SELECT count(*) FROM recsys.recommend(1, 5, 'mal_content', with_reasons => true)
SELECT count(*) FROM recsys.explain(1, 7, 'mal_content')
SELECT recsys.predict(1, 7, 'mal_content')
SELECT count(*) FROM recsys.similar_items(7, 5, 'mal_content')
SELECT count(*) FROM recsys.evaluate('mal_content', 'mal_test')
SELECT count(*) FROM recsys.recommend(1, 5, 'mal_tower')
SELECT count(*) FROM recsys.explain(1, 7, 'mal_tower')
SELECT count(*) FROM recsys.recommend(1, 5, 'mal_hybrid', with_reasons => true)
SELECT count(*) FROM recsys.evaluate('mal_hybrid', 'mal_test')
SELECT count(*) FROM recsys.recommend(1, 5, 'mal_view')
SELECT count(*) FROM recsys.explain(1, 7, 'mal_view')
SELECT recsys.predict(1, 7, 'mal_view')
SELECT count(*) FROM recsys.evaluate('mal_view', 'mal_test')
SELECT count(*) FROM recsys.recommend(1, 5, 'mal_items_view')
SELECT count(*) FROM recsys.recommend(999999, 5, 'mal_chain')
SET recsys.default_model = 'mal_content'; SELECT count(*) FROM recsys.recommend(1, 5)
SET search_path = mal, public; SELECT count(*) FROM recsys.recommend(1, 5, 'mal_content')
CALLS
if [ ${#escalations[@]} -gt 0 ]; then
  printf 'escalated by: %s\n' "${escalations[@]}"
  fail "${#escalations[@]} paths ran mallory's code as the superuser"
fi
# Her code did run — as her: the answers use her texts and her rows.
same "content model answers the superuser" "$($P -c "SELECT count(*) FROM recsys.recommend(1, 5, 'mal_content')")" 5
same "the view-backed model answers" "$($P -c "SELECT count(*) FROM recsys.recommend(1, 5, 'mal_view')")" 5
# A superuser's own filter runs as the superuser, so it may not read her view (its code would
# run with superuser rights); over a table the superuser names, it runs.
refused 42501 - "SELECT * FROM recsys.recommend(1, 5, 'mal_items_view', filter => 'item_id > 10')"
same "filter over a plain table" "$($P -c "SELECT count(*) FROM recsys.recommend(1, 5, 'mal_items_view', filter => 'item_id > 10', items => 'mal.items')")" 5
same "no escalation after the filters" "$(escalated)" f
# The same for a member of her role who has more rights than she has (CREATEROLE).
out=$($P -c "SET ROLE ten_member" -c "SELECT count(*) FROM recsys.recommend(1, 5, 'mal_content')" 2>&1) || fail "member: $out"
same "member served" "$out" 5
refused 42501 ten_member "SELECT * FROM recsys.recommend(1, 5, 'mal_items_view', filter => 'item_id > 10')"
same "no escalation after the member's calls" "$(escalated)" f
# The item_text stored with the model is the resolved, schema-qualified query.
same "item_text query is qualified" "$($P -c "SELECT columns->>'item_text_query' LIKE '%mal.pwn()%' FROM recsys.models WHERE name = 'mal_content'")" t
# A model whose owner is gone cannot be served (it would run as nobody).
$P -c "SELECT 1 FROM recsys.train('orphan', 'mal.clicks', 'popularity')" -c "UPDATE recsys.models SET owner = 'ten_gone' WHERE name = 'orphan'" >/dev/null
refused 42704 - "SELECT * FROM recsys.recommend(1, 5, 'orphan')"
echo "tenants: escalation: $checks checks passed"

# Limits belong to the administrator: a plain role lowers them, never raises them. (Once the
# library is loaded a SET above the ceiling is an ERROR; a SET made before it loads is dropped
# with a WARNING when it loads.)
LOAD_LIB="SELECT recsys.jaccard('{1}', '{1}');"
refused 42501 ten_mallory "$LOAD_LIB SET recsys.max_memory_mb = 100000000"
refused 42501 ten_mallory "$LOAD_LIB SET recsys.memory_ceiling_mb = 100000000"
refused 42501 ten_mallory "$LOAD_LIB SET recsys.max_threads = 1000"
refused 42501 ten_mallory "$LOAD_LIB SET recsys.threads_ceiling = 64"
refused 42501 ten_mallory "$LOAD_LIB SET recsys.model_cache_mb = 100000"
refused 42501 ten_mallory "ALTER ROLE ten_mallory SET recsys.max_memory_mb = 100000000"
refused 42501 ten_mallory "CREATE FUNCTION mal.big() RETURNS int LANGUAGE sql SET recsys.max_memory_mb = 100000000 AS 'SELECT 1'"
if [ "$($P -At -c "SELECT current_setting('shared_preload_libraries') ~ 'pg_recsys'")" = t ]; then
  # Preloaded (the scratch cluster is, for recsys.progress): refused before any pg_recsys call.
  refused 42501 ten_mallory "SET recsys.max_memory_mb = 100000000"
  refused 42501 ten_mallory "SET recsys.memory_ceiling_mb = 100000000"
  same "the ceiling stays the administrator's" "$(as_mallory "SHOW recsys.memory_ceiling_mb" | tail -1)" 4GB
else
  same "a SET before the library loads is dropped" \
       "$(as_mallory "SET recsys.max_memory_mb = 100000000; SET recsys.memory_ceiling_mb = 100000000; $LOAD_LIB SHOW recsys.max_memory_mb" 2>/dev/null | tail -1)" 0
  same "the ceiling stays the administrator's" "$(as_mallory "SET recsys.memory_ceiling_mb = 100000000; $LOAD_LIB SHOW recsys.memory_ceiling_mb" 2>/dev/null | tail -1)" 4GB
fi
same "lowering is allowed" "$(as_mallory "$LOAD_LIB SET recsys.max_memory_mb = 10; SHOW recsys.max_memory_mb" | tail -1)" 10MB
same "threads lowered" "$(as_mallory "$LOAD_LIB SET recsys.max_threads = 1; SHOW recsys.max_threads" | tail -1)" 1
# A superuser raises the ceiling, and then the session value under it.
same "superuser raises" "$($P -c "$LOAD_LIB SET recsys.memory_ceiling_mb = 100000000; SET recsys.max_memory_mb = 100000000; SHOW recsys.max_memory_mb" | tail -1)" 100000000MB

# A catalogue too large for memory: EASE over ~100k items (≈ 128 GB even in its cheaper dual form).
$P -c "CREATE TABLE mal.wide AS SELECT u AS user_id, (u * 37 + k * 7919) % 100000 AS item_id FROM generate_series(1, 5000) u, generate_series(1, 40) k" \
   -c "ALTER TABLE mal.wide OWNER TO ten_mallory" >/dev/null
refused 54000 ten_mallory "SELECT recsys.train('mal_wide', 'mal.wide', 'ease')"
refused 53200 - "$LOAD_LIB SET recsys.memory_ceiling_mb = 100000000; SET recsys.max_memory_mb = 100000000; SELECT recsys.train('su_wide', 'mal.wide', 'ease')"
same "no version of the refused trains" "$($P -c "SELECT count(*) FROM recsys.models WHERE name IN ('mal_wide', 'su_wide')")" 0
same "no escalation at the end" "$(escalated)" f

# The sentinel is the same backend, and nothing crashed in this run's part of the server log.
sentinel_check
checks=$((checks + 1))
echo "tenants: $checks checks passed (no escalation, every refusal a clean SQLSTATE, the sentinel survived)"
psql -X -q -d postgres -c "DROP DATABASE $DB"
psql -X -q -d postgres -c "DROP ROLE ten_mallory, ten_member"
echo "tenants: ok"
