#!/usr/bin/env bash
# Models in and out as safetensors files, checked from Python as a user would: numpy reproduces
# recommend() from an exported ALS model; factors trained by implicit import and serve the
# same top 10 for their users, and fold in a user they never saw; a damaged or foreign file is
# a clean ERROR.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
OUT=$(pwd)/target/models && rm -rf "$OUT" && mkdir -p "$OUT"
fail() { echo "FAIL: $*"; exit 1; }
VENV=target/py-venv
if ! $VENV/bin/python -c "import numpy, safetensors, implicit, scipy" 2>/dev/null; then
  python3 -m venv $VENV 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $VENV; }
  $VENV/bin/pip install -q numpy scipy "safetensors==0.8.0" "implicit==0.7.3"
fi
PY=$VENV/bin/python
DB=pg_recsys_models
fresh_db $DB
Q="$P -At"
$Q -c "CREATE TABLE clicks AS SELECT DISTINCT user_id, item_id FROM recsys.synthetic_interactions(400, 200, 8000, 5)" \
   -c "CREATE INDEX ON clicks (user_id)" \
   -c "SELECT recsys.train('m_als', 'clicks', 'als', '{\"factors\": 16, \"iterations\": 8}')" >/dev/null
$Q -c "\copy (SELECT user_id, item_id FROM clicks) TO '$OUT/rows.csv' CSV"
recs() {  # recs MODEL FILE: the top 10 of users 1..40
  $Q -c "\copy (SELECT u, r.item_id, r.score FROM generate_series(1, 40) u, recsys.recommend(u, 10, '$1') r ORDER BY u, r.rank) TO '$2' CSV"
}

# 1. Export: the file opens with safetensors + numpy and gives the same top 10.
$Q -c "SELECT encode(recsys.export_model('m_als'), 'hex')" | xxd -r -p > "$OUT/als.safetensors"
recs m_als "$OUT/als_recs.csv"
$PY tests/models.py check "$OUT/als.safetensors" "$OUT/rows.csv" "$OUT/als_recs.csv"

# 2. Import factors trained by implicit: their users get implicit's own top 10.
OPENBLAS_NUM_THREADS=1 $PY tests/models.py implicit "$OUT/rows.csv" "$OUT/implicit.safetensors" "$OUT/implicit_top10.csv"
hex=$(xxd -p "$OUT/implicit.safetensors" | tr -d '\n')
echo "SELECT algorithm, users, items FROM recsys.import_model('m_imp', decode(:'hex', 'hex'), 'clicks')" \
  | $Q -v hex="$hex" | grep -qx "als|400|200" || fail "the implicit factors did not import"
recs m_imp "$OUT/imp_recs.csv"
diff <(cut -d, -f1,2 "$OUT/implicit_top10.csv") <(cut -d, -f1,2 "$OUT/imp_recs.csv") >/dev/null \
  || fail "imported factors do not give implicit's top 10 for its users: $(diff <(cut -d, -f1,2 "$OUT/implicit_top10.csv") <(cut -d, -f1,2 "$OUT/imp_recs.csv") | head -4)"
echo "import: 40 users served implicit's own top 10 from the imported factors"

# 3. A user the factors never saw is folded in, as numpy solves it.
history="$($Q -c "SELECT string_agg(item_id::text, ',' ORDER BY item_id) FROM (SELECT item_id FROM clicks WHERE user_id = 3 LIMIT 6) s")"
$Q -c "INSERT INTO clicks SELECT -1, unnest(string_to_array('$history', ','))::int8"
$Q -c "\copy (SELECT -1, item_id, score FROM recsys.recommend(-1, 10, 'm_imp') ORDER BY rank) TO '$OUT/new_user.csv' CSV"
$PY tests/models.py foldin "$OUT/implicit.safetensors" "$history" "$OUT/new_user.csv"

# 4. Bad files are clean errors, and a failed import leaves nothing behind.
expect_error() {  # expect_error SQLSTATE SQL
  out=$(printf '\\set VERBOSITY verbose\n%s;\n' "$2" | $Q 2>&1 || true)
  grep -q "ERROR:  $1" <<<"$out" || fail "expected $1 from $2, got: $out"
}
expect_error 22023 "SELECT recsys.import_model('bad', '\\x00010203'::bytea, 'clicks')"
expect_error 22023 "SELECT recsys.import_model('bad', substring(recsys.export_model('m_als') from 1 for 4000), 'clicks')"
expect_error 22023 "SELECT recsys.import_model('bad', overlay(recsys.export_model('m_als') placing '\\xffff'::bytea from 3000), 'clicks')"
expect_error 22004 "SELECT recsys.import_model('bad', NULL, 'clicks')"
expect_error 42704 "SELECT recsys.export_model('no_such_model')"
[ "$($Q -c "SELECT count(*) FROM recsys.models WHERE name = 'bad'")" = 0 ] || fail "a failed import left a version"
echo "models: ok"
