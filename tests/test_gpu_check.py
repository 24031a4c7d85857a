"""benchmarks/gpu_check.sh --cpu-smoke: the GPU check runs end to end (JAX + torchvision).

The GPU machine has JAX and PyTorch but no TensorFlow: the script runs ours from the JAX
environment (no TensorFlow in it) and torchvision from the torch one, as there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JAX_PYTHON = os.environ.get("KERAS_RETINANET_JAX_PYTHON", str(ROOT / ".venv-jax/bin/python"))
TORCH_PYTHON = os.environ.get("KERAS_RETINANET_TORCH_PYTHON", str(ROOT / ".venv-torch/bin/python"))


@pytest.mark.skipif(
    not (os.path.exists(JAX_PYTHON) and os.path.exists(TORCH_PYTHON)),
    reason="needs the JAX and torch environments that scripts/run_tests.sh creates",
)
def test_gpu_check_cpu_smoke_prints_one_row_per_measurement():
    completed = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        # The suite runs with KERAS_BACKEND=tensorflow; the script must set JAX itself.
        env=dict(
            os.environ, PYTHON=JAX_PYTHON, TORCH_PYTHON=TORCH_PYTHON, KERAS_BACKEND="tensorflow"
        ),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| ours")
            or line.startswith("| torchvision")]  # fmt: skip
    # 2 models x precision off/on x (train batch 1, infer batch 1).
    assert len(rows) == 8
    seen = set()
    for row in rows:
        model, backend, mixed, task, size, batch, rate, memory = row.strip("| ").split(" | ")
        assert backend == {"ours": "jax", "torchvision": "torch"}[model]
        assert size == "64x64" and batch == "1" and memory == "n/a"  # CPU: no GPU memory
        assert float(rate) > 0
        seen.add((model, mixed, task))
    assert len(seen) == 8
    assert re.search(r"jax \S+ \[CpuDevice", completed.stderr)
    # The usage error for a wrong flag.
    wrong = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--cpu"], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "usage" in wrong.stderr


@pytest.mark.skipif(not os.path.exists(JAX_PYTHON), reason="needs the JAX environment")
def test_gpu_check_takes_a_backbone_preset():
    """``gpu_check.sh --backbone NAME``: ours trains and detects on that preset, on JAX."""
    command = [JAX_PYTHON, str(ROOT / "benchmarks/gpu_check.py"), "ours", "--backbone",
               "mobilenet_v3_small_lite", "--size", "64x64", "--batches", "1",
               "--inference-batches", "1", "--warmup", "0", "--steps", "1"]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert [json.loads(r[7:])["model"] for r in results] == ["ours/mobilenet_v3_small_lite"] * 2
    assert all(json.loads(r[7:])["images_per_second"] > 0 for r in results)
    script = str(ROOT / "benchmarks/gpu_check.sh")
    wrong = subprocess.run(["bash", script, "--backbone"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "--backbone NAME" in wrong.stderr
