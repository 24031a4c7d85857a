#!/usr/bin/env bash
# GPU check: training and inference img/s and peak memory, ours (Keras on JAX, mixed precision
# off and on) vs torchvision's RetinaNet, on one NVIDIA GPU; prints one Markdown table.
#
# For a machine with JAX, PyTorch + torchvision and no TensorFlow or network: install the
# carried keras wheel and this package first (pip install --no-index keras-*.whl; pip install
# --no-deps -e .). Under 10 minutes on one GPU at the defaults (800x1344, training batch 8 and
# 16, inference batch 1 and 16, 3 warm-up + 10 timed steps each).
#
#   bash benchmarks/gpu_check.sh                 # the GPU run
#   bash benchmarks/gpu_check.sh --cpu-smoke     # tiny sizes on CPU: proves the script runs
#   bash benchmarks/gpu_check.sh --backbone mobilenet_v3_large_lite   # ours on another preset
#
# Environment: PYTHON (ours, default python3), TORCH_PYTHON (torchvision, default $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_PYTHON=${TORCH_PYTHON:-$PYTHON}
export KERAS_BACKEND=jax  # the GPU machine has no TensorFlow; ours runs on JAX
ARGS=()
OURS=()  # ours only: --backbone NAME
PARALLEL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-smoke)
            # Two rows at a time: the smoke test measures nothing; compiling is single-threaded.
            export CUDA_VISIBLE_DEVICES="" JAX_PLATFORMS=cpu
            ARGS=(--size 64x64 --batches 1 --inference-batches 1 --warmup 0 --steps 1)
            PARALLEL=1; shift ;;
        --backbone)
            [ $# -ge 2 ] || { echo "usage: $0 [--cpu-smoke] [--backbone NAME]" >&2; exit 2; }
            OURS=(--backbone "$2"); shift 2 ;;
        *) echo "usage: $0 [--cpu-smoke] [--backbone NAME]" >&2; exit 2 ;;
    esac
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {  # row, python, label, args...; one process per row, so memory peaks are its own
    local row=$1 python=$2 label=$3; shift 3
    echo "== $label" >&2
    "$python" benchmarks/gpu_check.py "$@" "${ARGS[@]}" > "$OUT/row$row"
}
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())" >&2
if [ "$PARALLEL" = 1 ]; then
    run 1 "$PYTHON" "ours, float32" ours ${OURS[@]+"${OURS[@]}"} &
    FIRST=$!
    run 2 "$PYTHON" "ours, mixed precision" ours --mixed-precision ${OURS[@]+"${OURS[@]}"}
    wait "$FIRST"
else
    run 1 "$PYTHON" "ours, float32" ours ${OURS[@]+"${OURS[@]}"}
    run 2 "$PYTHON" "ours, mixed precision" ours --mixed-precision ${OURS[@]+"${OURS[@]}"}
fi
run 3 "$TORCH_PYTHON" "torchvision, float32" torchvision
run 4 "$TORCH_PYTHON" "torchvision, mixed precision" torchvision --mixed-precision
cat "$OUT"/row1 "$OUT"/row2 "$OUT"/row3 "$OUT"/row4 | grep '^RESULT ' > "$OUT/results"
"$PYTHON" - "$OUT/results" <<'PY'
import json, sys
rows = [json.loads(line[len("RESULT "):]) for line in open(sys.argv[1])]
print("| model | backend | mixed precision | task | size | batch | img/s | peak GPU GB |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    memory = "n/a" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}"
    print(f"| {r['model']} | {r['backend']} | {'on' if r['mixed_precision'] else 'off'} "
          f"| {r['task']} | {r['size']} | {r['batch']} | {r['images_per_second']:.3g} "
          f"| {memory} |")
PY
