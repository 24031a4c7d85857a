#!/usr/bin/env bash
# The all-preset slow tests, each preset in a process of its own (one process holding many
# TensorFlow presets grew past 24 GiB and was killed at its ninth); a line per preset as it
# ends, and a summary.
#   bash scripts/run_slow_presets.sh tensorflow [PRESET ...]   # both tests below, .venv
#   bash scripts/run_slow_presets.sh jax [PRESET ...]          # test_backbones', .venv-jax
# tests/test_backbones_end_to_end.py (TensorFlow: train, evaluate, convert, export) and
# tests/test_backbones.py (train a step, save, load, fold). No PRESET: every preset of the
# registry, 1-6 min each on 2 cores. Run it alone on the CPU. Set up the environments first
# (bash scripts/run_tests.sh does). The other slow tests: .venv/bin/python -m pytest -m slow
# tests/test_export_int8.py tests/test_models.py
set -uo pipefail
cd "$(dirname "$0")/.."
backend=${1:?usage: run_slow_presets.sh tensorflow|jax [PRESET ...]}
shift
case "$backend" in
    tensorflow) python=.venv/bin/python
                tests=("tests/test_backbones_end_to_end.py::test_every_preset_everywhere"
                       "tests/test_backbones.py::test_every_preset_trains_saves_loads_and_folds") ;;
    jax) python=.venv-jax/bin/python
         tests=("tests/test_backbones.py::test_every_preset_trains_saves_loads_and_folds") ;;
    *) echo "backend must be tensorflow or jax, not $backend" >&2; exit 2 ;;
esac
export KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=2
presets=("$@")
if [ ${#presets[@]} = 0 ]; then
    listed=$("$python" -c "from keras_retinanet.model.backbones import BACKBONES
print(*sorted(BACKBONES), sep='\n')") || { echo "could not list the presets with $python" >&2; exit 2; }
    mapfile -t presets <<< "$listed"
fi
summary=() failed=0
for preset in "${presets[@]}"; do
    start=$SECONDS
    "$python" -m pytest -q -m slow -p no:cacheprovider "${tests[@]/%/[$preset]}"
    status=$?
    [ "$status" = 2 ] && { echo "interrupted" >&2; exit 130; }  # Ctrl-C
    result=passed
    [ "$status" = 0 ] || { result=FAILED; failed=$((failed + 1)); }
    summary+=("$(printf '%-28s %-7s %4d s' "$preset" "$result" $((SECONDS - start)))")
    echo "== ${summary[-1]}"
done
printf '%s\n' "== $backend: ${#presets[@]} presets, $failed failed" "${summary[@]}"
[ "$failed" = 0 ]
