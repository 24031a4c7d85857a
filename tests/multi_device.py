"""Shared by the two-device training tests (TensorFlow's MirroredStrategy and JAX's
DataParallel): run ``retinanet-train`` in a fresh process that first tries an odd batch size."""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = """
import sys
{setup}
from keras_retinanet.cli import train
argv = sys.argv[1:]
odd = ["3" if a == "2" and argv[i - 1] == "--batch-size" else a for i, a in enumerate(argv)]
try:
    train.main(odd)
except SystemExit as e:
    print("odd batch exit", e.code, flush=True)
train.main(argv)
"""


def train_on_two_devices(
    argv: list[str], env: dict[str, str], setup: str = ""
) -> subprocess.CompletedProcess:
    """``retinanet-train ARGV`` (with ``--batch-size 2``) in a subprocess, after the same run
    with ``--batch-size 3``, which must be refused; ``setup`` runs first (device set-up)."""
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(setup=setup), *argv],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        timeout=600,
    )


def assert_trained_and_refused_odd_batch(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "odd batch exit 1" in result.stdout
    assert "--batch-size 3 does not split evenly over 2 devices" in result.stderr
