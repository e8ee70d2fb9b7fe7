#!/usr/bin/env bash
# Run the pg_regress golden tests in pg_test/ against the scratch cluster (pg_regress itself, since
# `cargo pgrx regress` refuses root). Fails if any test file lacks its expected output, because
# pg_regress would silently skip it.
set -euo pipefail
PG_REGRESS=${1:?usage: tests/regress.sh PATH_TO_PG_REGRESS}
cd "$(dirname "$0")/.."
missing=0
tests=()
for f in pg_test/sql/*.sql; do
  t=$(basename "$f" .sql)
  tests+=("$t")
  if [ ! -f "pg_test/expected/$t.out" ]; then
    echo "regress: pg_test/sql/$t.sql has no pg_test/expected/$t.out" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1
. tests/lib.sh
DB=pg_recsys_regress
fresh_db $DB
rm -rf target/regress && mkdir -p target/regress
chmod 777 target/regress
if ! "$PG_REGRESS" --use-existing --dbname=$DB --inputdir=pg_test --outputdir=target/regress \
    --bindir="$(dirname "$(command -v psql)")" "${tests[@]}"; then
  cat target/regress/regression.diffs >&2 || true
  exit 1
fi
