#!/usr/bin/env bash
# Background training and progress: recsys.train_async returns at once and a background worker
# trains as the calling role; recsys.jobs shows queued/running/done/failed/cancelled with the
# error's SQLSTATE; a failed or cancelled job leaves no version; a rolled-back train_async leaves
# no job; recsys.max_jobs makes further jobs wait; another role sees none of it and cannot cancel
# it; recsys.progress shows the training (phase, step of steps, loss) to any session of a role
# that may see it, and nothing once it ended; a killed worker shows as failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
fail() { echo "FAIL: $*"; exit 1; }
DB=pg_recsys_jobs
fresh_db $DB
Q="psql -X -q -At -v ON_ERROR_STOP=1 -d $DB"
$Q -c "DROP ROLE IF EXISTS jobs_alice" -c "DROP ROLE IF EXISTS jobs_bob" \
   -c "CREATE ROLE jobs_alice LOGIN" -c "CREATE ROLE jobs_bob LOGIN" -c "GRANT CREATE ON SCHEMA public TO jobs_alice"
A="psql -X -q -At -v ON_ERROR_STOP=1 -U jobs_alice -d $DB"
B="psql -X -q -At -v ON_ERROR_STOP=1 -U jobs_bob -d $DB"
$A -c "CREATE TABLE clicks AS SELECT * FROM recsys.synthetic_interactions(3000, 1500, 300000, 8)" -c "CREATE INDEX ON clicks (user_id)"
sentinel_start $DB

running_pid() {  # running_pid ID: wait (15 s at most) until job ID runs; prints its worker's pid
  local pid= i
  for i in $(seq 1 300); do
    pid=$($Q -c "SELECT pid FROM recsys.jobs WHERE id = $1 AND state = 'running'")
    [ -n "$pid" ] && break
    sleep 0.05
  done
  echo "$pid"
}

wait_job() {  # wait_job ID: until it is done, failed or cancelled (60 s at most); prints the state
  local s i
  for i in $(seq 1 600); do
    s=$($Q -c "SELECT state FROM recsys.jobs WHERE id = $1")
    case $s in done|failed|cancelled) echo "$s"; return 0 ;; esac
    sleep 0.1
  done
  fail "job $1 is still $s after 60 s"
}

# 1. A job trains as its caller and writes its version as train would.
t0=$(date +%s.%N)
j=$($A -c "SELECT recsys.train_async('bg_knn', 'clicks', 'item_knn')")
t1=$(date +%s.%N)
[ "$(wait_job "$j")" = done ] || fail "job $j: $($Q -c "SELECT state, error FROM recsys.jobs WHERE id = $j")"
row=$($Q -c "SELECT j.version, j.role, m.owner, m.deployed, m.algorithm FROM recsys.jobs j JOIN recsys.models m ON m.name = j.model AND m.version = j.version WHERE j.id = $j")
[ "$row" = "1|jobs_alice|jobs_alice|t|item_knn" ] || fail "job $j wrote: $row"
sync=$($A -c "SELECT recsys.train('fg_knn', 'clicks', 'item_knn') IS NOT NULL" \
          -c "SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(5, 10, 'fg_knn')" | tail -1)
bg=$($A -c "SELECT string_agg(item_id::text, ',' ORDER BY rank) FROM recsys.recommend(5, 10, 'bg_knn')")
[ "$sync" = "$bg" ] || fail "the background version answers $bg, the same training in the session $sync"
echo "ok: job $j trained as jobs_alice and answers as recsys.train's version (train_async returned in $(echo "$t1 - $t0" | bc) s)"

# 2. Progress of a running job, seen from other sessions; the job's role may, a stranger may not.
j=$($A -c "SELECT recsys.train_async('bg_als', 'clicks', 'als', '{\"iterations\": 40, \"factors\": 192}')")
seen=
for i in $(seq 1 300); do
  seen=$($A -c "SELECT job_id || '|' || model || '|' || algorithm || '|' || phase || '|' || steps || '|' || (metric IS NOT NULL) || '|' || (seconds_left >= 0) FROM recsys.progress WHERE job_id = $j AND phase = 'fit' AND metric IS NOT NULL")
  [ -n "$seen" ] && break
  sleep 0.05
done
[ "$seen" = "$j|bg_als|als|fit|40|true|true" ] || fail "recsys.progress did not show job $j fitting (saw '$seen')"
[ "$($A -c "SELECT state FROM recsys.jobs WHERE id = $j")" = running ] || fail "job $j is not running while it fits"
[ "$($B -c "SELECT count(*) FROM recsys.progress")" = 0 ] || fail "another role sees jobs_alice's training in recsys.progress"
[ "$($B -c "SELECT count(*) FROM recsys.jobs")" = 0 ] || fail "another role sees jobs_alice's jobs"
out=$($B -c "SELECT recsys.cancel_job($j)" 2>&1 || true)
echo "$out" | grep -q "does not exist" || fail "another role could cancel job $j: $out"
[ "$($Q -c "SELECT count(*) FROM recsys.progress WHERE job_id = $j")" = 1 ] || fail "a superuser does not see the training"
[ "$(wait_job "$j")" = done ] || fail "job $j did not finish"
[ "$($Q -c "SELECT count(*) FROM recsys.progress")" = 0 ] || fail "recsys.progress still shows a training after it ended"
echo "ok: recsys.progress showed job $j (phase fit, step of 40, loss, time left) to its role and a superuser, not to another role"

# 3. A failing job records why (with the SQLSTATE) and leaves no version.
$A -c "CREATE TABLE short_lived AS SELECT * FROM clicks LIMIT 100"
j=$($A -c "BEGIN" -c "SELECT recsys.train_async('bg_gone', 'short_lived', 'item_knn')" -c "DROP TABLE short_lived" -c "COMMIT" | sed -n 1p)
[ "$(wait_job "$j")" = failed ] || fail "a job over a dropped table did not fail"
[ "$($A -c "SELECT sqlstate || '|' || (error LIKE '%no longer exists%') FROM recsys.jobs WHERE id = $j")" = "42P01|true" ] \
  || fail "job $j: $($A -c "SELECT error, sqlstate FROM recsys.jobs WHERE id = $j")"
j=$($A -c "SELECT recsys.train_async('bg_time', 'clicks', 'sequential')" 2>&1 || true)
echo "$j" | grep -q "needs a time column" || fail "train_async did not check its request at once: $j"
[ "$($Q -c "SELECT count(*) FROM recsys.models WHERE name IN ('bg_gone', 'bg_time')")" = 0 ] || fail "a failed job left a version"
echo "ok: a failed job records 42P01 and leaves no version; a bad request is refused by train_async itself"

# 4. Rolled back: no job, no training.
$A -c "BEGIN" -c "SELECT recsys.train_async('bg_rolled', 'clicks', 'item_knn')" -c "ROLLBACK" >/dev/null
sleep 1
[ "$($Q -c "SELECT count(*) FROM recsys.job_runs WHERE model = 'bg_rolled'")" = 0 ] || fail "a rolled-back train_async left a job"
[ "$($Q -c "SELECT count(*) FROM recsys.models WHERE name = 'bg_rolled'")" = 0 ] || fail "a rolled-back train_async trained"
echo "ok: a rolled-back train_async leaves no job and trains nothing"

# A role that cannot log in cannot have a worker connect as it: refused at once, nothing queued.
$Q -c "DROP ROLE IF EXISTS jobs_group" -c "CREATE ROLE jobs_group NOLOGIN" -c "GRANT jobs_group TO jobs_alice" -c "GRANT SELECT ON clicks TO jobs_group"
out=$($A -v VERBOSITY=verbose -c "SET ROLE jobs_group" -c "SELECT recsys.train_async('bg_group', 'clicks', 'item_knn')" 2>&1 || true)
echo "$out" | grep -q "42501" || fail "train_async as a NOLOGIN role was not refused with 42501: $out"
[ "$($Q -c "SELECT count(*) FROM recsys.job_runs WHERE model = 'bg_group'")" = 0 ] || fail "a refused train_async queued a job"
echo "ok: train_async as a role without LOGIN is 42501 at once"

# 5. recsys.max_jobs = 1: the second job waits queued; cancelling it and the running one.
$Q -c "ALTER DATABASE $DB SET recsys.max_jobs = 1"
j1=$($A -c "SELECT recsys.train_async('bg_long', 'clicks', 'als', '{\"iterations\": 200, \"factors\": 256}')")
j2=$($A -c "SELECT recsys.train_async('bg_next', 'clicks', 'item_knn')")
running_pid "$j1" >/dev/null
sleep 1
[ "$($A -c "SELECT state FROM recsys.jobs WHERE id = $j2")" = queued ] || fail "with max_jobs 1 the second job did not wait"
[ "$($A -c "SELECT recsys.cancel_job($j2)")" = t ] || fail "cancel_job of a queued job did not say true"
[ "$(wait_job "$j2")" = cancelled ] || fail "the queued job was not cancelled"
[ "$($A -c "SELECT recsys.cancel_job($j1)")" = t ] || fail "cancel_job of the running job did not say true"
[ "$(wait_job "$j1")" = cancelled ] || fail "the running job was not cancelled: $($A -c "SELECT error FROM recsys.jobs WHERE id = $j1")"
[ "$($A -c "SELECT sqlstate FROM recsys.jobs WHERE id = $j1")" = 57014 ] || fail "a cancelled job does not record 57014"
[ "$($A -c "SELECT recsys.cancel_job($j1)")" = f ] || fail "cancel_job of an ended job did not say false"
[ "$($Q -c "SELECT count(*) FROM recsys.models WHERE name IN ('bg_long', 'bg_next')")" = 0 ] || fail "a cancelled job left a version"
$Q -c "ALTER DATABASE $DB RESET recsys.max_jobs"
echo "ok: with recsys.max_jobs = 1 job $j2 waited queued; both cancelled (57014), no version"

# 6. A worker killed without a word shows as failed.
j=$($A -c "SELECT recsys.train_async('bg_killed', 'clicks', 'als', '{\"iterations\": 200, \"factors\": 256}')")
pid=$(running_pid "$j")
[ -n "$pid" ] || fail "job $j did not start"
$Q -c "SELECT pg_terminate_backend($pid)" >/dev/null
[ "$(wait_job "$j")" = failed ] || fail "a terminated job is not failed"
[ "$($Q -c "SELECT count(*) FROM recsys.models WHERE name = 'bg_killed'")" = 0 ] || fail "a terminated job left a version"
echo "ok: a terminated worker's job shows failed, no version"

sentinel_check
echo "client_jobs: all checks passed"
