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
from keras_retinanet.model.backbones import (
    BACKBONES,
    backbone_features,
    preset_variant,
    tap_output,
)
from keras_retinanet.model.layers import ChannelAffine
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
# Normalization layer with weights and its extra ImageNet scaling, ConvNeXt's grouped
# convolutions run as depthwise ones and its taps after a block's residual add): our backbone,
# loaded from a keras.applications weights file through the imagenet download path or as a
# file path, computes at every tap what keras.applications' own network computes with
# weights="imagenet" on its preprocess_input, with statistics that make every fold count.
@pytest.mark.parametrize("route", ["imagenet", "path"])
@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2", "densenet121", "mobilenet_v3_small",
                                  "efficientnet_b0", "convnext_tiny"])  # fmt: skip
def test_imagenet_weights_load_and_compute_what_keras_applications_does(
    name, route, tmp_path, monkeypatch
):
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    family = BACKBONE_FAMILIES[name]
    constructor = getattr(keras.applications, family.constructor)
    keras.utils.set_random_seed(0)
    source = constructor(include_top=False, weights=None, input_shape=(64, 96, 3))
    rng = np.random.default_rng(1)
    for layer in source.layers:  # non-trivial statistics and biases everywhere
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
        if isinstance(layer, keras.layers.Normalization) and layer.weights:  # EfficientNet's
            layer.set_weights([np.array([0.485, 0.456, 0.406]),
                               np.array([0.229, 0.224, 0.225]) ** 2, np.array(1)])  # fmt: skip
    path = tmp_path / family.url.rsplit("/", 1)[-1]
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    fetched = []

    def fake_get_file(fname=None, origin=None, *args, **kwargs):
        fetched.append(fname)
        return str(path)

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    # The real thing: keras.applications' own network with its ImageNet weights (our file).
    reference = constructor(include_top=False, weights="imagenet", input_shape=(64, 96, 3))
    assert fetched == [path.name]
    reference_taps = keras.Model(
        reference.input, [tap_output(reference, tap) for tap in family.taps]
    )
    # Its first convolution sees the input before any depth can wash an input error out.
    stem = next(x for x in reference.layers if isinstance(x, keras.layers.Conv2D)).name
    reference_stem = keras.Model(reference.input, reference.get_layer(stem).output)
    inputs = keras.Input((None, None, 3))
    weights = "imagenet" if route == "imagenet" else str(path)
    taps = backbone_features(inputs, name, weights=weights, freeze_batch_norm=True)
    assert fetched == [path.name] * (2 if route == "imagenet" else 1)  # with the registry's hash
    ours = keras.Model(inputs, list(taps))

    bgr = rng.integers(0, 256, (2, 64, 96, 3)).astype("float32")
    rgb = preprocess_module(name).preprocess_input(bgr[..., ::-1].copy())
    expected = [np.asarray(t) for t in reference_taps(rgb, training=False)]
    caffe = np.stack([preprocess_image(b) for b in bgr])
    expected_stem = np.asarray(reference_stem(rgb))
    stem_scale = np.abs(expected_stem).max()
    np.testing.assert_allclose(
        np.asarray(keras.Model(inputs, ours.get_layer(stem).output)(caffe)), expected_stem,
        rtol=0, atol=1e-4 * stem_scale,
    )  # fmt: skip
    # That comparison sees an input off by a factor (halving it moves the values).
    halved = np.asarray(reference_stem(rgb * 0.5))
    assert np.abs(halved - expected_stem).max() > 0.1 * stem_scale
    folded = fold.fold_batch_norm(ours)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in fold._walk(folded)) or name == "densenet121"  # fmt: skip
    for model in (ours, folded):  # folded for inference (depthwise convolutions too): the same
        actual = [np.asarray(t) for t in model(caffe, training=False)]
        for level, (a, e) in enumerate(zip(actual, expected, strict=True)):
            scale = np.abs(e).max()
            assert scale > 1e-3
            np.testing.assert_allclose(a, e, rtol=0, atol=2e-4 * scale, err_msg=f"C{level + 3}")


def test_convnext_taps_a_stage_after_its_last_residual_add():
    """C3 and C4 are what the next stage's downsampling takes (the block's output after its
    residual add), not the residual branch alone."""
    family = BACKBONE_FAMILIES["convnext_tiny"]
    model = keras.applications.ConvNeXtTiny(
        include_top=False, weights=None, input_shape=(64, 64, 3)
    )
    for tap, block in zip(family.taps[:2], ("1", "2"), strict=True):
        assert (
            tap_output(model, tap)
            is model.get_layer(f"convnext_tiny_downsampling_block_{block}").input
        )


def test_a_fine_tune_keeps_the_input_statistics_loaded_with_imagenet_weights(tmp_path):
    """EfficientNet's input statistics come with its weights file; a model rebuilt without
    weights and given the trained one's weights layer by layer (as a fine-tune does) computes
    the same, because the statistics are weights of the layer that replaced Normalization."""
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                               input_shape=(64, 64, 3))  # fmt: skip
    normalization = next(x for x in source.layers if isinstance(x, keras.layers.Normalization))
    normalization.set_weights([np.array([0.4, 0.5, 0.6]), np.array([0.05, 0.06, 0.07]),
                               np.array(1)])  # fmt: skip
    path = tmp_path / "efficientnetb0_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    trained = models.retinanet_model(2, backbone="efficientnet_b0_lite", weights=str(path))
    fresh = models.retinanet_model(2, backbone="efficientnet_b0_lite", weights=None)
    affine = trained.get_layer("input_statistics")  # keras.applications leaves it unnamed
    assert isinstance(affine, ChannelAffine)
    std = np.sqrt([0.05, 0.06, 0.07])
    factor = 1 / np.sqrt([0.229, 0.224, 0.225])  # keras.applications' ImageNet-only scaling
    np.testing.assert_allclose(keras.ops.convert_to_numpy(affine.scale), factor / std, rtol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(affine.offset), -np.array([0.4, 0.5, 0.6]) * factor / std,
        rtol=1e-6,
    )  # fmt: skip
    for layer in fresh.layers:
        if layer.weights:
            layer.set_weights(trained.get_layer(layer.name).get_weights())
    image = np.random.default_rng(0).uniform(-100, 100, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        fresh.predict_on_batch(image)[1], trained.predict_on_batch(image)[1], atol=1e-6
    )
    # The statistics survive a save and load too.
    saved = str(tmp_path / "model.keras")
    models.save_model(trained, saved, metadata={"backbone": "efficientnet_b0_lite",
                                                "variant": LITE.to_dict()})  # fmt: skip
    loaded = models.load_model(saved).get_layer("input_statistics")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.scale), factor / std, rtol=1e-6)


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


@pytest.mark.parametrize("subnet", ["classification_subnet", "regression_subnet"])
def test_the_lite_heads_keep_their_input_scale_at_initialisation(subnet):
    """Each separable layer of a lite head starts variance-preserving (depthwise N(0, 1/9),
    pointwise He): after its three layers a unit-variance input keeps an RMS near 1, where
    Keras' default depthwise initialisation would shrink it about 200-fold."""
    from keras_retinanet.model import pyramid

    keras.utils.set_random_seed(0)
    head = getattr(pyramid, subnet)(3, 9, pyramid_feature_size=64, feature_size=64,
                                    variant=LITE)  # fmt: skip
    prefix = "pyramid_classification" if subnet == "classification_subnet" else "pyramid_regression"
    last_hidden = head.get_layer(f"{prefix}_{LITE.head_depth - 1}")
    trunk = keras.Model(head.input, last_hidden.output)
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 64)).astype("float32")
    rms = float(np.sqrt(np.mean(np.asarray(trunk(x)) ** 2)))
    assert 0.3 < rms < 3.0, rms


def test_a_fizyr_or_torchvision_variant_refuses_another_backbone():
    with pytest.raises(ValueError, match="builds its own ResNet"):
        models.retinanet_model(2, backbone="mobilenet_v2", weights=None, variant="fizyr")


def compiled_preset(name: str) -> keras.Model:
    """A 2-class training model of preset ``name`` with tiny heads, compiled, seeded."""
    from keras_retinanet.training.build import compile_model

    keras.utils.set_random_seed(0)
    return compile_model(models.retinanet_model(2, backbone=name, weights=None, **TINY), 1e-3)


def train_steps(model: keras.Model, steps: int) -> tuple[list, list]:
    """``steps`` training steps on two 64x64 images with one box each; returns the losses and,
    per trainable weight, whether it changed."""
    from keras_retinanet.model.anchors import anchors_for_shape
    from keras_retinanet.model.targets import anchor_targets_bbox

    images = np.random.default_rng(0).uniform(-100, 100, (2, 64, 64, 3)).astype("float32")
    annotations = [{"bboxes": np.array([[8.0, 8.0, 40.0, 44.0]]), "labels": np.array([1])}] * 2
    regression, classification = anchor_targets_bbox(
        anchors_for_shape((64, 64, 3)), [(64, 64, 3)] * 2, annotations, 2
    )
    targets = {"regression": regression, "classification": classification}
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    losses = [model.train_on_batch(images, targets, return_dict=True)["loss"]
              for _ in range(steps)]  # fmt: skip
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    return losses, [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


@pytest.mark.parametrize("name", ["mobilenet_v3_large_lite", "efficientnet_b0_lite", "vgg16"])
def test_a_preset_trains_a_step(name):
    losses, changed = train_steps(compiled_preset(name), 4)
    assert np.isfinite(losses[0]) and losses[-1] < losses[0]
    assert all(changed[:3]) and all(changed[-3:])  # the backbone's first layers and the heads


# Every preset on the running backend, ``-m slow`` (30 s to 4 min each on a 2-core CPU):
# ``bash scripts/run_slow_presets.sh jax|tensorflow [PRESET ...]``. The
# exports, which need TensorFlow, are tests/test_backbones_end_to_end.py's.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_preset_trains_saves_loads_and_folds(name, tmp_path):
    from heads import rounding_change, spread_out_heads

    from keras_retinanet.training.batch_norm import update_batch_norm_statistics

    model = compiled_preset(name)
    image = np.random.default_rng(1).uniform(-100, 100, (1, 96, 96, 3)).astype("float32")

    # Folding, checked before training (one Adam step from random weights already moved
    # efficientnet_b4_lite's folded outputs by 1.7e-3): statistics of this image (a deep
    # random backbone's initial ones leave P5 near zero) and heads that detect on it. Each
    # output agrees relative to its largest value within 1e-3 or, for a network that
    # amplifies rounding more, 4x what relative noise of 1e-7 (one unit in the last place)
    # on its input changes, and never more than 0.2 of the range. (Random deep networks
    # amplify rounding that much: 1e-7 of noise gives efficientnet_b7_lite's outputs 8.5e-3,
    # its fold 1.3e-2; resnet152's 1.9e-2.) A random resnet101_lite's fold moved
    # its outputs by 4e-3 on JAX, as that noise does (5e-3); in float64 a folded convolution
    # is exact to 4e-16 (test_fold) while Keras' own batch normalisation was 5e-8 off on JAX:
    # rounding, not the fold. The trained files' detections are the end-to-end test's.
    update_batch_norm_statistics(model, [image])
    spread_out_heads(model, image)
    folded = fold.fold_batch_norm(model)
    assert fold.batch_norm_pairs(folded) == {}
    tolerances = [max(1e-3, 4 * change) for change in rounding_change(model, image)]
    outputs = zip(folded.predict_on_batch(image), model.predict_on_batch(image), tolerances,
                  strict=True)  # fmt: skip
    for ours, theirs, tolerance in outputs:
        difference = np.abs(ours - theirs).max() / np.abs(theirs).max()
        print(f"{name}: folded vs not {difference:.2g} (tolerance {tolerance:.2g})")
        assert difference <= tolerance <= 0.2

    losses, changed = train_steps(model, 1)
    assert np.isfinite(losses[0])
    assert all(changed[:2]) and all(changed[-2:])  # the backbone's first layers and the heads

    metadata = {"backbone": name, "variant": preset_variant(name).to_dict()}
    path = models.save_model(model, str(tmp_path / f"{name}.keras"), metadata=metadata)
    loaded = models.load_model(path)
    for ours, theirs in zip(loaded.predict_on_batch(image), model.predict_on_batch(image),
                            strict=True):  # fmt: skip
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    converted = models.load_model(path, convert=True, score_threshold=0.05)
    assert fold.batch_norm_pairs(converted) == {}
    boxes, scores, labels = (np.asarray(t) for t in converted.predict_on_batch(image))
    assert np.isfinite(boxes).all() and (labels >= 0).sum() >= 1
