#!/usr/bin/env bash
# Privileges and injection: functions run as the caller; a role sees and manages only the models
# of roles whose privileges it has; nobody but pg_recsys writes the catalog; names that need
# quoting work and filter/item_text cannot escape their statement.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_security
fresh_db $DB
P="$P -At"
fail() { echo "FAIL: $*"; exit 1; }
checks=0
# as ROLE SQL: the output of SQL run under SET ROLE (ROLE = - for the superuser).
as() {
  local role=$1; shift
  if [ "$role" = - ]; then $P -c "$*"; else $P -c "SET ROLE $role" -c "$*"; fi
}
# denied SQLSTATE ROLE SQL: SQL must fail with exactly that SQLSTATE.
denied() {
  local state=$1 role=$2 out; shift 2
  if out=$(psql -X -q -At -d $DB -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "SET ROLE $role" -c "$*" 2>&1); then
    fail "$role: expected $state from: $*"
  fi
  grep -q "ERROR:  $state" <<<"$out" || fail "$role: expected $state from: $* — got: $out"
  checks=$((checks + 1))
}
same() {  # same WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  checks=$((checks + 1))
}

psql -X -q -d postgres -c "DROP ROLE IF EXISTS sec_alice, sec_bob, sec_carol"
psql -X -q -d postgres -c "CREATE ROLE sec_alice" -c "CREATE ROLE sec_bob" -c "CREATE ROLE sec_carol IN ROLE sec_alice"
$P -c "CREATE TABLE alice_clicks AS SELECT user_id, item_id FROM recsys.synthetic_interactions(200, 100, 4000, 5)" \
   -c "ALTER TABLE alice_clicks OWNER TO sec_alice" \
   -c "CREATE TABLE bob_clicks AS SELECT user_id, item_id FROM recsys.synthetic_interactions(200, 100, 4000, 6)" \
   -c "ALTER TABLE bob_clicks OWNER TO sec_bob" \
   -c "CREATE TABLE shared_clicks AS SELECT user_id, item_id FROM recsys.synthetic_interactions(200, 100, 4000, 7)" \
   -c "GRANT SELECT ON shared_clicks TO sec_alice"

# Training runs as the caller: alice trains on her table; bob cannot read it.
as sec_alice "SELECT version FROM recsys.train('am', 'alice_clicks', 'item_knn')" >/dev/null
same "owner of am" "$(as - "SELECT owner FROM recsys.models WHERE name = 'am'")" sec_alice
denied 42501 sec_bob "SELECT recsys.train('bm', 'alice_clicks', 'item_knn')"
same "no model after the failed train" "$(as - "SELECT count(*) FROM recsys.models WHERE name = 'bm'")" 0

# Bob sees none of alice's catalog rows, cannot use her model, and cannot take or drop its name.
same "bob sees alice's models" "$(as sec_bob "SELECT count(*) FROM recsys.models")" 0
for t in model_blobs item_neighbors user_neighbors item_neighbor_lists user_neighbor_lists item_factors user_factors; do
  same "bob sees recsys.$t rows" "$(as sec_bob "SELECT count(*) FROM recsys.$t")" 0
done
denied 42704 sec_bob "SELECT * FROM recsys.recommend(1, 5, 'am')"
denied 42704 sec_bob "SELECT * FROM recsys.similar_items(1, 5, 'am')"
denied 42704 sec_bob "SELECT recsys.predict(1, 1, 'am')"
denied 42501 sec_bob "SELECT recsys.train('am', 'bob_clicks', 'item_knn')"
denied 42501 sec_bob "SELECT recsys.drop_model('am')"
denied 42501 sec_bob "SELECT recsys.deploy('am', 1)"
# The catalog is not writable by PUBLIC.
denied 42501 sec_bob "INSERT INTO recsys.models (name, version, algorithm, source, columns) VALUES ('x', 1, 'ease', 'x', '{}')"
denied 42501 sec_bob "UPDATE recsys.models SET deployed = false"
denied 42501 sec_bob "DELETE FROM recsys.models"
denied 42501 sec_bob "DELETE FROM recsys.model_blobs"
denied 42501 sec_bob "TRUNCATE recsys.models"
denied 42501 sec_alice "UPDATE recsys.models SET params = '{}' WHERE name = 'am'"
same "am still version 1, deployed" "$(as - "SELECT string_agg(version || ':' || deployed, ',') FROM recsys.models WHERE name = 'am'")" 1:true
# Bob's own model works for him and is invisible to alice.
as sec_bob "SELECT version FROM recsys.train('bm', 'bob_clicks', 'als', '{\"iterations\": 2}')" >/dev/null
same "bob recommends" "$(as sec_bob "SELECT count(*) FROM recsys.recommend(1, 5, 'bm')")" 5
same "alice sees bob's models" "$(as sec_alice "SELECT count(*) FROM recsys.models WHERE name = 'bm'")" 0
same "alice sees bob's factors" "$(as sec_alice "SELECT count(*) FROM recsys.item_factors")" 0

# Carol is a member of alice: she sees and serves alice's model, retrains it (the new version
# stays alice's), and deploys it.
same "carol recommends from am" "$(as sec_carol "SELECT count(*) FROM recsys.recommend(1, 5, 'am')")" 5
as sec_carol "SELECT version FROM recsys.train('am', 'alice_clicks', 'ease')" >/dev/null
same "am v2 owner" "$(as - "SELECT owner FROM recsys.models WHERE name = 'am' AND version = 2")" sec_alice
as sec_carol "SELECT recsys.deploy('am', 1)" >/dev/null
same "alice sees both versions" "$(as sec_alice "SELECT count(*) FROM recsys.models WHERE name = 'am'")" 2

# Serving reads the live history as the model's owner: alice's model, with her SELECT on
# shared_clicks revoked, can no longer read it through recommend or explain.
as sec_alice "SELECT version FROM recsys.train('sm', 'shared_clicks', 'item_knn')" >/dev/null
same "alice recommends from sm" "$(as sec_alice "SELECT count(*) FROM recsys.recommend(1, 5, 'sm')")" 5
$P -c "REVOKE SELECT ON shared_clicks FROM sec_alice"
denied 42501 sec_alice "SELECT * FROM recsys.recommend(1, 5, 'sm')"
denied 42501 sec_alice "SELECT * FROM recsys.explain(1, 2, 'sm')"
denied 42501 sec_alice "SELECT recsys.train('sm', 'shared_clicks', 'item_knn')"
same "sm keeps one version" "$(as - "SELECT count(*) FROM recsys.models WHERE name = 'sm'")" 1
# A security-restricted write: what the caller defines does not run as the catalog's owner.
$P -c "CREATE SCHEMA IF NOT EXISTS sec_evil AUTHORIZATION sec_bob"
as sec_bob "CREATE FUNCTION sec_evil.hashtext(text) RETURNS int LANGUAGE sql AS 'SELECT 1/0'" >/dev/null
as sec_bob "SET search_path = sec_evil, public; SELECT version FROM recsys.train('bm', 'bob_clicks', 'popularity')" >/dev/null
same "bob's retrain with a hostile search_path" "$(as - "SELECT max(version) FROM recsys.models WHERE name = 'bm'")" 2
echo "privileges: $checks checks passed"

# Injection: identifiers that need quoting work; filter and item_text stay one read-only statement.
$P <<'SQL'
CREATE TABLE "My ""Clicks""; DROP TABLE alice_clicks; --" ("User Id" bigint, "Item;Id" bigint, "Rating's" real);
INSERT INTO "My ""Clicks""; DROP TABLE alice_clicks; --" SELECT user_id, item_id, rating FROM recsys.synthetic_interactions(100, 60, 2000, 9);
CREATE TABLE "Items Table" ("Item;Id" bigint, "Title ""T""" text);
INSERT INTO "Items Table" SELECT i, 'item ' || i || CASE WHEN i % 2 = 0 THEN ' even' ELSE ' odd' END FROM generate_series(1, 60) i;
SQL
src="'\"My \"\"Clicks\"\"; DROP TABLE alice_clicks; --\"'"
$P -c "SELECT version FROM recsys.train('q', $src, 'item_knn', user_column => 'User Id', item_column => 'Item;Id', rating_column => 'Rating''s')" >/dev/null
same "recommend with quoted names" "$($P -c "SELECT count(*) FROM recsys.recommend(1, 5, 'q')")" 5
$P -c "SELECT version FROM recsys.train('qc', $src, 'content', user_column => 'User Id', item_column => 'Item;Id',
         items => '\"Items Table\"', item_text => '\"Title \"\"T\"\"\"')" >/dev/null
same "content with quoted names" "$($P -c "SELECT count(*) FROM recsys.recommend(1, 5, 'qc')")" 5
same "quoted filter" "$($P -c "SELECT count(*) FROM recsys.recommend(1, 50, 'qc', filter => \$\$\"Title \"\"T\"\"\" LIKE '%even'\$\$)")" \
     "$($P -c "SELECT count(*) FROM \"Items Table\" WHERE \"Title \"\"T\"\"\" LIKE '%even' AND \"Item;Id\" NOT IN (SELECT \"Item;Id\" FROM $(tr -d "'" <<<"$src") WHERE \"User Id\" = 1)")"
denied 42601 postgres "SELECT * FROM recsys.recommend(1, 5, 'qc', filter => 'true; DROP TABLE alice_clicks')"
denied 42601 postgres "SELECT * FROM recsys.recommend(1, 5, 'qc', filter => 'true) OR (SELECT true FROM pg_sleep(0)); DROP TABLE alice_clicks; --')"
denied 42601 postgres "SELECT recsys.train('qx', $src, 'content', user_column => 'User Id', item_column => 'Item;Id', items => '\"Items Table\"', item_text => '\"Title \"\"T\"\"\"); DROP TABLE alice_clicks; --')"
denied 42602 postgres "SELECT recsys.train('qx', 'alice_clicks; DROP TABLE bob_clicks', 'item_knn')"
denied 42703 postgres "SELECT recsys.train('qx', 'bob_clicks', 'item_knn', user_column => 'user_id\"; DROP TABLE bob_clicks; --')"
same "tables intact" "$($P -c "SELECT count(*) FROM pg_class WHERE relname IN ('alice_clicks', 'bob_clicks', 'Items Table')")" 3
same "no qx model" "$($P -c "SELECT count(*) FROM recsys.models WHERE name = 'qx'")" 0
echo "security: $checks checks passed"
psql -X -q -d postgres -c "DROP DATABASE $DB"
psql -X -q -d postgres -c "DROP ROLE sec_alice, sec_bob, sec_carol"
echo "security: ok"
