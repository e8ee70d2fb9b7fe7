#!/usr/bin/env bash
# `make bench-neural`: the epoch time of ncf, sequential and two_tower trained by the engine
# (Candle on the CPU, benches/neural.rs, no PostgreSQL) against the same architectures in PyTorch
# (benches/torch_epoch.py) on the same cores, the same data and in the same run; into
# benches/REPORT.md, section neural_epoch. Ours: the median epoch after the first (which holds the
# one-off set-up) of a 3-epoch training; PyTorch: the mean of 2 epochs after a warm-up epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$(cd ../shared && pwd)}
OUT=target/bench-neural
mkdir -p $OUT
. benches/venv.sh
if ! $VENV/bin/python -c "import torch" 2>/dev/null && ! $VENV/bin/pip install -q torch; then
  echo "bench-neural: PyTorch could not be installed into $VENV; nothing measured" >&2
  exit 2
fi
THREADS=${THREADS:-$(nproc)}
cargo build --release --no-default-features --example neural
EX=target/release/examples/neural
$EX --shared "$SHARED" --write-seq-train $OUT/seq_train.csv --write-items $OUT/items.csv --only-write
echo "bench-neural: pg_recsys engine, $THREADS threads"
$EX --shared "$SHARED" --devices cpu --threads "$THREADS" --epochs 3 | tee $OUT/ours.jsonl
echo "bench-neural: PyTorch, $THREADS threads"
$VENV/bin/python benches/torch_epoch.py --ncf-train "$SHARED/eval/splits/ml100k_implicit_all_train.csv" \
  --seq-train $OUT/seq_train.csv --items $OUT/items.csv --threads "$THREADS" | tee $OUT/torch.json
python3 - $OUT/ours.jsonl $OUT/torch.json "$THREADS" <<'PY' | python3 benches/section.py neural_epoch
import datetime, json, platform, subprocess, sys
ours = {r["model"]: r for r in map(json.loads, open(sys.argv[1])) if "error" not in r}
torch = json.load(open(sys.argv[2]))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print("## Neural epoch time — Candle in the engine vs PyTorch (CPU)\n")
print(f"`make bench-neural`, {datetime.date.today()}, {cpu}, {sys.argv[3]} threads, PyTorch {torch['torch']}. "
      "The same architecture, sizes, sampling, loss, optimizer and batch size on the same data "
      "(ML-100K: `ml100k_implicit_all_train.csv` for ncf and two_tower, the per-user temporal split "
      "of `u.data` for sequential); the epoch includes its sampling and batching in both. "
      "Ours: `benches/neural.rs`, the median epoch after the first of a 3-epoch training; "
      "PyTorch: `benches/torch_epoch.py`, the mean of 2 epochs after a warm-up.\n")
print("| model | pg_recsys s/epoch | PyTorch s/epoch | ratio (ours / PyTorch) |")
print("|---|---:|---:|---:|")
names = {"ncf": "ncf (NeuMF)", "sequential": "sequential (SASRec)", "two_tower": "two_tower (text towers)"}
for m, label in names.items():
    o, t = ours.get(m), torch.get(f"{m}_epoch_s")
    if o and t:
        print(f"| {label} | {o['steady_epoch_s']:.2f} | {t:.2f} | {o['steady_epoch_s'] / t:.2f} |")
PY
echo "bench-neural: written to benches/REPORT.md (section neural_epoch)"
