# Sourced by the scripts in tests/: a fresh database on the scratch cluster with pg_recsys in it.
export PGOPTIONS="${PGOPTIONS:--c client_min_messages=warning}"

# fresh_db NAME: drop and create database NAME, create the extension; sets $P to a psql for it.
fresh_db() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  P="psql -X -q -v ON_ERROR_STOP=1 -d $1"
  $P -c "CREATE EXTENSION pg_recsys"
}
