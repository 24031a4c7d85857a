"""The training model's compiled state is built before fit, so the train step traces once."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_retinanet.training.build import build_compiled_state, compile_model


def _tiny_detector(num_classes: int = 2) -> keras.Model:
    # The shapes of a RetinaNet's outputs: (B, anchors, 4) and (B, anchors, classes).
    images = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(8, 3, strides=4, padding="same")(images)
    regression = keras.layers.Reshape((-1, 4), name="regression")(
        keras.layers.Conv2D(4, 1)(features)
    )
    classification = keras.layers.Reshape((-1, num_classes), name="classification")(
        keras.layers.Conv2D(num_classes, 1, activation="sigmoid")(features)
    )
    return keras.Model(images, [regression, classification])


def _traces_of_one_epoch(build_first: bool) -> int:
    model = compile_model(_tiny_detector(), lr=1e-3)
    traces = []
    original = model.train_step

    def counting_train_step(data):
        traces.append(1)  # Python runs once per trace, never per compiled step
        return original(data)

    model.train_step = counting_train_step
    if build_first:
        build_compiled_state(model)
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3), dtype=np.float32)
    regression = np.concatenate([rng.random((2, 64, 4)), np.ones((2, 64, 1))], -1)
    labels = np.zeros((2, 64, 3))
    labels[:, :8, 0], labels[..., 2] = 1, 1
    data = (images, (regression.astype("float32"), labels.astype("float32")))
    history = model.fit(*data, batch_size=1, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return len(traces)


def test_the_train_step_is_traced_once():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the double trace is the TensorFlow trainer's")
    # Without the ahead-of-fit build, Keras creates the loss trackers inside the first trace
    # and tf.function traces the whole step again: the case this guards against.
    assert _traces_of_one_epoch(build_first=False) == 2
    assert _traces_of_one_epoch(build_first=True) == 1
