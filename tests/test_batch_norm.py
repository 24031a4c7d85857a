"""The backbone's BatchNormalization: frozen for a pretrained start, trained with momentum 0.9
(PyTorch's default) from a random start, so the moving statistics used in inference catch up
with the batches within tens of steps (Keras' 0.99 needs hundreds: a detector trained 100 steps
found nothing with them, see keras_retinanet.backbones.TRAINED_BATCH_NORM_MOMENTUM).

Runs on every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_retinanet import models
from keras_retinanet.backbones import TRAINED_BATCH_NORM_MOMENTUM

SMALL = dict(pyramid_feature_size=16, classification_feature_size=16, regression_feature_size=16)


def batch_norms(model: keras.Model) -> list:
    return [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


@pytest.fixture(scope="module")
def from_scratch():
    keras.utils.set_random_seed(0)
    return models.retinanet_model(1, weights=None, **SMALL)


@pytest.mark.parametrize("variant", [None, "torchvision_v1", "fizyr"])
def test_trained_batch_norm_momentum_and_frozen_batch_norm(variant):
    trained = batch_norms(models.retinanet_model(1, weights=None, variant=variant, **SMALL))
    assert len(trained) == 53
    assert all(layer.trainable for layer in trained)
    assert {layer.momentum for layer in trained} == {TRAINED_BATCH_NORM_MOMENTUM}
    frozen = batch_norms(
        models.retinanet_model(1, weights=None, variant=variant, freeze_batch_norm=True, **SMALL)
    )
    assert not any(layer.trainable for layer in frozen)


def test_moving_statistics_reach_the_batch_statistics_within_30_steps(from_scratch):
    """The first BatchNormalization sees the stem convolution's output, whatever the others do:
    after 30 training-mode passes over one batch, its moving mean and variance are within 10%
    of that batch's (momentum 0.9 leaves 0.9^30 = 4% of the start; 0.99 would leave 74%)."""
    first = batch_norms(from_scratch)[0]
    stem = keras.Model(from_scratch.input, first.input)
    rng = np.random.default_rng(0)
    images = rng.uniform(-120.0, 150.0, (2, 64, 64, 3)).astype("float32")
    features = np.asarray(stem(images)).reshape(-1, first.gamma.shape[0])
    mean, variance = features.mean(0), features.var(0)
    assert np.abs(mean).max() > 1.0  # far from the starting mean, 0
    for _ in range(30):
        from_scratch(images, training=True)
    moving_mean = np.asarray(first.moving_mean)
    moving_variance = np.asarray(first.moving_variance)
    np.testing.assert_allclose(moving_mean, mean, rtol=0.1, atol=1e-3 * np.abs(mean).max())
    np.testing.assert_allclose(moving_variance, variance, rtol=0.1, atol=1e-3 * variance.max())


def test_momentum_survives_saving(from_scratch, tmp_path):
    path = str(tmp_path / "scratch.keras")
    models.save_model(from_scratch, path)
    loaded = batch_norms(models.load_model(path))
    assert {layer.momentum for layer in loaded} == {TRAINED_BATCH_NORM_MOMENTUM}
