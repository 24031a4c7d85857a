"""Quiet start without a GPU; importing the package registers the classes its models use."""

import os
import re
import subprocess
import sys

import pytest
from shared_data import DATA, missing_reason

from keras_retinanet import quiet

ALARMING = re.compile(r"^[EW]0000 |cuInit|cudart_stub", re.MULTILINE)


def run_fresh(code: str, log_level: str | None = None) -> subprocess.CompletedProcess:
    """``code`` in a new Python, with the environment a user has (no log-level setting, or
    ``log_level``, as scripts/demo.sh sets 2)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = log_level
    env["KERAS_BACKEND"] = "tensorflow"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


needs_cpu_only_tf = pytest.mark.skipif(
    quiet.has_nvidia_device() or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="checks the CPU-only start of the TensorFlow backend",
)


@needs_cpu_only_tf
def test_help_prints_no_tensorflow_error_lines():
    done = run_fresh("from keras_retinanet.cli.train import main; main(['--help'])")
    assert done.returncode == 0 and "usage: retinanet-train" in done.stdout
    assert not ALARMING.search(done.stderr), done.stderr


@needs_cpu_only_tf
def test_a_first_operation_at_log_level_2_prints_no_cuinit_error():
    # The README's command (scripts/demo.sh) exports TF_CPP_MIN_LOG_LEVEL=2, which shows
    # ERROR lines: cuInit's failure, logged at the first operation, was the first thing a
    # newcomer saw.
    done = run_fresh("import keras_retinanet, keras; print(keras.ops.add(1, 1))", "2")
    assert done.returncode == 0 and "2" in done.stdout
    assert not ALARMING.search(done.stderr), done.stderr


@needs_cpu_only_tf
@pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())
def test_one_step_training_prints_no_tensorflow_error_lines(tmp_path):
    argv = ["--weights", "none", "--image-min-side", "96", "--image-max-side", "128",
            "--steps", "1", "--epochs", "1", "--no-evaluation", "--quiet",
            "--snapshot-path", str(tmp_path), "voc", str(DATA / "voc2007_sample")]  # fmt: skip
    done = run_fresh(f"from keras_retinanet.cli.train import main; main({argv!r})")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "resnet50_voc_01.keras").is_file()  # it did train
    assert not ALARMING.search(done.stderr), done.stderr


def test_nothing_is_muted_where_a_gpu_exists_or_tensorflow_already_runs(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(quiet, "has_nvidia_device", lambda: True)
    assert quiet.quiet_tensorflow_start() is False
    monkeypatch.setattr(quiet, "has_nvidia_device", lambda: False)
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    assert quiet.quiet_tensorflow_start() is False


def test_has_nvidia_device_reads_the_device_files(monkeypatch):
    monkeypatch.setattr(quiet.sys, "platform", "linux")
    monkeypatch.setattr(quiet.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    assert quiet.has_nvidia_device()
    monkeypatch.setattr(quiet.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(quiet.os.path, "exists", lambda path: False)
    assert not quiet.has_nvidia_device()


@pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())
def test_import_keras_retinanet_alone_lets_keras_load_its_snapshots(tmp_path):
    # A compiled training snapshot (our losses) and an inference model (our layers), loaded
    # in a fresh process that imports only the package, as KerasHub users expect.
    from keras_retinanet import models
    from keras_retinanet.training import compile_model

    training = compile_model(models.retinanet_model(2, weights=None))
    models.save_model(training, str(tmp_path / "train.keras"))
    models.save_model(models.retinanet_box(training), str(tmp_path / "infer.keras"))
    done = run_fresh(
        "import keras, keras_retinanet\n"
        f"a = keras.saving.load_model({str(tmp_path / 'train.keras')!r}, compile=True)\n"
        f"b = keras.saving.load_model({str(tmp_path / 'infer.keras')!r})\n"
        "print(sorted(type(f).__name__ for f in a.loss.values()), b.outputs[0].shape[-1])\n"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['FocalLoss', 'SmoothL1Loss'] 4"
