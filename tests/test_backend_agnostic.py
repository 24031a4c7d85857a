"""Train, snapshot, reload and predict without TensorFlow.

CI runs this file in the JAX environment, where TensorFlow is not installed, which proves the
package trains and predicts without it. On TensorFlow the same steps are tested one by one
(tests/test_train.py, test_models.py, test_predict.py), so the end-to-end run here is skipped
there to keep the suite short.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from multi_device import assert_trained_and_refused_odd_batch, train_on_two_devices

from keras_retinanet import models
from keras_retinanet.datasets.shapes import write_shapes_dataset
from keras_retinanet.inference import detect
from keras_retinanet.training import TrainConfig, train


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    return write_shapes_dataset(
        tmp_path_factory.mktemp("shapes"), num_train=4, num_test=2, image_size=(96, 128), seed=3
    )


def _config(shapes_dir, out, **overrides):
    values = {
        "dataset": {
            "type": "voc",
            "data_dir": str(shapes_dir),
            "train_set": "trainval",
            "val_set": "test",
            "classes": str(shapes_dir / "classes.txt"),
        },
        "weights": None,
        "epochs": 1,
        "steps": 2,
        "batch_size": 2,
        "image_min_side": 96,
        "image_max_side": 128,
        "snapshot_path": str(out),
        "verbose": 0,
        "seed": 0,
    }
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="on TensorFlow: tests/test_train.py, test_models.py and test_predict.py",
)
def test_train_snapshot_reload_predict(shapes_dir, tmp_path):
    result = train(_config(shapes_dir, tmp_path / "snaps"))
    assert math.isfinite(result["history"]["loss"][0])
    assert "mAP" in result["history"]  # the evaluation callback ran on this backend too
    snapshot = result["last_snapshot"]
    assert models.read_metadata(snapshot)["classes"] == ["rectangle", "ellipse", "triangle"]

    training_model = keras.saving.load_model(snapshot)
    assert int(training_model.optimizer.iterations.numpy()) == 2
    prediction_model = models.load_model(snapshot, convert=True, score_threshold=0.0)
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    (found,) = detect(prediction_model, [image], min_side=96, max_side=128)
    assert len(found) > 0  # score_threshold 0: every kept candidate is reported
    assert found.labels.min() >= 0 and found.labels.max() < 3
    assert (found.boxes[:, [0, 2]] <= 128).all() and (found.boxes[:, [1, 3]] <= 96).all()
    assert (found.boxes >= 0).all()
    assert np.all(np.diff(found.scores) <= 0)  # sorted, highest first


def test_jax_data_parallel_two_devices(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution.DataParallel is exercised on the JAX backend")
    # 3 training images: batches of 2 and 1; the short one is filled up to 2 (one per device).
    data = write_shapes_dataset(
        tmp_path / "shapes", num_train=3, num_test=1, image_size=(96, 128), seed=4
    )
    out = tmp_path / "snaps"
    argv = [
        "--weights", "none", "--image-min-side", "96", "--image-max-side", "128", "--quiet",
        "--multi-gpu", "2", "--batch-size", "2", "--epochs", "1", "--steps", "2",
        "--snapshot-path", str(out), "--no-evaluation",
        "voc", str(data), "--classes", str(data / "classes.txt"), "--val-set", "none",
    ]  # fmt: skip
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert_trained_and_refused_odd_batch(train_on_two_devices(argv, env))
    metadata = models.read_metadata(str(out / "resnet50_voc_01.keras"))
    assert math.isfinite(metadata["logs"]["loss"])
    trained = keras.saving.load_model(str(out / "resnet50_voc_01.keras"))
    assert int(trained.optimizer.iterations.numpy()) == 2
