"""The one registry of presets: its views, its agreement with keras.applications' own table,
and from_preset."""

from __future__ import annotations

import keras
import pytest

from keras_retinanet import models
from keras_retinanet.convert import PRETRAINED
from keras_retinanet.model.backbones import BACKBONES
from keras_retinanet.model.presets import BACKBONE_FAMILIES, PRESETS, get_preset, presets_of
from keras_retinanet.model.variants import VARIANTS


def test_the_backbone_and_detector_tables_are_views_of_the_registry():
    assert set(BACKBONES) == set(presets_of("backbone"))
    assert {"resnet50", "resnet101", "resnet152", "mobilenet_v3_large_lite"} <= set(BACKBONES)
    assert PRETRAINED == presets_of("detector")
    assert set(PRESETS) == set(BACKBONES) | set(PRETRAINED)
    for preset in PRESETS.values():
        assert preset.variant in VARIANTS and preset.backbone in BACKBONE_FAMILIES, preset.name
    # fizyr labels the 80 COCO classes 0..79; torchvision has 91 outputs (ids, with N/A).
    assert len(PRESETS["fizyr_resnet50_coco"].classes) == 80
    assert len(PRESETS["torchvision_v2_coco"].classes) == 91
    assert PRESETS["torchvision_v2_coco"].classes[1] == "person"


def test_imagenet_weights_are_the_files_keras_applications_fetches():
    from keras.src.applications import resnet  # Keras' own table of URLs and hashes

    for name, preset in presets_of("backbone").items():
        if name not in resnet.WEIGHTS_HASHES:  # the others: tests/test_backbones.py
            continue
        url = f"{resnet.BASE_WEIGHTS_PATH}{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        assert preset.weights.url == url
        assert preset.weights.file_hash == resnet.WEIGHTS_HASHES[name][1]  # the notop file


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        get_preset("resnet18")
    message = str(error.value)
    assert "backbones: convnext_small, " in message and ", resnet50, " in message
    assert "detectors: fizyr_resnet50_coco, torchvision_v1_coco" in message


def test_from_preset_builds_a_detector_on_a_backbone_preset():
    keras.utils.set_random_seed(0)
    small = dict(
        pyramid_feature_size=16, classification_feature_size=16, regression_feature_size=16
    )
    model = models.from_preset("resnet50", num_classes=3, load_weights=False, **small)
    assert [tuple(o.shape) for o in model.outputs] == [(None, None, 4), (None, None, 3)]
    with pytest.raises(ValueError, match="pass num_classes"):
        models.from_preset("resnet50")
