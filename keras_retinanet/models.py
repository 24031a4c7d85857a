"""The model API users import: build, wrap, load and save RetinaNets, and the presets.

``from keras_retinanet import models`` then ``models.retinanet_model``, ``models.retinanet_box``,
``models.load_model``, ``models.from_preset``... The code lives in :mod:`keras_retinanet.model`
(and the download of published detectors in :mod:`keras_retinanet.convert`); this module names
it, and nothing in the package imports this module.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_retinanet.convert.pretrained import download_pretrained
from keras_retinanet.model.presets import PRESETS, Preset, get_preset  # noqa: F401
from keras_retinanet.model.pyramid import (  # noqa: F401
    classification_subnet,
    feature_pyramid,
    regression_subnet,
)
from keras_retinanet.model.retinanet import (  # noqa: F401
    is_inference_model,
    load_model,
    retinanet_box,
    retinanet_model,
)
from keras_retinanet.model.saving import (  # noqa: F401
    METADATA_KEY,
    read_metadata,
    save_model,
    write_metadata,
)
from keras_retinanet.model.settings import DetectionSettings  # noqa: F401
from keras_retinanet.model.variants import ModelVariant, get_variant  # noqa: F401


def from_preset(
    name: str,
    num_classes: int | None = None,
    load_weights: bool = True,
    **kwargs: Any,
) -> keras.Model:
    """A model named in the preset registry (:data:`PRESETS`).

    Args:
        name: a preset: a detector (``"torchvision_v2_coco"``, ...) or a backbone
            (``"resnet50"``, ...).
        num_classes: for a backbone preset, the classes of the detector to build on it.
        load_weights: a detector: ignored (its weights are the point); a backbone: start from
            its ImageNet weights (downloaded by Keras), else from random weights.
        **kwargs: for a detector, :func:`keras_retinanet.convert.download_pretrained`'s
            (``cache_dir``, ``url`` of a mirror or a local ``file://`` copy, ...); for a
            backbone, :func:`retinanet_model`'s.

    Returns:
        A detector preset's inference model (downloaded and converted once, then cached), or a
        backbone preset's training model.

    Raises:
        ValueError: an unknown preset (the message lists them), or a backbone preset without
            ``num_classes``.
    """
    preset = get_preset(name)
    if preset.kind == "detector":
        return load_model(download_pretrained(name, **kwargs), convert=True)
    if num_classes is None:
        raise ValueError(
            f"{name} is a backbone preset: pass num_classes, the classes of the detector to build"
        )
    weights = "imagenet" if load_weights else None
    kwargs.setdefault("variant", preset.variant)
    return retinanet_model(num_classes, backbone=preset.backbone, weights=weights, **kwargs)
