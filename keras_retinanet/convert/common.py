"""What the converters share: copying weights into named layers, and the snapshot they write."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.presets import (  # noqa: F401  (re-exported)
    COCO_CLASSES,
    COCO_UNUSED_IDS,
    coco_classes_by_id,
)
from keras_retinanet.model.variants import ModelVariant


class ConversionError(ValueError):
    """A source file that cannot be converted; the message names the file and what is wrong."""


def set_layer(model: keras.Model, name: str, weights: Sequence[np.ndarray]) -> None:
    """Set the weights of the layer ``name`` (searched in nested submodels too), checking
    every shape so a mismatch names the layer rather than failing deep inside Keras."""
    layer = find_layer(model, name)
    expected = [tuple(w.shape) for w in layer.weights]
    given = [tuple(np.shape(w)) for w in weights]
    if expected != given:
        raise ConversionError(f"layer {name}: the source gives shapes {given}, expected {expected}")
    layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called ``name`` in ``model`` or in one of its submodels."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            try:
                return find_layer(layer, name)
            except KeyError:
                continue
    raise KeyError(name)


def batch_norm_weights(
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    source_epsilon: float,
    target_epsilon: float,
) -> list[np.ndarray]:
    """Keras BatchNormalization weights that compute the source's normalisation exactly:
    the epsilon difference moves into the variance (``var + eps_src == var' + eps_ours``).

    Raises:
        ConversionError: a variance too small to absorb the difference.
    """
    adjusted = np.asarray(variance, np.float64) + source_epsilon - target_epsilon
    if np.any(adjusted < 0):
        raise ConversionError(
            f"a BatchNorm variance of {float(np.min(variance)):.3g} cannot absorb epsilon "
            f"{source_epsilon} -> {target_epsilon}"
        )
    return [gamma, beta, mean, adjusted.astype(np.float32)]


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch's ``(out, in, kh, kw)`` convolution weight as Keras' ``(kh, kw, in, out)``."""
    return np.transpose(np.asarray(weight), (2, 3, 1, 0))


def snapshot_metadata(
    classes: Sequence[str],
    variant: ModelVariant,
    backbone: str,
    source: dict[str, Any],
    image_min_side: int = 800,
    image_max_side: int = 1333,
) -> dict[str, Any]:
    """The metadata of a converted snapshot: what every snapshot of this package records,
    plus ``"variant"`` (so the file rebuilds its own model) and ``"source"``."""
    return {
        "format_version": 1,
        "model": "training",
        "epoch": 0,
        "classes": list(classes),
        "num_classes": len(classes),
        "backbone": backbone,
        "anchor_parameters": AnchorParameters().to_dict(),
        "image_min_side": int(image_min_side),
        "image_max_side": int(image_max_side),
        "dataset": None,
        "metric": None,
        "variant": variant.to_dict(),
        "source": {**source, "converted": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }


def class_names(classes: str | Sequence[str] | None, count: int, default: Sequence[str]) -> list:
    """Class names for a converted model with ``count`` outputs: from ``classes`` (a list, or
    a file with one name per line or fizyr's ``name,id`` CSV), else ``default`` when it has
    ``count`` names, else ``class_0..``.

    Raises:
        ConversionError: the names do not match the model's number of classes.
    """
    if classes is None:
        names = list(default) if len(default) == count else [f"class_{i}" for i in range(count)]
    elif isinstance(classes, (str, os.PathLike)):
        with open(classes, encoding="utf-8") as handle:
            names = [line.strip().split(",")[0] for line in handle if line.strip()]
    else:
        names = [str(c) for c in classes]
    if len(names) != count:
        raise ConversionError(
            f"the model has {count} classes but {len(names)} class names were given "
            f"({classes}); pass --classes with one name per class"
        )
    return names
