"""Training across machines (keras_retinanet.training.multi_worker): the loop against ``model.fit``,
the cluster flags, and two real workers on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
from shared_data import DATA, missing_reason

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TensorFlow backend"
)

from keras_retinanet import models  # noqa: E402
from keras_retinanet.cli import train as train_cli  # noqa: E402
from keras_retinanet.training import multi_worker  # noqa: E402


def two_output_model() -> keras.Model:
    """A model with the training model's two named outputs, small enough to train in a test."""
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    regression = keras.layers.Dense(2, name="regression")(hidden)
    classification = keras.layers.Dense(1, activation="sigmoid", name="classification")(hidden)
    model = keras.Model(inputs, [regression, classification])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss={"regression": "mse", "classification": "binary_crossentropy"},
    )
    return model


def three_batches() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    regression = rng.normal(size=(12, 2)).astype("float32")
    classification = (rng.random((12, 1)) > 0.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, (regression, classification))).batch(4).repeat()


@pytest.fixture(params=["float32", "mixed_float16"])
def dtype_policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy(previous)


def test_loop_trains_exactly_as_fit_does(dtype_policy):
    # Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer: the loop must
    # scale the loss and let it unscale the gradients, as fit's train_step does (unscaled, the
    # updates would be 2**15 times too small). float16 rounds differently in the two graphs.
    tolerance = {"rtol": 1e-5, "atol": 1e-6}
    if dtype_policy == "mixed_float16":
        tolerance = {"rtol": 3e-3, "atol": 1e-4}
    keras.utils.set_random_seed(1)
    by_fit, by_loop = two_output_model(), two_output_model()
    if dtype_policy == "mixed_float16":
        assert isinstance(by_loop.optimizer, keras.optimizers.LossScaleOptimizer)
    initial = by_fit.get_weights()
    by_loop.set_weights(initial)
    fit_history = by_fit.fit(three_batches(), epochs=2, steps_per_epoch=3, verbose=0)
    loop_history = multi_worker.fit(by_loop, three_batches(), epochs=2, steps_per_epoch=3,
                                    verbose=0)  # fmt: skip

    for ours, theirs in zip(by_loop.get_weights(), by_fit.get_weights()):
        np.testing.assert_allclose(ours, theirs, **tolerance)
    moved = max(np.abs(a - b).max() for a, b in zip(by_loop.get_weights(), initial))
    assert moved > 100 * tolerance["atol"]
    assert int(by_loop.optimizer.iterations.numpy()) == 6
    for key in ("loss", "regression_loss", "classification_loss"):
        np.testing.assert_allclose(
            loop_history.history[key], fit_history.history[key], rtol=tolerance["rtol"]
        )


def test_a_stop_mid_epoch_ends_the_epoch_and_the_training():
    class StopAtSecondBatch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs_ended = []

        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_ended.append((epoch, sorted(logs)))

    model, stopper = two_output_model(), StopAtSecondBatch()
    history = multi_worker.fit(model, three_batches(), epochs=3, steps_per_epoch=3,
                               callbacks=[stopper], verbose=0)  # fmt: skip
    assert int(model.optimizer.iterations.numpy()) == 2
    assert stopper.epochs_ended == [(0, ["classification_loss", "loss", "regression_loss"])]
    assert len(history.history["loss"]) == 1


def test_a_model_without_one_loss_per_output_is_refused():
    model = two_output_model()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"one loss per output, keyed by \['regression'"):
        multi_worker.fit(model, three_batches(), epochs=1, steps_per_epoch=1, verbose=0)


def fake_strategy(cluster: dict, task_type: str | None, task_id: int | None):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_workers_are_numbered_as_tensorflow_numbers_input_pipelines():
    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert multi_worker.worker_position(fake_strategy(workers, "worker", 2)) == (2, 3)
    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert multi_worker.worker_position(fake_strategy(with_chief, "chief", 0)) == (0, 3)
    assert multi_worker.worker_position(fake_strategy(with_chief, "worker", 0)) == (1, 3)
    assert multi_worker.is_chief(fake_strategy(workers, "worker", 0))
    assert not multi_worker.is_chief(fake_strategy(with_chief, "worker", 0))
    # One process without a cluster: the only worker, and the chief.
    assert multi_worker.worker_position(tf.distribute.get_strategy()) == (0, 1)
    assert multi_worker.is_chief()


def test_cluster_flags_are_checked_before_anything_starts(monkeypatch):
    resolver = multi_worker.cluster_from_flags(["10.0.0.1:2222", "10.0.0.2:2222"], 1)
    assert resolver.cluster_spec().as_dict() == {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    local = multi_worker.local_cluster(3)  # distinct free ports, valid as --cluster
    assert len(set(local)) == 3 and all(host.startswith("localhost:") for host in local)
    assert multi_worker.cluster_from_flags(local, 2).task_id == 2
    with pytest.raises(ValueError, match="'10.0.0.1' is not HOST:PORT"):
        multi_worker.cluster_from_flags(["10.0.0.1"], 0)
    with pytest.raises(ValueError, match="names a worker twice"):
        multi_worker.cluster_from_flags(["a:1", "a:1"], 0)
    with pytest.raises(ValueError, match="--task-index 2 is out of range for 2 workers"):
        multi_worker.cluster_from_flags(["a:1", "b:1"], 2)
    with pytest.raises(ValueError, match="--cluster needs --task-index"):
        multi_worker.create_strategy(["a:1", "b:1"], None)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the cluster: pass --cluster"):
        multi_worker.create_strategy()
    monkeypatch.setenv("TF_CONFIG", "{cluster: oops}")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        multi_worker.create_strategy()


def test_a_strategy_after_tensorflow_has_run_is_a_clear_error():
    # MultiWorkerMirroredStrategy must come before TensorFlow's first operation in a process.
    script = (
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1\n"
        "from keras_retinanet.training import multi_worker\n"
        "try:\n"
        "    multi_worker.create_strategy(multi_worker.local_cluster(1), 0)\n"
        "except ValueError as e:\n"
        "    print('REFUSED', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))  # fmt: skip
    assert "REFUSED could not start MultiWorkerMirroredStrategy" in result.stdout, result.stderr
    assert "start a fresh process" in result.stdout


def test_cli_cluster_flags(capsys):
    args = train_cli.build_parser().parse_args(
        ["--cluster", "a:1, b:2", "--task-index", "1", "csv", "annotations.csv", "classes.csv"]
    )
    config = train_cli.config_from_args(args)
    assert (config.distribute, config.cluster, config.task_index) == (
        "multi_worker",
        ["a:1", "b:2"],
        1,
    )
    with pytest.raises(SystemExit):
        train_cli.main(["--cluster", "a:1", "--distribute", "mirrored", "csv", "a.csv", "c.csv"])
    assert "--cluster is for --distribute multi_worker, not mirrored" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.main(["--cluster", "a:1", "--multi-gpu", "2", "csv", "a.csv", "c.csv"])
    assert "--multi-gpu is for one machine" in capsys.readouterr().err


# Worker 1 asks to stop after the first batch of the third epoch; worker 0 never does. Both
# must stop there, or one would wait forever in the other's all-reduce.
_WORKER = """
import hashlib, json, sys
import keras, numpy as np
from keras_retinanet.cli.train import build_parser, config_from_args
from keras_retinanet.training import train

class StopInThirdEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2 and batch == 0:
            self.model.stop_training = True

config = config_from_args(build_parser().parse_args(sys.argv[1:]))
if config.task_index == 1:
    config.callbacks = [StopInThirdEpoch()]
result = train(config)
model = result["model"]
weights = b"".join(np.asarray(w).tobytes() for w in model.get_weights())
print("RESULT " + json.dumps({
    "weights": hashlib.sha256(weights).hexdigest(),
    "iterations": int(model.optimizer.iterations.numpy()),
    "epochs": result["epochs_done"],
    "loss": result["history"]["loss"],
    "last": result["last_snapshot"],
}), flush=True)
"""


@pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())
def test_two_workers_resume_train_in_step_and_only_the_chief_writes(tmp_path):
    # The snapshot the workers resume from: epoch 1 done, 5 optimizer steps taken.
    from keras_retinanet.training import compile_model

    model = compile_model(models.retinanet_model(20, weights=None))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(5)
    metadata = {"epoch": 1, "num_classes": 20}
    resume = models.save_model(model, str(tmp_path / "epoch1.keras"), metadata)
    del model

    def argv_of(index, cluster):
        return ["--snapshot", resume, "--image-min-side", "96", "--image-max-side", "128",
                "--batch-size", "2", "--steps", "2", "--epochs", "3", "--quiet",
                "--cluster", cluster, "--task-index", str(index),
                "--snapshot-path", str(tmp_path / f"snapshots{index}"),
                "--tensorboard-dir", str(tmp_path / f"tensorboard{index}"),
                "voc", str(DATA / "voc2007_sample")]  # fmt: skip

    chief, other = _run_two_workers(_WORKER, argv_of, tmp_path)

    # In step: the same weights (batch-norm statistics included), steps and global losses on
    # both. Resumed at epoch 2 after 5 steps: 2 steps, then worker 1's stop after 1 more.
    assert chief["weights"] == other["weights"]
    assert chief["iterations"] == other["iterations"] == 5 + 2 + 1
    assert chief["epochs"] == other["epochs"] == 3
    assert chief["loss"] == other["loss"] and len(chief["loss"]) == 2
    # Only the chief evaluated (mAP logged) and wrote snapshots, logs and summaries.
    assert chief["last"] == str(tmp_path / "snapshots0" / "resnet50_voc_03.keras")
    assert other["last"] is None
    assert not (tmp_path / "snapshots1").exists() and not (tmp_path / "tensorboard1").exists()
    assert (tmp_path / "tensorboard0" / "train").is_dir()
    log = (tmp_path / "snapshots0" / "training_log.csv").read_text().splitlines()
    assert "mAP" in log[0].split(",") and [row.split(",")[0] for row in log[1:]] == ["1", "2"]
    snapshot = models.load_model(chief["last"], compile=True)
    assert int(snapshot.optimizer.iterations.numpy()) == 8
    assert models.read_metadata(chief["last"])["epoch"] == 3


_DYING_WORKER = """
import os, sys
import numpy as np
from keras_retinanet.training import multi_worker

index = int(sys.argv[2])
strategy = multi_worker.create_strategy(sys.argv[1].split(","), index)
import keras, tensorflow as tf

with strategy.scope():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, [keras.layers.Dense(2, name="regression")(inputs),
                                 keras.layers.Dense(1, name="classification")(inputs)])
    model.compile(optimizer="sgd", loss={"regression": "mse", "classification": "mse"})

class DieAtSecondBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if index == 1 and batch == 1:
            os._exit(3)

x = np.ones((2, 3), "float32")
data = tf.data.Dataset.from_tensors((x, (x[:, :2], x[:, :1]))).repeat()
with strategy.scope():
    try:
        multi_worker.fit(model, data, epochs=1, steps_per_epoch=50, verbose=0,
                         callbacks=[DieAtSecondBatch()])
    except multi_worker.WorkerLost as e:
        print("LOST", e, flush=True)
        sys.exit(0)
print("FINISHED", flush=True)
"""


def test_when_a_worker_dies_the_other_stops_with_a_clear_error():
    cluster = ",".join(multi_worker.local_cluster(2))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    workers = [
        subprocess.Popen([sys.executable, "-c", _DYING_WORKER, cluster, str(index)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for index in range(2)
    ]  # fmt: skip
    try:
        (survivor_out, survivor_err), _ = (worker.communicate(timeout=300) for worker in workers)
    finally:
        for worker in workers:
            worker.kill()
    assert workers[1].returncode == 3
    assert workers[0].returncode == 0, survivor_err[-3000:]
    assert "LOST worker 0 of 2: a step that all workers share failed" in survivor_out
    assert "FINISHED" not in survivor_out


# Worker 1 is sent SIGTERM at the end of its second step; worker 0 is not.
_SIGNALLED_WORKER = """
import hashlib, json, os, signal, sys
import keras, numpy as np
from keras_retinanet.cli.train import build_parser, config_from_args
from keras_retinanet.training import train
from keras_retinanet.training.interrupt import TrainingInterrupted

class SigtermAtSecondStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

config = config_from_args(build_parser().parse_args(sys.argv[1:]))
if config.task_index == 1:
    config.callbacks = [SigtermAtSecondStep()]
try:
    train(config)
    raise SystemExit("not interrupted")
except TrainingInterrupted as e:
    print("RESULT " + json.dumps({"checkpoint": e.checkpoint, "status": e.exit_status,
                                  "message": str(e)}), flush=True)
"""


def test_sigterm_to_one_worker_stops_all_at_the_same_step_with_one_snapshot(tmp_path):
    from keras_retinanet.datasets.shapes import write_shapes_dataset

    shapes = write_shapes_dataset(
        tmp_path / "shapes", num_train=8, num_test=2, image_size=(96, 128), shape_size=(24, 60)
    )

    def argv_of(index, cluster):
        return ["--weights", "none", "--image-min-side", "96", "--image-max-side", "128",
                "--batch-size", "2", "--steps", "4", "--epochs", "1", "--quiet", "--seed", "0",
                "--no-evaluation", "--checkpoint-every", "none",
                "--cluster", cluster, "--task-index", str(index),
                "--snapshot-path", str(tmp_path / f"snapshots{index}"),
                "voc", str(shapes), "--val-set", "none"]  # fmt: skip

    chief, other = _run_two_workers(_SIGNALLED_WORKER, argv_of, tmp_path)
    # Both stopped after step 2 of epoch 1 and name the one snapshot, which the chief wrote.
    expected = str(tmp_path / "snapshots0" / "resnet50_voc_01_step00002.keras")
    # (each names it in its own --snapshot-path: the chief's folder on a shared file system)
    assert chief["checkpoint"] == expected
    assert other["checkpoint"] == str(tmp_path / "snapshots1" / os.path.basename(expected))
    assert chief["status"] == other["status"] == 128 + 15
    assert "epoch 1, step 2 of 4" in chief["message"] and "epoch 1, step 2 of 4" in other["message"]
    assert sorted(p.name for p in (tmp_path / "snapshots0").glob("*.keras")) == [
        "resnet50_voc_01_step00002.keras"
    ]
    assert not (tmp_path / "snapshots1").exists()
    metadata = models.read_metadata(expected)
    assert metadata["resume"]["step"] == 2 and metadata["epoch"] == 0
    snapshot = models.load_model(expected, compile=True)
    assert int(snapshot.optimizer.iterations.numpy()) == 2


def _run_two_workers(script: str, argv_of, tmp_path) -> tuple[dict, dict]:
    """Run ``script`` as workers 0 and 1 of a localhost cluster (``argv_of(index, cluster)``
    gives each one's arguments); both must exit 0. Returns their ``RESULT`` records."""
    cluster = ",".join(multi_worker.local_cluster(2))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv_of(index, cluster)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )  # fmt: skip
        for index in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=600))
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    chief, other = (json.loads(out.split("RESULT ", 1)[1]) for out, _ in outputs)
    return chief, other
