#!/usr/bin/env bash
# `make demo`: load sample behaviour data into a scratch database, train, and print top-10
# recommendations for a few users next to their recent history.
#   tests/demo.sh            synthetic data from recsys.synthetic_interactions
#   tests/demo.sh DIR        MovieLens: DIR/u.data (ml-100k) or DIR/ratings.csv (ml-latest-small)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DATA=${1:-}
DB=pg_recsys_demo
fresh_db $DB
$P -c "CREATE TABLE interactions (user_id int, item_id int, rating real, ts timestamptz)" \
   -c "CREATE TABLE items (item_id int PRIMARY KEY, title text)"

if [ -z "$DATA" ]; then
  echo "== loading synthetic data: 2,000 users, 1,000 items, 60,000 interactions"
  $P -c "INSERT INTO interactions SELECT * FROM recsys.synthetic_interactions(2000, 1000, 60000, 42)" \
     -c "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 1000) i"
elif [ -f "$DATA/u.data" ]; then
  echo "== loading MovieLens 100K from $DATA"
  python3 -c '
import sys, csv
w = csv.writer(sys.stdout)
for line in open(sys.argv[1]):
    u, i, r, t = line.split("\t")
    w.writerow([u, i, r, t.strip()])' "$DATA/u.data" |
    $P -c "CREATE TEMP TABLE raw (u int, i int, r real, t bigint)" \
       -c "\copy raw FROM STDIN WITH (FORMAT csv)" \
       -c "INSERT INTO interactions SELECT u, i, r, to_timestamp(t) FROM raw"
  if [ -f "$DATA/u.item" ]; then
    python3 -c '
import sys, csv
w = csv.writer(sys.stdout)
for line in open(sys.argv[1], encoding="latin-1"):
    f = line.split("|")
    w.writerow([f[0], f[1]])' "$DATA/u.item" | $P -c "\copy items FROM STDIN WITH (FORMAT csv)"
  fi
elif [ -f "$DATA/ratings.csv" ]; then
  echo "== loading MovieLens latest-small from $DATA"
  $P -c "CREATE TEMP TABLE raw (u int, i int, r real, t bigint)" \
     -c "\copy raw FROM '$DATA/ratings.csv' WITH (FORMAT csv, HEADER)" \
     -c "INSERT INTO interactions SELECT u, i, r, to_timestamp(t) FROM raw"
  if [ -f "$DATA/movies.csv" ]; then
    $P -c "CREATE TEMP TABLE m (i int, title text, genres text)" \
       -c "\copy m FROM '$DATA/movies.csv' WITH (FORMAT csv, HEADER)" \
       -c "INSERT INTO items SELECT i, title FROM m"
  fi
else
  echo "demo: $DATA has neither u.data (ml-100k) nor ratings.csv (ml-latest-small)" >&2
  exit 2
fi
$P -c "CREATE INDEX ON interactions (user_id)" -c "ANALYZE interactions"
$P -c "SELECT count(*) AS interactions, count(DISTINCT user_id) AS users, count(DISTINCT item_id) AS items FROM interactions"

echo "== training"
$P -c "SELECT * FROM recsys.train('popular', 'interactions', 'popularity')" \
   -c "SELECT * FROM recsys.train('demo', 'interactions', 'item_knn', '{\"k\": 100}', time_column => 'ts',
                                  items => 'items', item_text => 'title')"

for u in 1 2 3; do
  echo "== user $u: top-10 recommendations (item_knn) beside the user's 10 most recent interactions"
  $P -c "
    WITH recs AS (
      SELECT r.rank, r.item_id, r.score FROM recsys.recommend($u, 10, 'demo') r),
    hist AS (
      SELECT row_number() OVER (ORDER BY ts DESC, item_id) AS rank, item_id, ts
      FROM interactions WHERE user_id = $u ORDER BY ts DESC, item_id LIMIT 10)
    SELECT coalesce(recs.rank, hist.rank) AS \"#\",
           left(coalesce(ri.title, recs.item_id::text), 40) AS recommended,
           round(recs.score::numeric, 3) AS score,
           left(coalesce(hi.title, hist.item_id::text), 40) AS recently_interacted,
           to_char(hist.ts, 'YYYY-MM-DD') AS \"when\"
    FROM recs FULL JOIN hist ON recs.rank = hist.rank
    LEFT JOIN items ri ON ri.item_id = recs.item_id
    LEFT JOIN items hi ON hi.item_id = hist.item_id
    ORDER BY 1"
done
echo "== why: user 1's top 5 with reasons"
$P -c "SELECT r.rank, left(coalesce(i.title, r.item_id::text), 40) AS recommended, r.reason
       FROM recsys.recommend(1, 5, 'demo', with_reasons => true) r LEFT JOIN items i USING (item_id) ORDER BY r.rank"
echo "== a brand-new user (no history) gets the popularity answer"
$P -c "SELECT * FROM recsys.recommend(-1, 5, 'demo', with_reasons => true)"
echo "demo: database $DB on the scratch cluster: psql -h \"$PGHOST\" -p $PGPORT -U postgres $DB (or make psql for a fresh database)"
