#!/usr/bin/env bash
# `make bench-dense`: EASE and PureSVD fit time, pg_recsys (in the backend) against numpy/LAPACK
# (benches/dense.py), same machine, same run, same rows, on three shapes: ML-100K and
# ml-latest-small (every rating as a 0/1 interaction) and a synthetic catalogue with more items
# than users (15,000 items, 1,900 users), where EASE's dual form is the cheaper one, and one with
# more users than items (8,000 items, 30,000 users), where the primal is. Writes the
# "dense" section of benches/REPORT.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
OUT=$(pwd)/target/bench-dense && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
VENV=target/py-venv
$VENV/bin/python -c "import numpy, scipy" 2>/dev/null || { python3 -m venv $VENV && $VENV/bin/pip install -q numpy scipy; }
DB=pg_recsys_bench_dense
fresh_db $DB
Q="$P -At"
SHARED=../shared/data
shapes=()
if [ -f $SHARED/ml-100k/u.data ]; then
  $Q -c "CREATE TABLE ml100k (user_id int8, item_id int8, rating real, ts int8)" \
     -c "\copy ml100k FROM '$SHARED/ml-100k/u.data' (FORMAT text, DELIMITER E'\t')"
  shapes+=(ml100k)
fi
if [ -f $SHARED/ml-latest-small/ratings.csv ]; then
  $Q -c "CREATE TABLE mlsmall (user_id int8, item_id int8, rating real, ts int8)" \
     -c "\copy mlsmall FROM '$SHARED/ml-latest-small/ratings.csv' (FORMAT csv, HEADER)"
  shapes+=(mlsmall)
fi
$Q -c "CREATE TABLE wide AS SELECT DISTINCT user_id, item_id FROM recsys.synthetic_interactions(1900, 15000, 150000, 11)"
shapes+=(wide)
$Q -c "CREATE TABLE tall AS SELECT DISTINCT user_id, item_id FROM recsys.synthetic_interactions(30000, 8000, 600000, 13)"
shapes+=(tall)
LAMBDA=500 K=64
rows=()
for s in "${shapes[@]}"; do
  $Q -c "\copy (SELECT user_id, item_id FROM $s) TO '$OUT/$s.csv' CSV"
  ease=$($Q -c "SELECT 1 FROM recsys.train('e_$s', '$s', 'ease', '{\"lambda\": $LAMBDA}')" \
            -c "SELECT round((metrics->>'fit_seconds')::numeric, 2) FROM recsys.models WHERE name = 'e_$s'" 2>/dev/null | tail -1)
  svd=$($Q -c "SELECT 1 FROM recsys.train('s_$s', '$s', 'svd', '{\"factors\": $K}')" \
           -c "SELECT round((metrics->>'fit_seconds')::numeric, 2) FROM recsys.models WHERE name = 's_$s'" 2>/dev/null | tail -1)
  peer=$(OPENBLAS_NUM_THREADS=$(nproc) $VENV/bin/python benches/dense.py "$OUT/$s.csv" $LAMBDA $K)
  rows+=("$s|$ease|$svd|$peer")
  echo "bench-dense: $s: pg_recsys ease $ease s, svd $svd s; numpy $peer"
done
printf '%s\n' "${rows[@]}" > "$OUT/rows.txt"
python3 - "$(nproc)" "$OUT/rows.txt" <<'PY' | python3 benches/section.py dense
import datetime, json, sys
print("## Dense linear algebra — EASE and PureSVD fit, pg_recsys vs numpy/LAPACK\n")
print(f"`make bench-dense`, {datetime.date.today()}, this machine ({sys.argv[1]} cores; numpy's OpenBLAS on as many threads "
      "as pg_recsys's pool). Fit seconds on the same rows (every rating as a 0/1 interaction), same run. EASE lambda 500: "
      "pg_recsys picks the primal (n_items^2 inverse) or the dual (Woodbury, n_users^2) form by cost; numpy's primal is "
      "the usual implementation, its dual the same formula as ours. PureSVD: 64 factors, randomized with 10 oversamples "
      "and 4 power iterations in both (numpy: QR between steps; pg_recsys: faer's eigensolver on the Gram matrix).\n")
print("| shape | users | items | rows | EASE pg_recsys | numpy primal | numpy dual | ratio to numpy's best | PureSVD pg_recsys | numpy | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
names = {"ml100k": "ML-100K", "mlsmall": "ml-latest-small", "wide": "synthetic, more items than users",
         "tall": "synthetic, more users than items"}
for line in open(sys.argv[2]).read().split("\n"):
    if not line:
        continue
    shape, ease, svd, peer = line.split("|", 3)
    p = json.loads(peer)
    best = min(v for v in (p.get("ease_primal"), p.get("ease_dual")) if v)
    fmt = lambda v: f"{v:.2f}" if v else "—"
    print(f"| {names[shape]} | {p['users']} | {p['items']} | {p['rows']} | {float(ease):.2f} | {fmt(p.get('ease_primal'))} | "
          f"{fmt(p.get('ease_dual'))} | {float(ease) / best:.2f} | {float(svd):.2f} | {p['svd']:.2f} | {float(svd) / p['svd']:.2f} |")
PY
psql -X -q -d postgres -c "DROP DATABASE $DB" >/dev/null
echo "bench-dense: written to benches/REPORT.md (section dense)"
