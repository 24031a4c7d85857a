"""Backbones beyond ResNet (issue #27): every family of the registry checked against
``keras.applications`` itself (its layers, its weights file, its input), the lite variant, and
BatchNormalization folding through depthwise convolutions.

The end-to-end run of a lite preset (train, evaluate, convert, export) is
``tests/test_backbones_end_to_end.py``.
"""

from __future__ import annotations

import re

import h5py
import keras
import numpy as np
import pytest

from keras_retinanet import models
from keras_retinanet.model import fold
from keras_retinanet.model.backbone_families import BACKBONE_FAMILIES
from keras_retinanet.model.backbones import BACKBONES, backbone_features, preset_variant
from keras_retinanet.model.presets import PRESETS
from keras_retinanet.model.variants import DEFAULT, LITE
from keras_retinanet.preprocessing.image import preprocess_image

FAMILIES = sorted(BACKBONE_FAMILIES)
TINY = dict(pyramid_feature_size=16, classification_feature_size=16, regression_feature_size=16)

# The keras.applications module whose preprocess_input each family's network was trained
# with, by its constructor's name (the first pattern that matches).
PREPROCESS_MODULES = (
    (r"ResNet\d+V2", "resnet_v2"), (r"ResNet", "resnet"), (r"MobileNetV2", "mobilenet_v2"),
    (r"MobileNetV3", "mobilenet_v3"), (r"EfficientNetV2", "efficientnet_v2"),
    (r"EfficientNet", "efficientnet"), (r"DenseNet", "densenet"), (r"VGG16", "vgg16"),
    (r"VGG19", "vgg19"), (r"ConvNeXt", "convnext"),
)  # fmt: skip


def preprocess_module(name: str):
    """keras.applications' module of family ``name`` (ResNet50V2 -> resnet_v2)."""
    constructor = BACKBONE_FAMILIES[name].constructor
    module = next(m for pattern, m in PREPROCESS_MODULES if re.match(pattern, constructor))
    return getattr(keras.applications, module)


def test_the_registry_names_every_family_twice_full_and_lite():
    assert set(BACKBONES) == set(FAMILIES) | {f"{name}_lite" for name in FAMILIES}
    for name in FAMILIES:
        assert PRESETS[name].variant == "retinanet" and PRESETS[f"{name}_lite"].variant == "lite"
        assert preset_variant(f"{name}_lite") == LITE and preset_variant(name) == DEFAULT
    asked = {"resnet50", "resnet101", "resnet152", "resnet50_v2", "mobilenet_v2",
             "mobilenet_v3_small", "mobilenet_v3_large", "densenet121", "densenet169",
             "densenet201", "vgg16", "vgg19", "convnext_tiny", "convnext_small",
             "efficientnet_v2_s"} | {f"efficientnet_b{i}" for i in range(8)} | {
             f"efficientnet_v2_b{i}" for i in range(4)}  # fmt: skip
    assert asked <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_is_keras_applications_own(name, monkeypatch):
    """C3..C5 at strides 8, 16, 32; the input is what the family's preprocess_input gives;
    the ImageNet file is the one keras.applications fetches (address and hash)."""
    family = BACKBONE_FAMILIES[name]
    inputs = keras.Input((96, 128, 3))
    taps = backbone_features(inputs, name, weights=None)
    assert [tuple(c.shape[1:3]) for c in taps] == [(12, 16), (6, 8), (3, 4)]
    # Each tap is the last layer at its stride: C5 is the network's output, and C3/C4 have at
    # least as many channels as the stage before them would give a 1x1 lateral.
    assert taps[2].shape[-1] >= taps[1].shape[-1] >= 64

    # The input: our layer maps the package's caffe-style image to exactly what keras.
    # applications' preprocess_input of the family makes of the RGB image.
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (1, 8, 8, 3)).astype("float32")
    network = keras.Model(inputs, taps[2])
    first = next(
        (layer for layer in network.layers if layer.name == "normalize_input"), None
    )  # absent for caffe input: the network takes the package's input as it is
    ours = preprocess_image(bgr[0])[None]
    if first is not None:
        ours = np.asarray(first(ours))
    expected = preprocess_module(name).preprocess_input(bgr[..., ::-1].copy())
    np.testing.assert_allclose(ours, np.asarray(expected), rtol=1e-5, atol=1e-4)

    # The weights file: intercept keras.applications' download and compare.
    from keras.src.utils import file_utils

    class Fetched(Exception):
        pass

    asked = {}

    def fake_get_file(fname=None, origin=None, *args, **kwargs):
        asked.update(fname=fname, origin=origin, **kwargs)
        raise Fetched

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    constructor = getattr(keras.applications, family.constructor)
    with pytest.raises(Fetched):
        constructor(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    assert asked["origin"] == family.url and asked["fname"] == family.url.rsplit("/", 1)[-1]
    assert asked.get("file_hash") == family.file_hash and asked["cache_subdir"] == "models"


# One family per input convention (and MobileNetV3's unnamed taps, EfficientNet's
# Normalization layer with weights, ConvNeXt's grouped convolutions run as depthwise ones): our
# backbone, loaded from a keras.applications weights
# file through the imagenet download path, computes keras.applications' network on its own
# preprocess_input, with BatchNormalization statistics that make every fold count.
@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2", "densenet121", "mobilenet_v3_small",
                                  "efficientnet_b0", "convnext_tiny"])  # fmt: skip
def test_imagenet_weights_load_and_compute_what_keras_applications_does(
    name, tmp_path, monkeypatch
):
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    family = BACKBONE_FAMILIES[name]
    keras.utils.set_random_seed(0)
    reference = getattr(keras.applications, family.constructor)(
        include_top=False, weights=None, input_shape=(64, 96, 3)
    )
    rng = np.random.default_rng(1)
    for layer in reference.layers:  # non-trivial statistics and biases everywhere
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    path = tmp_path / family.url.rsplit("/", 1)[-1]
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    fetched = []

    def fake_get_file(fname=None, origin=None, *args, **kwargs):
        fetched.append(fname)
        return str(path)

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    inputs = keras.Input((None, None, 3))
    c5 = backbone_features(inputs, name, weights="imagenet", freeze_batch_norm=True)[2]
    assert fetched == [path.name, path.name]  # ours (with the registry's hash), then Keras'
    ours = keras.Model(inputs, c5)

    bgr = rng.integers(0, 256, (2, 64, 96, 3)).astype("float32")
    expected = np.asarray(
        reference(preprocess_module(name).preprocess_input(bgr[..., ::-1].copy()), training=False)
    )
    actual = np.asarray(ours(np.stack([preprocess_image(b) for b in bgr]), training=False))
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-4 * scale)
    # Folded for inference (depthwise convolutions included), the same function.
    folded = fold.fold_batch_norm(ours)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in fold._walk(folded)) or name == "densenet121"  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(folded(np.stack([preprocess_image(b) for b in bgr]))), expected,
        rtol=0, atol=2e-4 * scale,
    )  # fmt: skip


def test_the_lite_variant_is_thin_separable_and_rebuilt_from_its_snapshot(tmp_path):
    keras.utils.set_random_seed(0)
    lite = models.retinanet_model(3, backbone="mobilenet_v3_small_lite", weights=None)
    full = models.retinanet_model(3, backbone="mobilenet_v3_small", weights=None)
    assert lite.variant == LITE and full.variant == DEFAULT
    head = lite.get_layer("classification_submodel")
    hidden = [layer for layer in head.layers if layer.name.startswith("pyramid_classification_")
              and isinstance(layer, keras.layers.SeparableConv2D)]  # fmt: skip
    assert len(hidden) == LITE.head_depth == 3
    assert all(layer.filters == LITE.head_channels == 64 for layer in hidden)
    assert isinstance(lite.get_layer("P3"), keras.layers.SeparableConv2D)
    assert lite.get_layer("P3").filters == 64
    assert isinstance(full.get_layer("P3"), keras.layers.Conv2D)
    assert lite.count_params() < 0.5 * full.count_params()
    # Its outputs are those of a RetinaNet: one row per anchor, the same anchors as the full one.
    image = np.zeros((1, 64, 96, 3), "float32")
    for model in (lite, full):
        regression, classification = model.predict_on_batch(image)
        assert regression.shape == (1, 9 * (8 * 12 + 4 * 6 + 2 * 3 + 1 * 2 + 1 * 1), 4)
        assert classification.shape[-1] == 3
    # The snapshot stores the variant; loading and converting give the same detections.
    path = str(tmp_path / "lite.keras")
    models.save_model(lite, path, metadata={"backbone": "mobilenet_v3_small_lite",
                                            "variant": LITE.to_dict()})  # fmt: skip
    assert models.read_metadata(path)["variant"]["conv"] == "separable"
    loaded = models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict_on_batch(image + 1)[1], lite.predict_on_batch(image + 1)[1], atol=1e-6
    )
    inference = models.load_model(path, convert=True)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in fold._walk(inference))  # fmt: skip


def test_a_fizyr_or_torchvision_variant_refuses_another_backbone():
    with pytest.raises(ValueError, match="builds its own ResNet"):
        models.retinanet_model(2, backbone="mobilenet_v2", weights=None, variant="fizyr")


@pytest.mark.parametrize("name", ["mobilenet_v3_large_lite", "efficientnet_b0_lite", "vgg16"])
def test_a_preset_trains_a_step(name):
    from keras_retinanet.model.anchors import anchors_for_shape
    from keras_retinanet.model.targets import anchor_targets_bbox
    from keras_retinanet.training.build import compile_model

    keras.utils.set_random_seed(0)
    model = compile_model(models.retinanet_model(2, backbone=name, weights=None, **TINY), 1e-3)
    images = np.random.default_rng(0).uniform(-100, 100, (2, 64, 64, 3)).astype("float32")
    annotations = [{"bboxes": np.array([[8.0, 8.0, 40.0, 44.0]]), "labels": np.array([1])}] * 2
    regression, classification = anchor_targets_bbox(
        anchors_for_shape((64, 64, 3)), [(64, 64, 3)] * 2, annotations, 2
    )
    targets = {"regression": regression, "classification": classification}
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    first = model.train_on_batch(images, targets, return_dict=True)["loss"]
    for _ in range(3):
        last = model.train_on_batch(images, targets, return_dict=True)["loss"]
    assert np.isfinite(first) and last < first
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    changed = [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]
    assert all(changed[:3]) and all(changed[-3:])  # the backbone's first layers and the heads
