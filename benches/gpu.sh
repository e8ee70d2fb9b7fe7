#!/usr/bin/env bash
# The GPU check of the neural models: ncf, sequential and two_tower trained on ML-100K with
# recsys.device = 'cuda' and with the CPU, by the same engine build (benches/neural.rs, the
# engine without PostgreSQL), NDCG@10 compared on the shared split, epoch times and speed-up.
#
#   benches/gpu.sh prepare   here (no GPU needed): `make check-cuda` builds the example with CUDA;
#                            it and the ML-100K files it reads are copied to .gpu/ (git-ignored)
#   benches/gpu.sh run       on the GPU machine, from the repository root, with .gpu/ beside it
#                            (the device tool: run "benches/gpu.sh run" with carry [".gpu"])
#   benches/gpu.sh           both, on a machine that has a GPU and can build
#
# `run` needs the NVIDIA driver and the CUDA 13 runtime libraries (cuBLAS, cuRAND, NVRTC), which
# it looks for on the library path, in the CUDA toolkit and in Python's nvidia wheels. It trains
# each model fully on cuda, fully on the CPU with every core (for the NDCG comparison), and two
# epochs on the CPU with 2 threads (the 2-core epoch the speed-up is measured against, as the
# project's CI machine has). Agreement: |NDCG@10(cuda) − NDCG@10(cpu)| ≤ TOL (default 0.015): both
# trainings draw the same initial weights, batches, negatives and dropout masks from the seed;
# only the floating-point order of the kernels differs. Exit 1 when a model disagrees.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
TOL=${TOL:-0.015}
MODELS=${MODELS:-ncf,sequential,two_tower}

prepare() {
  .ci/check-cuda
  local shared=${SHARED:-../shared}
  rm -rf .gpu && mkdir -p .gpu/shared/eval/splits .gpu/shared/data/ml-100k
  cp target/cuda/release/examples/neural .gpu/neural
  strip .gpu/neural 2>/dev/null || true
  cp "$shared"/eval/splits/ml100k_implicit_all_{train,test}.csv .gpu/shared/eval/splits/
  cp "$shared"/data/ml-100k/{u.data,u.item,u.genre} .gpu/shared/data/ml-100k/
  echo "gpu.sh: prepared .gpu/ ($(du -sh .gpu | cut -f1)); on the GPU machine: benches/gpu.sh run (carry .gpu)"
}

# Directories holding the CUDA 13 libraries the build links (libcublas.so.13 and the rest).
cuda_libs() {
  local dirs=() d
  for d in ${LD_LIBRARY_PATH//:/ } /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublas.so.13" ] && dirs+=("$d")
  done
  for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
    d=$(python3 - "$lib" <<'PY' 2>/dev/null || true
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
hits = [h for r in roots for h in glob.glob(os.path.join(r, "nvidia", "**", sys.argv[1]), recursive=True)]
print(os.path.dirname(hits[0]) if hits else "")
PY
)
    [ -n "$d" ] && dirs+=("$d")
  done
  printf '%s\n' "${dirs[@]}" | awk 'NF && !seen[$0]++' | paste -sd:
}

run() {
  [ -x .gpu/neural ] || { echo "gpu.sh: .gpu/neural missing: run 'benches/gpu.sh prepare' first (and carry .gpu)" >&2; exit 2; }
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "gpu.sh: no GPU answers (nvidia-smi)" >&2; exit 2; }
  local libs; libs=$(cuda_libs)
  export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  if ldd .gpu/neural | grep -q 'not found'; then
    ldd .gpu/neural | grep 'not found' >&2
    echo "gpu.sh: CUDA libraries missing (searched: ${libs:-nothing found})" >&2; exit 2
  fi
  local out=${OUT:-.gpu}/gpu_runs.jsonl
  : > "$out"
  .gpu/neural --shared .gpu/shared --models "$MODELS" --devices cuda --threads "$(nproc)" | tee -a "$out"
  .gpu/neural --shared .gpu/shared --models "$MODELS" --devices cpu --threads "$(nproc)" | tee -a "$out"
  .gpu/neural --shared .gpu/shared --models "$MODELS" --devices cpu --threads 2 --epochs 2 | sed 's/"device":"cpu"/"device":"cpu2"/' | tee -a "$out"
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) python3 - "$out" "$TOL" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tol = float(sys.argv[2])
by = {(r["model"], r["device"]): r for r in rows}
print(f"\nGPU: {os.environ.get('GPU_NAME', '?')}; NDCG tolerance {tol}")
print("| model | cuda s/epoch | cpu (all cores) s/epoch | cpu (2 threads) s/epoch | speed-up vs 2 threads | NDCG@10 cuda | NDCG@10 cpu | agree |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
bad = 0
for m in dict.fromkeys(r["model"] for r in rows):
    g, c, c2 = by.get((m, "cuda")), by.get((m, "cpu")), by.get((m, "cpu2"))
    if not g or "error" in g or g.get("ran_on") != "cuda":
        print(f"| {m} | did not run on cuda: {g} | | | | | | no |"); bad += 1; continue
    agree = c is not None and abs(g["ndcg10"] - c["ndcg10"]) <= tol
    bad += not agree
    print(f"| {m} | {g['steady_epoch_s']:.3f} | {c['steady_epoch_s']:.3f} | {c2['steady_epoch_s']:.3f} | {c2['steady_epoch_s'] / g['steady_epoch_s']:.1f}× "
          f"| {g['ndcg10']:.4f} | {c['ndcg10']:.4f} | {'yes' if agree else 'NO'} |")
sys.exit(1 if bad else 0)
PY
}

case $MODE in
  prepare) prepare ;;
  run) run ;;
  all) prepare; run ;;
  *) echo "usage: benches/gpu.sh [prepare|run]" >&2; exit 2 ;;
esac
