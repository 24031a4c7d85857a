"""torchvision's ``retinanet_resnet50_fpn`` (v1) and ``retinanet_resnet50_fpn_v2`` state_dicts
-> a snapshot of this package (variants ``torchvision_v1`` / ``torchvision_v2``).

Reads the file with :mod:`keras_retinanet.convert.pth` (no PyTorch needed) and accepts both the
current key names and those before torchvision 0.13 (``fpn.inner_blocks.0.weight``,
``head.classification_head.conv.2.weight``), which torchvision itself still loads.
"""

from __future__ import annotations

import os
import re
import time

import numpy as np

from keras_retinanet.convert.common import (
    ConversionError,
    batch_norm_weights,
    class_names,
    coco_classes_by_id,
    conv_kernel,
    set_layer,
    snapshot_metadata,
)
from keras_retinanet.convert.pth import read_state_dict
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.variants import VARIANTS

# BatchNorm epsilon the source ran with: torchvision's COCO_V1 weights are used with
# FrozenBatchNorm2d at eps 0 (``overwrite_eps(model, 0.0)`` in retinanet_resnet50_fpn);
# v2 and models trained by users run nn.BatchNorm2d / FrozenBatchNorm2d at 1e-5.
DEFAULT_BN_EPSILON = {"v1": 0.0, "v2": 1e-5}
_ARCHES = ("v1", "v2")


def _modern_keys(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename pre-0.13 keys to the current ones (what torchvision's loaders do)."""
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"(fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$", r"\1.0.\2", key)
        match = re.match(r"(head\.\w+_head\.conv)\.(\d+)\.(weight|bias)$", key)
        if match:
            key = f"{match[1]}.{int(match[2]) // 2}.0.{match[3]}"
        renamed[key] = value
    return renamed


def _bn(state: dict, prefix: str, source_eps: float, target_eps: float) -> list[np.ndarray]:
    return batch_norm_weights(
        state[f"{prefix}.weight"],
        state[f"{prefix}.bias"],
        state[f"{prefix}.running_mean"],
        state[f"{prefix}.running_var"],
        source_eps,
        target_eps,
    )


def _conv(state: dict, prefix: str) -> list[np.ndarray]:
    weights = [conv_kernel(state[f"{prefix}.weight"])]
    if f"{prefix}.bias" in state:
        weights.append(state[f"{prefix}.bias"])
    return weights


def convert_torchvision(
    path: str | os.PathLike,
    output: str | os.PathLike,
    arch: str = "v1",
    classes: str | list[str] | None = None,
    bn_epsilon: float | None = None,
) -> dict:
    """Convert a torchvision RetinaNet ResNet50-FPN state_dict into a snapshot of this package.

    Args:
        path: the ``.pth`` file (``torch.save(model.state_dict())``, either file layout).
        output: the snapshot to write (``.keras`` or ``.h5``).
        arch: ``"v1"`` (``retinanet_resnet50_fpn``) or ``"v2"`` (``..._fpn_v2``).
        classes: class names (a list or a file); default: torchvision's 91 COCO labels when
            the model has 91 outputs, else ``class_0..``.
        bn_epsilon: the BatchNorm epsilon the source ran with; default
            :data:`DEFAULT_BN_EPSILON` (0 for v1, as torchvision runs its COCO_V1 weights).

    Returns:
        the snapshot's metadata, with ``"seconds"`` the conversion took.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConversionError: not a RetinaNet state_dict of that architecture.
    """
    start = time.perf_counter()
    if arch not in _ARCHES:
        raise ConversionError(f"--arch must be one of {_ARCHES}, got {arch!r}")
    path = os.fspath(path)
    state = _modern_keys(read_state_dict(path))
    logits = state.get("head.classification_head.cls_logits.weight")
    if logits is None or "backbone.body.conv1.weight" not in state:
        raise ConversionError(
            f"{path}: no head.classification_head.cls_logits.weight or backbone.body.conv1"
            ".weight: not a torchvision RetinaNet state_dict"
        )
    has_group_norm = "head.classification_head.conv.0.1.weight" in state
    if has_group_norm != (arch == "v2"):
        found = "v2 (GroupNorm heads)" if has_group_norm else "v1 (heads without GroupNorm)"
        raise ConversionError(f"{path} holds a {found} RetinaNet; pass --arch accordingly")
    variant = VARIANTS[f"torchvision_{arch}"]
    source_eps = DEFAULT_BN_EPSILON[arch] if bn_epsilon is None else float(bn_epsilon)
    num_anchors = 9
    num_classes = logits.shape[0] // num_anchors
    names = class_names(classes, num_classes, coco_classes_by_id())
    model = models.retinanet_model(num_classes, weights=None, variant=variant)

    body = "backbone.body"
    set_layer(model, "conv1", _conv(state, f"{body}.conv1"))
    set_layer(model, "bn1", _bn(state, f"{body}.bn1", source_eps, variant.bn_epsilon))
    block_key = re.compile(rf"{body}\.layer(\d)\.(\d+)\.")
    blocks = sorted({tuple(map(int, m.groups())) for m in map(block_key.match, state) if m})
    for stage, block in blocks:
        prefix, name = f"{body}.layer{stage}.{block}", f"layer{stage}_{block}"
        for i in (1, 2, 3):
            set_layer(model, f"{name}_conv{i}", _conv(state, f"{prefix}.conv{i}"))
            bn = _bn(state, f"{prefix}.bn{i}", source_eps, variant.bn_epsilon)
            set_layer(model, f"{name}_bn{i}", bn)
        if f"{prefix}.downsample.0.weight" in state:
            set_layer(model, f"{name}_downsample_conv", _conv(state, f"{prefix}.downsample.0"))
            bn = _bn(state, f"{prefix}.downsample.1", source_eps, variant.bn_epsilon)
            set_layer(model, f"{name}_downsample_bn", bn)
    for level in (3, 4, 5):
        i = level - 3
        set_layer(model, f"C{level}_reduced", _conv(state, f"backbone.fpn.inner_blocks.{i}.0"))
        set_layer(model, f"P{level}", _conv(state, f"backbone.fpn.layer_blocks.{i}.0"))
    set_layer(model, "P6", _conv(state, "backbone.fpn.extra_blocks.p6"))
    set_layer(model, "P7", _conv(state, "backbone.fpn.extra_blocks.p7"))
    for head, ours, last in (
        ("classification_head", "pyramid_classification", "cls_logits"),
        ("regression_head", "pyramid_regression", "bbox_reg"),
    ):
        for i in range(4):
            prefix = f"head.{head}.conv.{i}"
            set_layer(model, f"{ours}_{i}", _conv(state, f"{prefix}.0"))
            if has_group_norm:
                norm = [state[f"{prefix}.1.weight"], state[f"{prefix}.1.bias"]]
                set_layer(model, f"{ours}_{i}_norm", norm)
        set_layer(model, ours, _conv(state, f"head.{head}.{last}"))

    metadata = snapshot_metadata(
        names,
        variant,
        "resnet50",
        {"from": "torchvision", "file": path, "arch": arch, "bn_epsilon": source_eps},
    )
    models.save_model(model, os.fspath(output), metadata=metadata)
    return {**metadata, "seconds": time.perf_counter() - start}
