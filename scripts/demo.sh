#!/usr/bin/env bash
# Set up everything on a fresh machine and run the embedded demo: write the synthetic shapes
# dataset, train a RetinaNet on it, evaluate it, and draw its detections (demo_output/).
# Usage: bash scripts/demo.sh [retinanet-demo options, e.g. --minutes 5]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
.venv/bin/pip install -q -e ".[tensorflow]"
exec .venv/bin/retinanet-demo "$@"
