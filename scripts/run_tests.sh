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
echo "== TensorFlow backend: full suite"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -m "not slow" "$@"

if [ ! -x .venv-jax/bin/python ]; then "$PYTHON" -m venv .venv-jax; fi
.venv-jax/bin/pip install -q -e . "jax[cpu]" pytest
if .venv-jax/bin/python -c "import tensorflow" 2>/dev/null; then
    echo "TensorFlow must not be installed in .venv-jax" >&2; exit 1
fi
echo "== JAX backend without TensorFlow: core tests"
KERAS_BACKEND=jax .venv-jax/bin/python -m pytest -q -m "not slow" \
    tests/test_boxes.py tests/test_anchors.py tests/test_layers.py tests/test_losses.py \
    tests/test_models.py tests/test_backend_agnostic.py "$@"
