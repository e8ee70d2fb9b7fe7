#!/usr/bin/env bash
# The README's examples are tested: every SQL block runs as written, in order, in a fresh
# database, and the output the README shows is compared (tests/doctest.py). Then the same check
# must fail on two broken copies of the README — one whose example no longer runs, one whose
# shown output no longer matches — so a doc test that passes means something.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
fail() { echo "FAIL: $*"; exit 1; }
OUT=$(pwd)/target/readme && rm -rf "$OUT" && mkdir -p "$OUT"
python3 tests/doctest.py README.md || fail "the README's examples do not run as written"
# Broken copies: a function name misspelt in one example; a shown value changed.
sed '0,/recsys.similar_items(42, 5/s//recsys.similar_itemz(42, 5/' README.md > "$OUT/broken_sql.md"
sed '0,/ 0.9746318461970762 / s// 0.9746318461970761 /' README.md > "$OUT/broken_output.md"
for broken in broken_sql broken_output; do
  ! cmp -s README.md "$OUT/$broken.md" || fail "$broken: the README has no such text to break"
  if python3 tests/doctest.py "$OUT/$broken.md" > "$OUT/$broken.txt" 2>&1; then
    fail "the doc test passed on $broken.md"
  fi
done
echo "readme: ok (every example runs and shows what it gives; the check fails on a broken example and on a changed output)"
