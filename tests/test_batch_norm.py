"""The backbone's BatchNormalization: frozen for a pretrained start, trained with momentum 0.9
(PyTorch's default) from a random start, so the moving statistics used in inference catch up
with the batches within tens of steps (Keras' 0.99 needs hundreds: a detector trained 100 steps
found nothing with them, see keras_retinanet.model.backbones.TRAINED_BATCH_NORM_MOMENTUM), and
re-estimated over training batches at the end of each epoch (training.batch_norm).

Runs on every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet import models
from keras_retinanet.model.backbones import TRAINED_BATCH_NORM_MOMENTUM
from keras_retinanet.preprocessing.transform import random_transform
from keras_retinanet.preprocessing.voc import PascalVocGenerator
from keras_retinanet.training.batch_norm import (
    PreciseBatchNorm,
    trained_batch_norms,
    update_batch_norm_statistics,
)

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


def batch_statistics(model: keras.Model, layers: list, images: np.ndarray) -> list:
    """Each layer's input mean and variance over ``images`` in training mode (batch
    statistics in every BatchNormalization before it, as in a training step)."""
    probe = keras.Model(model.input, [layer.input for layer in layers])
    outputs = probe(images, training=True)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    stats = []
    for layer, output in zip(layers, outputs, strict=True):
        values = np.asarray(output, "float64").reshape(-1, layer.gamma.shape[0])
        stats.append((values.mean(0), values.var(0)))
    return stats


def test_update_sets_the_mean_of_the_batches_statistics(from_scratch):
    layers = trained_batch_norms(from_scratch)
    first, last = layers[0], layers[-1]
    rng = np.random.default_rng(1)
    batches = [rng.uniform(-120.0, 150.0, (2, 64, 96, 3)).astype("float32") for _ in range(4)]
    per_batch = [batch_statistics(from_scratch, [first, last], b) for b in batches]
    weights = [np.asarray(v) for v in from_scratch.trainable_weights]
    for layer in (first, last):  # stale values, far from any batch's
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 50.0, "float32"))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1e4, "float32"))

    assert update_batch_norm_statistics(from_scratch, iter(batches)) == 4

    for k, layer in enumerate((first, last)):
        mean = np.mean([stats[k][0] for stats in per_batch], axis=0)
        variance = np.mean([stats[k][1] for stats in per_batch], axis=0)
        np.testing.assert_allclose(layer.moving_mean, mean, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(layer.moving_variance, variance, rtol=1e-3, atol=1e-3)
    assert {layer.momentum for layer in layers} == {TRAINED_BATCH_NORM_MOMENTUM}  # restored
    for before, after in zip(weights, from_scratch.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))


def test_a_failing_batch_puts_the_statistics_back(from_scratch):
    layers = trained_batch_norms(from_scratch)
    before = [np.asarray(layer.moving_mean).copy() for layer in layers]
    calls = []

    def forward(images):
        calls.append(images.shape)
        return from_scratch(images, training=True)

    def batches():
        yield np.full((1, 64, 64, 3), 100.0, "float32")
        raise OSError("unreadable image")

    with pytest.raises(OSError, match="unreadable"):
        update_batch_norm_statistics(from_scratch, batches(), forward)
    assert calls == [(1, 64, 64, 3)]  # the given forward ran, and changed the statistics ...
    for layer, mean in zip(layers, before, strict=True):  # ... which are back as they were
        np.testing.assert_array_equal(np.asarray(layer.moving_mean), mean)
    assert {layer.momentum for layer in layers} == {TRAINED_BATCH_NORM_MOMENTUM}


def test_statistics_are_estimated_with_dropout_off():
    """Stochastic depth (EfficientNet's per-image Dropout) must not enter the estimate: the
    statistics are those of the network inference runs, and the rate is put back (also on
    TensorFlow, whose compiled forward pass reads it when traced)."""
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, padding="same")(inputs)
    x = keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), name="drop")(x)
    outputs = keras.layers.BatchNormalization(name="norm")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 8, 8, 4)).astype("float32")
    features = np.asarray(model.layers[1](images))  # the convolution: what inference feeds norm
    keras.utils.set_random_seed(0)
    for _ in range(2):  # twice: the compiled pass is reused
        assert update_batch_norm_statistics(model, [images[:1], images[1:]]) == 2
        norm = model.get_layer("norm")
        mean = np.mean([features[k].mean(axis=(0, 1)) for k in range(2)], axis=0)
        variance = np.mean([features[k].var(axis=(0, 1)) for k in range(2)], axis=0)
        np.testing.assert_allclose(np.asarray(norm.moving_mean), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(norm.moving_variance), variance, rtol=1e-4)
        assert model.get_layer("drop").rate == 0.5
    # The training step still drops: some image's features are zeroed or doubled.
    trained = np.asarray(model.get_layer("drop")(features, training=True))
    assert not np.allclose(trained, features)


def test_frozen_batch_norm_is_left_alone():
    model = models.retinanet_model(1, weights=None, freeze_batch_norm=True, **SMALL)
    first = batch_norms(model)[0]
    before = np.asarray(first.moving_mean).copy()
    batches = [np.full((1, 64, 64, 3), 100.0, "float32")]
    assert update_batch_norm_statistics(model, iter(batches)) == 0
    np.testing.assert_array_equal(np.asarray(first.moving_mean), before)


@pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())
def test_precise_batch_norm_callback_uses_the_epochs_training_batches(from_scratch):
    generator = PascalVocGenerator(
        DATA / "voc2007_sample", "test", batch_size=2, image_min_side=64, image_max_side=96,
        seed=3, transform=random_transform(),
    )  # fmt: skip
    first = trained_batch_norms(from_scratch)[0]
    epoch = 2
    expected = [
        batch_statistics(from_scratch, [first], generator.epoch_batch(epoch, index)[0])[0][0]
        for index in range(3)
    ]
    callback = PreciseBatchNorm(generator, batches=3)
    callback.set_model(from_scratch)
    callback.on_epoch_end(epoch)
    assert callback.last_count == 3
    np.testing.assert_allclose(first.moving_mean, np.mean(expected, axis=0), rtol=1e-3, atol=1e-3)
    # The next epoch: its own batches, through the same compiled forward pass.
    forward = callback._forward
    expected = [
        batch_statistics(from_scratch, [first], generator.epoch_batch(epoch + 1, index)[0])[0][0]
        for index in range(3)
    ]
    callback.on_epoch_end(epoch + 1)
    assert callback._forward is forward
    np.testing.assert_allclose(first.moving_mean, np.mean(expected, axis=0), rtol=1e-3, atol=1e-3)
