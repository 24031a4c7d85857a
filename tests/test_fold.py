"""Batch normalisation folding (keras_retinanet.model.fold): the same outputs without the BN layers.

Runs on every backend (the JAX job too): folding is Keras-level weight arithmetic.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from heads import spread_out_heads

from keras_retinanet import models
from keras_retinanet.model import fold

SMALL = dict(pyramid_feature_size=32, classification_feature_size=32, regression_feature_size=32)


def randomise_batch_norms(model: keras.Model, seed: int) -> int:
    """Give every BatchNormalization non-trivial statistics, as a trained model has (with the
    initial ones, mean 0 and variance 1, folding would only rescale by 1/sqrt(1 + eps))."""
    rng = np.random.default_rng(seed)
    count = 0
    for layer in fold._walk(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),
                    rng.normal(0, 0.2, c),
                    rng.normal(0, 0.2, c),
                    rng.uniform(0.3, 2.0, c),
                ]  # gamma, beta, moving mean, moving variance
            )
            count += 1
    return count


def count(model: keras.Model, kind: type) -> int:
    return sum(isinstance(layer, kind) for layer in fold._walk(model))


# One variant per backbone code path: keras.applications, resnet.py, GroupNorm heads
# (the other two differ from these in padding and stride only).
@pytest.mark.parametrize("variant", ["retinanet", "fizyr", "torchvision_v2"])
def test_folding_keeps_the_outputs_of_every_variant(variant):
    keras.utils.set_random_seed(0)
    model = models.retinanet_model(2, weights=None, variant=variant, **SMALL)
    assert randomise_batch_norms(model, seed=1) == 53  # 1 stem + 16 blocks x 3 + 4 shortcuts
    folded = fold.fold_batch_norm(model)
    assert count(folded, keras.layers.BatchNormalization) == 0
    assert count(folded, keras.layers.Identity) == 53
    assert count(model, keras.layers.BatchNormalization) == 53  # the original is untouched
    assert folded.get_layer("conv1_conv" if variant == "retinanet" else "conv1").use_bias
    image = np.random.default_rng(2).uniform(-2, 2, (1, 96, 128, 3)).astype("float32")
    # P3 (through the whole backbone and FPN) and both heads' outputs.
    taps = [keras.Model(m.inputs, [m.get_layer("P3").output, *m.outputs]) for m in (model, folded)]
    for expected, actual in zip(*(tap.predict_on_batch(image) for tap in taps)):
        expected, actual = np.asarray(expected), np.asarray(actual)
        scale = np.abs(expected).max()
        assert scale > 1e-5  # a real signal, not zeros compared with zeros
        np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5 * scale)
    # A model with nothing left to fold comes back as it is.
    assert fold.fold_batch_norm(folded) is folded


def test_only_a_plain_convolution_feeding_the_norm_alone_is_folded():
    inputs = keras.Input((8, 8, 3))
    conv_relu = keras.layers.Conv2D(4, 3, activation="relu", name="conv_relu")(inputs)
    a = keras.layers.BatchNormalization(name="bn_after_relu")(conv_relu)  # not linear: kept
    shared = keras.layers.Conv2D(4, 1, name="shared")(a)
    b = keras.layers.BatchNormalization(name="bn_of_shared")(shared)  # conv used twice: kept
    c = keras.layers.Add()([b, shared])
    plain = keras.layers.Conv2D(4, 1, use_bias=False, name="plain")(c)
    d = keras.layers.BatchNormalization(name="bn_folded")(plain)
    model = keras.Model(inputs, d)
    randomise_batch_norms(model, seed=3)
    pairs = fold.batch_norm_pairs(model)
    assert [conv.name for conv in pairs.values()] == ["plain"]
    folded = fold.fold_batch_norm(model)
    assert [layer.name for layer in folded.layers if isinstance(layer, keras.layers.Identity)] == [
        "bn_folded"
    ]
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(folded.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)), atol=1e-5
    )


def test_the_inference_model_is_folded_and_detects_the_same(tmp_path):
    keras.utils.set_random_seed(5)
    model = models.retinanet_model(2, weights=None, **SMALL)
    randomise_batch_norms(model, seed=6)
    image = np.random.default_rng(7).uniform(-100, 100, (1, 128, 160, 3)).astype("float32")
    spread_out_heads(model, image)
    plain = models.retinanet_box(model, fold_batch_norm=False, score_threshold=0.2)
    folded = models.retinanet_box(model, score_threshold=0.2)  # folding is the default
    assert count(plain, keras.layers.BatchNormalization) == 53
    assert count(folded, keras.layers.BatchNormalization) == 0
    expected = [np.asarray(t)[0] for t in plain.predict_on_batch(image)]
    assert 5 <= (expected[2] >= 0).sum() < 300  # real detections, fewer than the cap
    assert_same_detections(expected, [np.asarray(t)[0] for t in folded.predict_on_batch(image)])
    # An inference file written without folding is folded when loaded for inference.
    path = models.save_model(plain, str(tmp_path / "plain.keras"), {"model": "inference"})
    loaded = models.load_model(path, convert=True)
    assert count(loaded, keras.layers.BatchNormalization) == 0
    assert_same_detections(expected, [np.asarray(t)[0] for t in loaded.predict_on_batch(image)])
    assert count(models.load_model(path), keras.layers.BatchNormalization) == 53  # as saved
    # A folded model saves and loads like any other (retinanet-convert writes one).
    path = models.save_model(folded, str(tmp_path / "folded.keras"), {"model": "inference"})
    again = models.load_model(path)
    assert count(again, keras.layers.Identity) == 53
    assert_same_detections(expected, [np.asarray(t)[0] for t in again.predict_on_batch(image)])


def assert_same_detections(expected: list, actual: list) -> None:
    """Same count; each detection has a partner with its label, score and box (order may
    differ where two scores differ by less than the rounding)."""
    boxes, scores, labels = expected
    other_boxes, other_scores, other_labels = actual
    assert (other_labels >= 0).sum() == (labels >= 0).sum()
    for box, score, label in zip(boxes[labels >= 0], scores[labels >= 0], labels[labels >= 0]):
        match = (
            (other_labels == label)
            & (np.abs(other_scores - score) < 1e-4)
            & (np.abs(other_boxes - box).max(axis=1) < 1e-2)
        )
        assert match.any(), (box, score, label)


def test_a_folded_convolution_is_exact_in_float64():
    """The fold's arithmetic is exact: in float64 a folded convolution and a depthwise one
    compute ``gamma * (conv(x) - mean) / sqrt(variance + eps) + beta`` to 1e-12 of the result.
    (What a deep random network's fold changes in float32 is rounding amplified by the
    network: test_backbones' all-preset test.) On JAX, float64 needs JAX_ENABLE_X64."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX computes float64 as float32 unless JAX_ENABLE_X64=1")
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")  # and the policy, which another test may have set
    keras.config.set_dtype_policy("float64")
    try:
        rng = np.random.default_rng(0)
        inputs = keras.Input((12, 12, 3), dtype="float64")
        for conv in (keras.layers.Conv2D(5, 3, use_bias=True),
                     keras.layers.DepthwiseConv2D(3, depth_multiplier=2)):  # fmt: skip
            convolved = conv(inputs)
            model = keras.Model(inputs, keras.layers.BatchNormalization(epsilon=1e-3)(convolved))
            assert randomise_batch_norms(model, 1) == 1
            bn = model.layers[-1]
            folded = fold.fold_batch_norm(model)
            assert count(folded, keras.layers.BatchNormalization) == 0
            x = rng.normal(0, 10, (2, 12, 12, 3))
            raw = np.asarray(keras.Model(inputs, convolved).predict_on_batch(x))
            gamma, beta, mean, variance = (np.asarray(w, np.float64) for w in bn.get_weights())
            exact = gamma * (raw - mean) / np.sqrt(variance + bn.epsilon) + beta
            ours = np.asarray(folded.predict_on_batch(x))
            assert ours.dtype == np.float64
            assert np.abs(ours - exact).max() <= 1e-12 * np.abs(exact).max()
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])
