"""fizyr keras-retinanet snapshots (``.h5``, ResNet50/101/152 with keras-resnet) -> a snapshot
of this package (variant ``fizyr``).

Reads the weights with h5py only (no fizyr code, no Keras 2): a training or an inference
snapshot, written by Keras 2 (weights named ``kernel:0``) or by Keras 3 (``kernel``). The FPN
and head layers have the same names here; the backbone's keras-resnet names map to
:mod:`keras_retinanet.model.resnet`'s (``res3b_branch2a`` -> ``layer2_1_conv1``, ``bn3b_branch2a``
-> ``layer2_1_bn1``; ResNet101/152 number blocks ``b1``, ``b2``...).
"""

from __future__ import annotations

import json
import os
import re
import time

import h5py
import numpy as np

from keras_retinanet.convert.common import (
    COCO_CLASSES,
    ConversionError,
    class_names,
    set_layer,
    snapshot_metadata,
)
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.resnet import DEPTHS
from keras_retinanet.model.variants import VARIANTS

_BACKBONE_LAYER = re.compile(r"^(res|bn)(\d)([a-z]|b\d+)_branch(2a|2b|2c|1)$")
_PART = {"2a": "1", "2b": "2", "2c": "3"}
# Keras' BatchNormalization weight order.
_BN_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")


def read_h5_weights(path: str) -> dict[str, dict[str, np.ndarray]]:
    """``{layer name: {weight name: array}}`` of a Keras ``.h5`` model or weights file, with
    Keras 2's ``:0`` suffix removed; nested submodels' layers are listed by their own names."""
    weights: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                parts = name.split("/")
                if len(parts) >= 2:
                    weight = parts[-1].split(":")[0]
                    weights.setdefault(parts[-2], {})[weight] = np.asarray(obj)

        root.visititems(visit)
    return weights


def keras_resnet_version(path: str) -> str | None:
    """Which keras-resnet built the snapshot, from the model config a full save stores:
    ``"0.1"`` (a ``padding_conv1`` layer before ``conv1``) or ``"0.2"`` (``conv1`` pads
    ``"same"``); None for a weights-only file."""
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
    if config is None:
        return None
    text = config.decode("utf-8") if isinstance(config, bytes) else str(config)
    layers = json.loads(text).get("config", {}).get("layers", [])
    conv1 = next(
        (layer["config"] for layer in layers if layer["config"].get("name") == "conv1"), {}
    )
    return "0.2" if conv1.get("padding") == "same" else "0.1"


def _block_index(code: str) -> int:
    return int(code[1:]) if len(code) > 1 else ord(code) - ord("a")


def convert_fizyr(
    path: str | os.PathLike,
    output: str | os.PathLike,
    classes: str | list[str] | None = None,
    keras_resnet: str | None = None,
) -> dict:
    """Convert a fizyr keras-retinanet ResNet snapshot into a snapshot of this package.

    Args:
        path: fizyr's ``.h5`` (training or inference snapshot, e.g. the published
            ``resnet50_coco_best_v2.1.0.h5``).
        output: the snapshot to write (``.keras`` or ``.h5``).
        classes: class names (a list or a file, one per line or fizyr's ``name,id`` CSV);
            default: COCO's 80 when the model has 80 classes, else ``class_0..``.
        keras_resnet: the keras-resnet version that built it, ``"0.1"`` (variant ``fizyr``;
            the published COCO file) or ``"0.2"`` (``fizyr_keras_resnet_0_2``, what fizyr
            1.0.0 installs: its stem convolution pads differently); None: read from the
            file's model config (0.1 for a weights-only file, which has none).

    Returns:
        the snapshot's metadata, with ``"seconds"`` the conversion took.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConversionError: not a fizyr ResNet RetinaNet snapshot.
    """
    start = time.perf_counter()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"fizyr snapshot not found: {path}")
    try:
        source = read_h5_weights(path)
    except OSError as e:
        raise ConversionError(f"{path}: not an HDF5 (.h5) Keras file: {e}") from e
    head = source.get("pyramid_classification", {})
    if "bias" not in head or "conv1" not in source:
        raise ConversionError(
            f"{path}: no pyramid_classification or conv1 layer: not a fizyr ResNet RetinaNet "
            "snapshot (other backbones, VGG/MobileNet/DenseNet, are not supported)"
        )
    num_anchors = 9
    num_classes = head["bias"].shape[0] // num_anchors
    stage4 = {m[3] for m in map(_BACKBONE_LAYER.match, source) if m and m[2] == "4"}
    backbone = next((k for k, v in DEPTHS.items() if v[2] == len(stage4)), None)
    if backbone is None:
        raise ConversionError(f"{path}: {len(stage4)} blocks in stage 4 is not a ResNet50/101/152")
    version = keras_resnet or keras_resnet_version(path) or "0.1"
    if version not in ("0.1", "0.2"):
        raise ConversionError(f"keras-resnet version must be 0.1 or 0.2, got {version!r}")
    variant = VARIANTS["fizyr" if version == "0.1" else "fizyr_keras_resnet_0_2"]
    names = class_names(classes, num_classes, COCO_CLASSES)
    model = models.retinanet_model(num_classes, backbone=backbone, weights=None, variant=variant)

    for name, values in source.items():
        match = _BACKBONE_LAYER.match(name)
        if match:
            kind, stage, block, part = match.groups()
            prefix = f"layer{int(stage) - 1}_{_block_index(block)}"
            suffix = (
                "downsample_" + ("conv" if kind == "res" else "bn")
                if part == "1"
                else (("conv" if kind == "res" else "bn") + _PART[part])
            )
            target = f"{prefix}_{suffix}"
        elif name == "bn_conv1":
            target = "bn1"
        else:
            target = name
        if "gamma" in values:
            ordered = [values[k] for k in _BN_ORDER]
        else:
            ordered = [values[k] for k in ("kernel", "bias") if k in values]
        set_layer(model, target, ordered)

    source_record = {"from": "fizyr", "file": path, "keras_resnet": version}
    metadata = snapshot_metadata(names, variant, backbone, source_record)
    models.save_model(model, os.fspath(output), metadata=metadata)
    return {**metadata, "seconds": time.perf_counter() - start}
