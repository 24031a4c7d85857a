#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite, twice:
#   1. TensorFlow backend (the default), the whole suite;
#   2. JAX backend in an environment WITHOUT TensorFlow, the core tests, to prove the model
#      maths is backend-independent.
# Usage: bash scripts/run_tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
.venv/bin/pip install -q -e ".[tensorflow,tests]"

# The converters are tested against the real sources: torchvision in a venv of its own (the
# pinned CPU-capable build lies on local disk), and fizyr keras-retinanet 1.0.0 with
# keras-resnet 0.1.0 in a --target folder, run on Keras 2 (tf_keras, which tracks TF's version).
if [ ! -x .venv-torch/bin/python ]; then "$PYTHON" -m venv .venv-torch; fi
.venv-torch/bin/pip install -q torch==2.14.1 torchvision==0.29.1 numpy
TF_MINOR=$(.venv/bin/python -c "import tensorflow as tf; print('.'.join(tf.__version__.split('.')[:2]))")
.venv/bin/pip install -q "tf_keras~=${TF_MINOR}.0"
if [ ! -d .sources/fizyr/keras_retinanet ]; then
    .venv/bin/pip install -q --no-deps --target .sources/fizyr keras-retinanet==1.0.0 keras-resnet==0.1.0
fi
if [ ! -d .sources/keras-resnet-0.2.0/keras_resnet ]; then  # what fizyr 1.0.0 itself installs
    .venv/bin/pip install -q --no-deps --target .sources/keras-resnet-0.2.0 keras-resnet==0.2.0
fi
# KerasHub for tests/test_bench_learning.py's quick run (the learning benchmark's peer), without
# its dependencies: they would pull a second TensorFlow wheel (see benchmarks/README.md).
if ! .venv/bin/python -c "import keras_hub" 2>/dev/null; then
    .venv/bin/pip install -q --no-deps keras-hub==0.32.0
    .venv/bin/pip install -q regex tokenizers sentencepiece kagglehub "kagglesdk==0.1.28"
fi
if [ ! -x .venv-jax/bin/python ]; then "$PYTHON" -m venv .venv-jax; fi
.venv-jax/bin/pip install -q -e . "jax[cpu]" pytest pytest-xdist hypothesis
if .venv-jax/bin/python -c "import tensorflow" 2>/dev/null; then
    echo "TensorFlow must not be installed in .venv-jax" >&2; exit 1
fi
# The JAX environment (no TensorFlow) also runs benchmarks/gpu_check.sh --cpu-smoke in the suite.
export KERAS_RETINANET_JAX_PYTHON="$PWD/.venv-jax/bin/python"
export KERAS_RETINANET_TORCH_PYTHON="$PWD/.venv-torch/bin/python"
export KERAS_RETINANET_FIZYR_PATH="$PWD/.sources/fizyr"
export KERAS_RETINANET_KERAS_RESNET_02="$PWD/.sources/keras-resnet-0.2.0"
# Two test processes, a test file each at a time (module fixtures are built once): most of a
# test's time is single-threaded Python (model building, tracing), so two share 2 cores well.
# PYTEST_WORKERS=0 runs in one process.
WORKERS=(-n "${PYTEST_WORKERS:-2}" --dist loadfile)
[ "${PYTEST_WORKERS:-2}" = 0 ] && WORKERS=()
tf_suite() {
    KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -m "not slow" --durations=15 \
        ${WORKERS[@]+"${WORKERS[@]}"} "$@"
}
if [ $# -gt 0 ]; then
    echo "== TensorFlow backend: $*"
    tf_suite "$@"
else
    # The whole suite in two halves, each in fresh processes. A TensorFlow process does not
    # give back what each model trained in it leaves (about 0.5 GiB per training run, held
    # outside Python's reach), so over the whole suite each of the two workers grew to 10-14
    # GiB, the machine's 24 GiB filled, and CI thrashed past its time limit. The longest files
    # go first in their half, so that neither worker waits on the other at its end.
    FIRST=(tests/test_gpu_check.py tests/test_bench_learning.py tests/test_interrupt.py
           tests/test_backbones_end_to_end.py tests/test_anchors_auto.py)
    SECOND=(tests/test_train.py tests/test_multi_worker.py tests/test_finetune.py
            tests/test_convert_fizyr.py tests/test_labelimg_layout.py)
    REST=()
    for file in tests/test_*.py; do
        case " ${FIRST[*]} ${SECOND[*]} " in *" $file "*) ;; *) REST+=("$file") ;; esac
    done
    HALF=$(( ${#REST[@]} / 2 ))
    echo "== TensorFlow backend: full suite, first half"
    tf_suite "${FIRST[@]}" "${REST[@]:0:HALF}"
    echo "== TensorFlow backend: full suite, second half"
    tf_suite "${SECOND[@]}" "${REST[@]:HALF}"
fi

echo "== JAX backend without TensorFlow: core tests"
KERAS_BACKEND=jax .venv-jax/bin/python -m pytest -q -m "not slow" ${WORKERS[@]+"${WORKERS[@]}"} \
    tests/test_boxes.py tests/test_anchors.py tests/test_targets.py tests/test_layers.py \
    tests/test_losses.py tests/test_inference.py \
    tests/test_models.py tests/test_backend_agnostic.py tests/test_batch_norm.py \
    tests/test_backbones.py \
    "tests/test_fold.py::test_the_inference_model_is_folded_and_detects_the_same" \
    "tests/test_interrupt.py::test_a_run_stopped_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights" \
    "tests/test_interrupt.py::test_a_mid_epoch_snapshot_refuses_another_epoch_length" "$@"
