#!/usr/bin/env bash
# Scheduled retraining with pg_cron (Debian's postgresql-15-cron, installed by .ci/setup). A
# cluster of its own configured as pg_cron needs it (shared_preload_libraries, cron.database_name,
# jobs in background workers: no TCP connection needed). A role that is not a superuser schedules
# `recsys.train` every minute — pg_cron 1.4 (Debian 12's) has no sub-minute schedules, so the test
# waits for two runs, up to about two minutes — while another connection keeps calling
# recommend(): every call must answer in full, each run must deploy a new version owned by the
# scheduling role, and the newest is what recommend serves.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --bindir)
if [ ! -f "$($BIN/pg_config --pkglibdir)/pg_cron.so" ]; then
  echo "FAIL: pg_cron is not installed (apt-get install postgresql-15-cron; .ci/setup does it)"; exit 1
fi
ROOT=$(pwd)/target/cron
PORT=28919
as_pg() { sudo -u postgres "$@"; }
fail() { echo "FAIL: $*"; exit 1; }
LOOP_PID=
finish() {
  [ -n "$LOOP_PID" ] && kill "$LOOP_PID" 2>/dev/null || true
  [ -f "$ROOT/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$ROOT/data" -m immediate stop >/dev/null 2>&1 || true
}
trap finish EXIT
finish
rm -rf "$ROOT" && mkdir -p "$ROOT" && chown postgres: "$ROOT" && chmod 755 "$ROOT"
d=$ROOT; while [ "$d" != / ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
as_pg "$BIN/initdb" -D "$ROOT/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$ROOT/data/postgresql.conf" <<EOF
shared_preload_libraries = 'pg_cron'
cron.database_name = 'shop'
cron.use_background_workers = on
max_worker_processes = 16
EOF
as_pg "$BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/server.log" -w start -o "-p $PORT -k $ROOT -c listen_addresses=''" >/dev/null
export PGHOST=$ROOT PGPORT=$PORT PGOPTIONS="-c client_min_messages=warning"
psql -X -q -U postgres -d postgres -c "CREATE DATABASE shop"
SU="psql -X -q -At -v ON_ERROR_STOP=1 -U postgres -d shop"
AS="psql -X -q -At -v ON_ERROR_STOP=1 -U trainer -d shop"
$SU -c "CREATE EXTENSION pg_recsys" -c "CREATE EXTENSION pg_cron" \
    -c "CREATE ROLE trainer LOGIN" -c "GRANT USAGE ON SCHEMA cron TO trainer" -c "GRANT CREATE ON SCHEMA public TO trainer"
$AS -c "CREATE TABLE clicks AS SELECT * FROM recsys.synthetic_interactions(400, 200, 8000, 5)" \
    -c "CREATE INDEX ON clicks (user_id)" \
    -c "SELECT recsys.train('nightly', 'clicks', 'item_knn')" >/dev/null

# A client that keeps asking for recommendations while the schedule retrains.
: >"$ROOT/answers"
( while :; do
    psql -X -q -At -U postgres -d shop -c "SELECT count(*) FROM recsys.recommend(7, 10, 'nightly')" >>"$ROOT/answers" 2>&1 || echo "error" >>"$ROOT/answers"
    sleep 0.2
  done ) &
LOOP_PID=$!

job=$($AS -c "SELECT cron.schedule('retrain-nightly', '* * * * *', \$\$SELECT recsys.train('nightly', 'clicks', 'item_knn')\$\$)")
echo "scheduled job $job every minute; waiting for two runs"
for i in $(seq 1 75); do
  [ "$($SU -c "SELECT max(version) FROM recsys.models WHERE name = 'nightly'")" -ge 3 ] && break
  sleep 2
done
$AS -c "SELECT cron.unschedule('retrain-nightly')" >/dev/null
kill "$LOOP_PID"; wait "$LOOP_PID" 2>/dev/null || true; LOOP_PID=

runs=$($SU -c "SELECT string_agg(status || coalesce(': ' || return_message, ''), '; ' ORDER BY runid) FROM cron.job_run_details WHERE jobid = $job")
latest=$($SU -c "SELECT max(version) FROM recsys.models WHERE name = 'nightly'")
[ "$latest" -ge 3 ] || fail "two scheduled runs did not deploy two new versions in 150 s (latest version $latest; runs: $runs)"
[ "$($SU -c "SELECT count(*) FROM cron.job_run_details WHERE jobid = $job AND status = 'succeeded'")" -ge 2 ] \
  || fail "pg_cron does not record two succeeded runs: $runs"
owners=$($SU -c "SELECT string_agg(DISTINCT owner::text, ',') FROM recsys.models WHERE name = 'nightly'")
[ "$owners" = trainer ] || fail "scheduled versions are owned by $owners, not by the role that scheduled them"
[ "$($SU -c "SELECT version FROM recsys.models WHERE name = 'nightly' AND deployed")" = "$latest" ] \
  || fail "the newest scheduled version $latest is not the deployed one"
calls=$(wc -l <"$ROOT/answers")
bad=$(grep -cvx 10 "$ROOT/answers" || true)
[ "$calls" -gt 20 ] || fail "the serving client made only $calls calls"
[ "$bad" = 0 ] || { grep -vx 10 "$ROOT/answers" | sort | uniq -c; fail "$bad of $calls recommend() calls did not answer 10 rows while the schedule retrained"; }
if grep -E "terminated by signal|was terminated by|reinitializing" "$ROOT/server.log"; then
  fail "the server log shows a crashed backend"
fi
echo "ok: pg_cron deployed versions 2..$latest ($runs); $calls recommend() calls meanwhile, all answered 10 rows"
echo "client_cron: all checks passed"
