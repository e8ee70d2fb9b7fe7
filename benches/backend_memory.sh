#!/usr/bin/env bash
# `make bench-memory`: what serving a model costs each backend. For every algorithm on ML-100K
# and ml-latest-small (the shared splits' train files; content and two_tower with the movie
# titles), a fresh connection makes its first recommend() call and then a second one: the
# first call's seconds (reading and decoding the model into the backend's cache), the second's,
# and the backend's private memory after them (RssAnon from /proc: shared buffers are not
# counted, the decoded model is). EASE is measured twice: as served since 0.6.0 (B pruned to
# `keep` weights per row above 4,096 items) and whole (keep = 1000000), with NDCG@10 of both by
# recsys.evaluate on the test split. The same trainings give the write phase of every algorithm
# (recsys.models.metrics: write_seconds, with the neighbour pairs and factor rows it wrote).
# BIG=1 adds the 20M shape (recsys.synthetic_interactions(138000, 27000, 20000000, 42)) for the
# algorithms that train there in minutes on 2 cores (~5 min more; user_knn did not finish in
# 9 minutes there, EASE needs a 27k × 27k inverse). WIDE=1 adds a 15,000-item catalogue
# (recsys.synthetic_interactions(30000, 15000, 1500000, 7)) for EASE pruned and whole, item_knn
# and als, and a 30,000-item one (synthetic_interactions(30000, 30000, 3000000, 7)) for EASE
# pruned, item_knn and als (~15 min more: the EASE fits invert a 15k × 15k and a 30k × 30k
# matrix in place, 1.8 and 7.2 GB, so those trains raise recsys.memory_ceiling_mb). Writes the "backend_memory" and "write_phase" sections of
# benches/REPORT.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
SHARED=${SHARED:-$(pwd)/../shared}
[ -d "$SHARED/eval/splits" ] || { echo "bench-memory: ../shared/eval not found"; exit 2; }
OUT=$(pwd)/target/bench-memory && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
DB=pg_recsys_bench_memory
echo "split,model,algorithm,items,blob_mb,first_s,second_s,rss_anon_mb,ndcg,fit_s,write_s,neighbor_pairs,factor_rows" >"$OUT/memory.csv"
splits="ml100k_implicit_all mllatestsmall_implicit_all"
[ "${BIG:-0}" = 1 ] && splits="$splits 20m_shape"
[ "${WIDE:-0}" = 1 ] && splits="$splits 15k_items 30k_items"
for s in $splits; do
  fresh_db $DB
  ceiling="SELECT 1"
  if [ $s = 15k_items ] || [ $s = 30k_items ]; then
    # EASE inverts the items × items Gram matrix in place (1.8 GB at 15k items, 7.2 GB at 30k);
    # with B whole only at 15k (at 30k, 3.6 GB of weights decoded again on every call).
    whole=("ease_whole|ease|{\"keep\": 1000000}")
    case $s in
      15k_items) shape="30000, 15000, 1500000, 7" ;;
      30k_items) shape="30000, 30000, 3000000, 7"; whole=() ;;
    esac
    $P -c "CREATE TABLE train AS SELECT user_id, item_id FROM recsys.synthetic_interactions($shape)" \
       -c "CREATE INDEX ON train (user_id)"
    ceiling="SET recsys.memory_ceiling_mb = 8192"
    models=("ease|ease|{}" "${whole[@]}" "item_knn|item_knn|{}" "als|als|{}")
  elif [ $s = 20m_shape ]; then
    $P -c "CREATE TABLE train AS SELECT user_id, item_id FROM recsys.synthetic_interactions(138000, 27000, 20000000, 42)" \
       -c "CREATE INDEX ON train (user_id)"
    models=(
      "popularity|popularity|{}"
      "item_knn|item_knn|{}"
      "als|als|{\"iterations\": 5}"
    )
  else
  $P -c "CREATE TABLE train (user_id int, item_id int, rating real, ts bigint)" \
     -c "\copy train FROM '$SHARED/eval/splits/${s}_train.csv' WITH (FORMAT csv, HEADER)" \
     -c "CREATE INDEX ON train (user_id)" \
     -c "ALTER TABLE train ADD COLUMN at timestamptz" -c "UPDATE train SET at = to_timestamp(ts)" \
     -c "CREATE TABLE test (user_id int, item_id int)" \
     -c "\copy test (user_id, item_id) FROM program 'cut -d, -f1,2 $SHARED/eval/splits/${s}_test.csv' WITH (FORMAT csv, HEADER)"
  if [ "${s#ml100k}" != "$s" ]; then
    $P -c "CREATE TABLE items (item_id int PRIMARY KEY, title text)" \
       -c "\copy items FROM program 'cut -d\"|\" -f1,2 $SHARED/data/ml-100k/u.item | iconv -f latin1 -t utf8' WITH (FORMAT csv, DELIMITER '|', QUOTE E'\\x01')"
  else
    $P -c "CREATE TABLE items (item_id int PRIMARY KEY, title text, genres text)" \
       -c "\copy items FROM '$SHARED/data/ml-latest-small/movies.csv' WITH (FORMAT csv, HEADER)"
  fi
  models=(
    "popularity|popularity|{}"
    "item_knn|item_knn|{}"
    "user_knn|user_knn|{}"
    "rp3beta|rp3beta|{}"
    "slim|slim|{}"
    "ease|ease|{}"
    "ease_whole|ease|{\"keep\": 1000000}"
    "als|als|{}"
    "bpr|bpr|{}"
    "svd|svd|{}"
    "ncf|ncf|{\"epochs\": 1}"
    "sequential|sequential|{\"epochs\": 1}"
    "two_tower|two_tower|{\"epochs\": 1}"
    "content|content|{}"
  )
  fi
  for m in "${models[@]}"; do
    IFS='|' read -r name alg params <<<"$m"
    extra=
    case $alg in
      sequential) extra=", time_column => 'at'" ;;
      two_tower|content) extra=", items => 'items', item_text => 'title'" ;;
    esac
    $P -c "$ceiling" -c "SELECT 1 FROM recsys.train('$name', 'train', '$alg', '$params'$extra)" >/dev/null
    # A fresh connection: its backend has nothing cached.
    coproc C { psql -X -q -At -d $DB; }
    ask() { local l; echo "$1;" >&"${C[1]}"; read -r -t 600 l <&"${C[0]}"; echo "$l"; }
    pid=$(ask "SELECT pg_backend_pid()")
    first=$(ask "SELECT round(extract(epoch FROM clock_timestamp() - statement_timestamp())::numeric, 4) FROM (SELECT count(*) FROM recsys.recommend(1, 10, '$name')) x")
    second=$(ask "SELECT round(extract(epoch FROM clock_timestamp() - statement_timestamp())::numeric, 4) FROM (SELECT count(*) FROM recsys.recommend(2, 10, '$name')) x")
    rss=$(awk '/^RssAnon:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    echo "\\q" >&"${C[1]}"
    wait "$C_PID" 2>/dev/null || true
    info=$($P -At -F, -c "SELECT items, round((SELECT sum(length(data)) FROM recsys.model_blobs b WHERE b.model_id = m.id) / 1048576.0, 1)
                          FROM recsys.models m WHERE name = '$name' AND deployed")
    written=$($P -At -F, -c "SELECT round((metrics->>'fit_seconds')::numeric, 2), round((metrics->>'write_seconds')::numeric, 2),
                 (SELECT coalesce(sum(cardinality(neighbor_ids)), 0) FROM recsys.item_neighbor_lists l WHERE l.model_id = m.id)
                 + (SELECT coalesce(sum(cardinality(neighbor_ids)), 0) FROM recsys.user_neighbor_lists l WHERE l.model_id = m.id),
                 (SELECT count(*) FROM recsys.item_factors f WHERE f.model_id = m.id) + (SELECT count(*) FROM recsys.user_factors f WHERE f.model_id = m.id)
               FROM recsys.models m WHERE name = '$name' AND deployed")
    ndcg=
    case $s,$name in 15k_items,*|30k_items,*) ;; *,ease|*,ease_whole) ndcg=$($P -At -c "SELECT round(value::numeric, 4) FROM recsys.evaluate('$name', 'test') WHERE metric = 'ndcg@10'") ;; esac
    echo "$s,$name,$alg,$info,$first,$second,$rss,$ndcg,$written" | tee -a "$OUT/memory.csv" | sed 's/^/bench-memory: /'
    $P -c "SELECT recsys.drop_model('$name')" >/dev/null
  done
done
python3 benches/section.py backend_memory <<EOF
## Backend memory: what serving a model costs each connection

\`make bench-memory\` ($(date -u +%Y-%m-%d), $(nproc) cores). A fresh connection's first
\`recommend()\` reads and decodes the model into that backend's cache; the second is served from
it. RssAnon is the backend's private memory after both (the decoded model; shared buffers not
counted). \`ease\` is served as 0.6.0 stores it (B pruned to its automatic \`keep\` per row above
4,096 items); \`ease_whole\` keeps B whole (\`keep\` = 1000000), as every EASE model before 0.6.0.
Neural models trained for one epoch (the memory and decode cost do not depend on epochs). A
model larger than \`recsys.model_cache_mb\` (256 MB by default) is not kept: each call decodes it
again (its second call is as slow as its first, and its RssAnon is what is left after the call).
\`20m_shape\`: recsys.synthetic_interactions(138000, 27000, 20000000, 42) (BIG=1); \`15k_items\`:
recsys.synthetic_interactions(30000, 15000, 1500000, 7) and \`30k_items\`:
recsys.synthetic_interactions(30000, 30000, 3000000, 7) (WIDE=1; EASE with B whole is not trained
there: 3.6 GB of weights, decoded again on every call).

| split | model | items | model file MB | first call s | second call s | RssAnon MB | NDCG@10 |
|---|---|---:|---:|---:|---:|---:|---:|
$(tail -n +2 "$OUT/memory.csv" | awk -F, '{printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $4, $5, $6, $7, $8, $9}')
EOF
python3 benches/section.py write_phase <<EOF
## Write phase: storing a version

\`make bench-memory\` ($(date -u +%Y-%m-%d), $(nproc) cores), the same trainings as above, from
\`recsys.models.metrics\`: fit seconds, and write seconds (the catalog rows, the model file's
parts, the neighbour lists and factor rows). Since 0.7.0 a neighbour table is one row per item
(or user) with its neighbours as arrays (\`recsys.item_neighbor_lists\`, read through the view
\`recsys.item_neighbors\`); "neighbour pairs" counts the pairs in them, "factor rows" the rows of
\`recsys.item_factors\` and \`recsys.user_factors\`.$( [ "${BIG:-0}" = 1 ] || printf '\nThe 20M shape was not run (BIG=1 runs it).')

| split | model | fit s | write s | neighbour pairs | factor rows | model file MB |
|---|---|---:|---:|---:|---:|---:|
$(tail -n +2 "$OUT/memory.csv" | awk -F, '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $10, $11, $12, $13, $5}')
EOF
echo "bench-memory: wrote benches/REPORT.md (sections backend_memory, write_phase) and $OUT/memory.csv"
