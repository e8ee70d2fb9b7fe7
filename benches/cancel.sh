#!/usr/bin/env bash
# `make bench-cancel`: runs the cancel suite (tests/client_cancel.sh) and puts the time from each
# cancel or statement_timeout to its ERROR into the "cancel" section of benches/REPORT.md.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/client_cancel.sh
python3 - target/cancel/cancel.csv <<'PY' | python3 benches/section.py cancel
import csv, datetime, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("## Cancel latency\n")
print(f"`make bench-cancel`, {datetime.date.today()}, this machine: seconds from the statement_timeout (or "
      "pg_cancel_backend) to the ERROR 57014, for each long call of `tests/client_cancel.sh`.\n")
print("| family | call | seconds to stop |\n|---|---|---:|")
for r in rows:
    print(f"| {r['family']} | {r['algorithm']} | {float(r['seconds_after_timeout']):.3f} |")
print(f"\nSlowest: {max(float(r['seconds_after_timeout']) for r in rows):.3f} s.")
PY
