# Sourced by the scripts in tests/: a fresh database on the scratch cluster with pg_recsys in it.
export PGOPTIONS="${PGOPTIONS:--c client_min_messages=warning}"

# fresh_db NAME: drop and create database NAME, create the extension; sets $P to a psql for it.
fresh_db() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  P="psql -X -q -v ON_ERROR_STOP=1 -d $1"
  $P -c "CREATE EXTENSION pg_recsys"
}

# A crash check that sees crashes. A backend that aborts makes the postmaster end every other
# connection and reinitialise — pg_postmaster_start_time() does not change across that — so:
# sentinel_start opens one connection and remembers its backend pid and where the server log
# ends; sentinel_check (at the end) asks the same connection again (it must be the same backend)
# and reads only this run's part of the log for a crashed backend. Both exit the script on failure.
SERVER_LOG=${PGRX_SCRATCH:-$(pwd)/target/scratch-pg}/server.log
sentinel_start() {
  coproc SENTINEL { psql -X -q -At -d "$1"; }
  echo "SELECT pg_backend_pid();" >&"${SENTINEL[1]}"
  read -r -t 30 SENTINEL_PID <&"${SENTINEL[0]}" || { echo "FAIL: the sentinel connection did not open"; exit 1; }
  SENTINEL_LOG_FROM=$(stat -c %s "$SERVER_LOG" 2>/dev/null || echo 0)
}
sentinel_check() {
  local again=
  echo "SELECT pg_backend_pid();" >&"${SENTINEL[1]}" 2>/dev/null || true
  read -r -t 30 again <&"${SENTINEL[0]}" || true
  [ "$again" = "$SENTINEL_PID" ] || { echo "FAIL: the sentinel connection (backend $SENTINEL_PID) did not survive"; exit 1; }
  echo "\\q" >&"${SENTINEL[1]}"
  if tail -c +$((SENTINEL_LOG_FROM + 1)) "$SERVER_LOG" 2>/dev/null \
       | grep -E "terminated by signal|was terminated by|reinitializing|memory allocation of .* failed"; then
    echo "FAIL: the server log shows a crashed backend"; exit 1
  fi
}
