#!/usr/bin/env bash
# Bad input: the calls of tests/badinput.py (NULLs, NaN/±Inf, empty/mismatched/huge arrays, n out
# of range, unknown names, wrong id types, odd sources, bad params) against every function, in one
# session. Every call must end in a result or an ERROR with a specific SQLSTATE (never XX000 or
# XX001), the server must not restart, a failed train must leave nothing in the catalog, and the
# models trained before must serve as before.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DB=pg_recsys_badinput
fresh_db $DB
P="$P -At"
OUT=$(pwd)/target/badinput && rm -rf "$OUT" && mkdir -p "$OUT"
fail() { echo "FAIL: $*"; exit 1; }

$P <<'SQL' >/dev/null
CREATE TABLE bi AS SELECT * FROM recsys.synthetic_interactions(200, 100, 4000, 11);
CREATE INDEX ON bi (user_id);
CREATE TABLE bi_test AS SELECT * FROM recsys.synthetic_interactions(200, 100, 800, 12);
CREATE TABLE bi_items AS SELECT i AS item_id, 'item ' || i || ' genre' || (i % 7) AS title FROM generate_series(1, 100) i;
CREATE VIEW bi_view AS SELECT user_id, item_id, rating FROM bi WHERE rating >= 3;
CREATE TABLE bi_parted (user_id bigint, item_id bigint, rating real) PARTITION BY HASH (user_id);
CREATE TABLE bi_parted_0 PARTITION OF bi_parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE bi_parted_1 PARTITION OF bi_parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO bi_parted SELECT user_id, item_id, rating FROM bi;
CREATE TABLE bi_empty (LIKE bi);
CREATE TABLE bi_big AS SELECT * FROM recsys.synthetic_interactions(2000, 500, 40000, 13);
CREATE TABLE bi_one_user AS SELECT * FROM bi WHERE user_id = 1;
CREATE TABLE bi_one_item AS SELECT * FROM bi WHERE item_id = (SELECT min(item_id) FROM bi);
CREATE TABLE bi_dupes AS SELECT b.* FROM bi b, generate_series(1, 3);
CREATE TABLE bi_negative AS SELECT user_id, item_id, -rating AS rating, ts FROM bi;
CREATE TABLE bi_nullids AS SELECT CASE WHEN user_id % 5 = 0 THEN NULL ELSE user_id END AS user_id, item_id, rating FROM bi;
CREATE TABLE bi_text_ids AS SELECT user_id::text AS user_id, item_id::text AS item_id FROM bi;
CREATE TABLE bi_numeric_ids AS SELECT user_id::numeric AS user_id, item_id::numeric AS item_id FROM bi;
SELECT recsys.train('m_knn', 'bi', 'item_knn');
SELECT recsys.train('m_als', 'bi', 'als');
SELECT recsys.train('m_ease', 'bi', 'ease');
SELECT recsys.train('m_pop', 'bi', 'popularity');
SELECT recsys.train('m_content', 'bi', 'content', items => 'bi_items', item_text => 'title');
SELECT recsys.train('m_ncf', 'bi', 'ncf', '{"epochs": 2}');
SELECT recsys.train('m_seq', 'bi', 'sequential', '{"epochs": 2}', time_column => 'ts');
SELECT recsys.train('m_hybrid', 'bi', 'hybrid', '{"members": [{"algorithm": "ease"}, {"algorithm": "item_knn"}]}');
SQL
answers() { $P -c "SELECT string_agg(m || ':' || (SELECT string_agg(item_id::text, ',' ORDER BY rank)
                     FROM recsys.recommend(u, 5, m, items => CASE WHEN m = 'm_content' THEN 'bi_items'::regclass END)), ' ')
                   FROM unnest(ARRAY['m_knn', 'm_als', 'm_ease', 'm_pop', 'm_content', 'm_ncf', 'm_seq', 'm_hybrid']) m,
                        generate_series(1, 5) u"; }
catalog() { $P -c "SELECT string_agg(name || '/' || version || '/' || deployed, ',' ORDER BY id) FROM recsys.models"; }
before_answers=$(answers)
before_catalog=$(catalog)
sentinel_start $DB

python3 "$(dirname "$0")/badinput.py" "$OUT/expect.csv" > "$OUT/calls.sql"
calls=$(wc -l < "$OUT/calls.sql")
[ "$calls" -ge 200 ] || fail "only $calls calls"
# One session: before each call a marker and RESET ALL (some calls SET limits).
awk '{ printf "\\echo @@ %d\nRESET ALL;\n%s;\n", NR, $0 }' "$OUT/calls.sql" > "$OUT/script.sql"
psql -X -q -At -d $DB -v VERBOSITY=verbose -f "$OUT/script.sql" > "$OUT/output.txt" 2>&1 || true
python3 - "$OUT" <<'PY'
import re, sys
from collections import Counter
out = sys.argv[1]
calls = open(f"{out}/calls.sql").read().splitlines()
text = open(f"{out}/output.txt").read()
blocks = re.split(r"^@@ (\d+)$", text, flags=re.M)
results = {}
for i in range(1, len(blocks), 2):
    n, body = int(blocks[i]), blocks[i + 1]
    if "server closed the connection" in body or "connection to server was lost" in body:
        sys.exit(f"FAIL: the backend died at call {n}: {calls[n - 1]}")
    m = re.search(r"ERROR:  ([0-9A-Z]{5}):", body)
    results[n] = m.group(1) if m else "ok"
missing = [n for n in range(1, len(calls) + 1) if n not in results]
if missing:
    sys.exit(f"FAIL: no result for call {missing[0]}: {calls[missing[0] - 1]}")
bad = [(n, s) for n, s in results.items() if s.startswith("XX")]
for n, s in bad:
    print(f"  {s} from call {n}: {calls[n - 1]}")
if bad:
    sys.exit(f"FAIL: {len(bad)} calls ended in an internal error")
wrong = []
for line in open(f"{out}/expect.csv"):
    n, want = line.strip().split(",")
    if results[int(n)] != want:
        wrong.append(f"  call {n} gave {results[int(n)]}, expected {want}: {calls[int(n) - 1]}")
if wrong:
    print("\n".join(wrong))
    sys.exit(f"FAIL: {len(wrong)} calls did not give the expected result")
with open(f"{out}/results.csv", "w") as f:
    for n in sorted(results):
        f.write(f"{n},{results[n]}\n")
# Failed trains: their model names (t<line>) must not be in the catalog.
failed = [f"t{n - 1}" for n, s in results.items() if s != "ok" and f"'t{n - 1}'" in calls[n - 1]]
open(f"{out}/failed_trains.txt", "w").write("\n".join(failed) + "\n")
counts = Counter(results.values())
print(f"badinput: {len(calls)} calls ({sum(1 for _ in open(f'{out}/expect.csv'))} with a specific expected outcome): "
      f"{counts['ok']} results, {len(calls) - counts['ok']} clean errors; by SQLSTATE: "
      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "ok"))
PY
left=$($P -c "SELECT count(*) FROM recsys.models WHERE name = ANY (string_to_array('$(tr '\n' ',' < "$OUT/failed_trains.txt" | sed 's/,$//')', ','))")
[ "$left" = 0 ] || fail "$left failed trains left catalog rows"
echo "badinput: $(grep -c . "$OUT/failed_trains.txt") failed trains left no catalog rows"
sentinel_check
after_catalog=$($P -c "SELECT string_agg(name || '/' || version || '/' || deployed, ',' ORDER BY id) FROM recsys.models WHERE name LIKE 'm\_%'")
[ "$after_catalog" = "$before_catalog" ] || fail "the m_ models changed: $before_catalog -> $after_catalog"
[ "$(answers)" = "$before_answers" ] || fail "the models answer differently after the bad calls"
[ "$($P -c "SELECT count(*) FROM recsys.model_blobs b WHERE NOT EXISTS (SELECT FROM recsys.models m WHERE m.id = b.model_id)")" = 0 ] \
  || fail "orphan blobs"
psql -X -q -d postgres -c "DROP DATABASE $DB"
echo "badinput: ok (the sentinel connection survived, no crash in the server log, models unchanged)"
