"""Training that survives being stopped (keras_retinanet.training.interrupt): a stop signal
mid-epoch writes a snapshot that resumes exactly, a second signal exits at once, periodic
snapshots keep only the newest, and a full disk keeps the previous snapshot.

The data is the synthetic shapes set, written in each test's folder, so these run on any
checkout and on every backend (the JAX half of the suite runs the backend-agnostic ones).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_retinanet import models
from keras_retinanet.datasets.shapes import write_shapes_dataset
from keras_retinanet.training import TrainConfig, TrainingError, train
from keras_retinanet.training.interrupt import (
    ResumePoint,
    TrainingInterrupted,
    resume_point,
)
from keras_retinanet.training.snapshots import SnapshotSpaceError

STEPS, EPOCHS = 3, 2


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    # 96x128 images: an epoch of 3 steps reads each of the 6 images once (batch 2).
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(
        root, num_train=6, num_test=2, image_size=(96, 128), shape_size=(24, 60)
    )


def _config(shapes: Path, out: Path, **changes) -> TrainConfig:
    values = {
        "dataset": {
            "type": "voc",
            "data_dir": str(shapes),
            "train_set": "trainval",
            "val_set": None,
            "classes": str(shapes / "classes.txt"),
        },
        "weights": None,
        "image_min_side": 96,
        "image_max_side": 128,
        "batch_size": 2,
        "steps": STEPS,
        "epochs": EPOCHS,
        "evaluation": False,
        "snapshot_path": str(out),
        "checkpoint_minutes": None,
        "verbose": 0,
        "lr": 1e-4,
    }
    values.update(changes)
    return TrainConfig(**values)


class SignalAt(keras.callbacks.Callback):
    """Send this process ``signal_number`` ``times`` at the end of one step, through the real
    handlers (the signal is delivered to the main thread at once)."""

    def __init__(self, epoch: int, batch: int, signal_number=signal.SIGTERM, times: int = 1):
        super().__init__()
        self.at, self.signal_number, self.times = (epoch, batch), signal_number, times
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signal_number)


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_a_run_stopped_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights(shapes, tmp_path):
    whole = train(_config(shapes, tmp_path / "whole", seed=0))

    before = signal.getsignal(signal.SIGTERM)
    config = _config(shapes, tmp_path / "cut", seed=0, callbacks=[SignalAt(1, 0)])
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config)
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are given back
    interrupted = stopped.value
    assert interrupted.exit_status == 128 + signal.SIGTERM
    # After step 1 of epoch 2 (the second epoch), with the position in the name.
    checkpoint = interrupted.checkpoint
    assert Path(checkpoint).name == "resnet50_voc_02_step00001.keras", checkpoint
    assert f"epoch 2, step 1 of {STEPS}" in str(interrupted) and checkpoint in str(interrupted)
    metadata = models.read_metadata(checkpoint)
    assert metadata["epoch"] == 1 and metadata["resume"]["step"] == 1
    assert metadata["resume"]["steps_per_epoch"] == STEPS
    assert set(metadata["resume"]["epoch_sums"]) >= {"loss", "classification_loss"}
    assert metadata["data_seed"] == 0
    snapshot = keras.saving.load_model(checkpoint, compile=True)
    assert int(snapshot.optimizer.iterations) == STEPS + 1  # one epoch and one step
    # The epoch-1 snapshot is still there and complete (it was the resume point before).
    assert (
        int(
            keras.saving.load_model(
                str(tmp_path / "cut" / "resnet50_voc_01.keras"), compile=True
            ).optimizer.iterations
        )
        == STEPS
    )

    resumed = train(_config(shapes, tmp_path / "cut", snapshot=checkpoint))
    model = resumed["model"]
    assert int(model.optimizer.iterations) == STEPS * EPOCHS
    # Every weight, batch-norm statistics included, as if nothing had happened.
    largest = max(
        float(np.max(np.abs(a - b))) for a, b in zip(_weights(model), _weights(whole["model"]))
    )
    assert largest <= 1e-6, largest
    # The resumed epoch logs the mean over all its steps, not over the two after the resume.
    assert resumed["history"]["loss"] == pytest.approx(whole["history"]["loss"][1:], rel=1e-4)
    # The epoch's own snapshot replaced the mid-epoch one.
    assert not Path(checkpoint).exists()
    assert models.read_metadata(resumed["last_snapshot"])["epoch"] == EPOCHS


def test_an_unseeded_run_resumes_with_its_own_data_order(shapes, tmp_path):
    # Without --seed the generator draws a seed; the snapshot carries it, and the resumed run
    # reads its batches in that order (recorded again in the epoch's snapshot).
    config = _config(shapes, tmp_path / "s", epochs=1, steps=2, callbacks=[SignalAt(0, 0)])
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config)
    drawn = models.read_metadata(stopped.value.checkpoint)["data_seed"]
    resumed = train(_config(shapes, tmp_path / "s", epochs=1, steps=2,
                            snapshot=stopped.value.checkpoint))  # fmt: skip
    assert models.read_metadata(resumed["last_snapshot"])["data_seed"] == drawn


def test_periodic_snapshots_keep_only_the_newest(shapes, tmp_path):
    seen = []

    class LookAtEpochEnd(keras.callbacks.Callback):  # runs before the epoch's snapshot
        def on_epoch_end(self, epoch, logs=None):
            seen.append(sorted(p.name for p in (tmp_path / "s").glob("*_step*")))

    config = _config(
        shapes, tmp_path / "s", epochs=1, steps=5, seed=0, checkpoint_steps=2,
        callbacks=[LookAtEpochEnd()],
    )  # fmt: skip
    result = train(config)
    # Written after steps 2 and 4; only step 4's was left when the epoch ended, and the
    # epoch's snapshot then removed it.
    assert seen == [["resnet50_voc_01_step00004.keras"]]
    assert not list((tmp_path / "s").glob("*_step*"))
    assert result["last_snapshot"].endswith("resnet50_voc_01.keras")


def test_a_mid_epoch_snapshot_refuses_another_epoch_length():
    record = {"epoch": 2, "resume": ResumePoint(2, 5, {"loss": 5.0}).record(40)}
    point = resume_point(record, 40, "a.keras")
    assert (point.epoch, point.step, point.sums) == (2, 5, {"loss": 5.0})
    with pytest.raises(TrainingError, match="step 5 of an epoch of 40 steps.*has 20 steps"):
        resume_point(record, 20, "a.keras")
    assert resume_point({"epoch": 3}, 20, "a.keras") is None  # an epoch's end: no position


class _FillsUp:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, path, mode, room):
        self.file, self.room = open(path, mode), room

    def write(self, data):
        if self.room < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_keeps_the_previous_snapshot_and_says_what_is_needed(
    shapes, tmp_path, monkeypatch
):
    from keras.src.saving import saving_lib  # writes .keras files with the built-in open

    def filling_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            return _FillsUp(path, mode, 2**20)
        return open(path, mode, *args, **kwargs)

    class DiskFillsInEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # every snapshot write from here on fails after 1 MB
                monkeypatch.setattr(saving_lib, "open", filling_open, raising=False)

    out = tmp_path / "s"
    with pytest.raises(SnapshotSpaceError) as full:
        train(_config(shapes, out, seed=0, callbacks=[DiskFillsInEpoch2()]))
    message = str(full.value)
    previous = out / "resnet50_voc_01.keras"
    assert f"no space left on the device of {out}" in message
    assert "resnet50_voc_02.keras" in message and f"--snapshot {previous}" in message
    needed = float(message.split("needs about ")[1].split(" MB")[0])
    assert 250 < needed < 600, message  # ResNet50 with Adam's two moments: ~440 MB
    # The previous snapshot is whole and resumable; no partial file is left behind.
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".keras") == [
        "resnet50_voc_01.keras", "resnet50_voc_best.keras",
    ]  # fmt: skip
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert models.read_metadata(str(previous))["epoch"] == 1
    assert int(keras.saving.load_model(str(previous), compile=True).optimizer.iterations) == 3


_CLI_RUN = [sys.executable, "-m", "keras_retinanet.cli.train"]


def _cli(shapes: Path, out: Path, *extra: str) -> list[str]:
    return [
        *_CLI_RUN, "--weights", "none", "--image-min-side", "96", "--image-max-side", "128",
        "--steps", "200", "--epochs", "1", "--no-evaluation", "--quiet", "--seed", "0",
        "--snapshot-path", str(out), *extra, "voc", str(shapes), "--val-set", "none",
    ]  # fmt: skip


def _wait_for(pattern_dir: Path, pattern: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not list(pattern_dir.glob(pattern)):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {pattern} in {pattern_dir}"
        time.sleep(0.2)


def _train_until_a_checkpoint(shapes: Path, out: Path) -> subprocess.Popen:
    """Start retinanet-train writing a mid-epoch snapshot every step; return once the first
    one is complete (training is under way)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen(
        _cli(shapes, out, "--checkpoint-every", "1steps"),
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        _wait_for(out, "resnet50_voc_*_step*.keras", process)
    except BaseException:
        process.kill()
        raise
    return process


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_command_stops_on_sigterm_and_prints_how_to_resume(shapes, tmp_path):
    out = tmp_path / "s"
    process = _train_until_a_checkpoint(shapes, out)
    try:  # training is under way
        process.send_signal(signal.SIGTERM)  # training is under way
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "retinanet-train: interrupted by SIGTERM at epoch 1, step" in err
    command = err.split("resume with: ", 1)[1].splitlines()[0]
    checkpoints = sorted(out.glob("resnet50_voc_*_step*.keras"))
    assert len(checkpoints) == 1  # the periodic ones were replaced by the last
    assert command.startswith(f"retinanet-train --snapshot {checkpoints[0]} --weights none")
    assert command.endswith(f"voc {shapes} --val-set none")
    step = models.read_metadata(str(checkpoints[0]))["resume"]["step"]
    assert f"step {step} of 200" in err and 1 <= step < 200


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_signal_exits_at_once_and_leaves_the_last_snapshot_whole(shapes, tmp_path):
    out = tmp_path / "s"
    process = _train_until_a_checkpoint(shapes, out)
    try:
        process.send_signal(signal.SIGINT)
        # Signals that arrive together are handled once: the second follows the first's
        # message, while the step finishes and the snapshot is written (a second or more).
        said = []
        while not said or "finishing this step" not in said[-1]:
            said.append(process.stderr.readline())
            assert said[-1], "".join(said)[-3000:]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        err = "".join(said) + err
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "SIGINT again: exiting now. The last complete snapshot is" in err
    assert "interrupted by" not in err  # it did not wait to write another one
    named = err.split("The last complete snapshot is ", 1)[1].split()[0]
    assert Path(named).is_file() and "_step" in named
    metadata = models.read_metadata(named)
    assert metadata["resume"]["step"] >= 1
    assert keras.saving.load_model(named, compile=True).optimizer.iterations.numpy() >= 1
