"""ResNet backbones from ``keras.applications``, tapped at C3, C4 and C5."""

from __future__ import annotations

import os
from typing import Any

import keras

from keras_retinanet.model.download import fetch_file
from keras_retinanet.model.presets import BACKBONE_FAMILIES, PRESETS, presets_of

# The backbones a detector can be built on, by name: the "backbone" presets' families
# (keras.applications constructor, C3/C4/C5 layers), a view of the one registry.
BACKBONES: dict[str, tuple[str, tuple[str, str, str]]] = {
    name: BACKBONE_FAMILIES[preset.backbone] for name, preset in presets_of("backbone").items()
}

# Momentum of the moving statistics of a BatchNormalization that trains (random start): PyTorch's
# default (its 0.1 is 1 - momentum), which torchvision's and detectron2's from-scratch ResNets
# use. Keras' 0.99 leaves 0.99^100 = 37% of the starting values (mean 0, variance 1) in them
# after 100 steps: a detector trained that long scored nothing with them in inference and 0.28
# mAP@0.5 with statistics re-estimated (benchmarks/bench_learning.py, raccoon, seed 1).
TRAINED_BATCH_NORM_MOMENTUM = 0.9


def validate_backbone(name: str) -> str:
    """Return the canonical backbone name or raise a ValueError listing the choices."""
    key = str(name).lower()
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return key


def resolve_weights(weights: str | None) -> str | None:
    """Normalise a ``weights`` argument: ``"imagenet"``, None (also ``"none"``) or a file path.

    Raises:
        FileNotFoundError: a path that does not exist, with the accepted values in the message.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    if weights == "imagenet":
        return weights
    path = os.path.expanduser(str(weights))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone weights file not found: {weights}. Pass 'imagenet' (downloads the "
            "keras.applications ImageNet weights), None for random initialisation, or the path "
            "of a local .h5 weights file such as resnet50_weights_tf_dim_ordering_tf_kernels_"
            "notop.h5."
        )
    return path


def backbone_features(
    inputs: Any,
    backbone: str = "resnet50",
    weights: str | None = "imagenet",
    freeze_backbone: bool = False,
    freeze_batch_norm: bool = True,
) -> tuple[Any, Any, Any]:
    """Build a ResNet on ``inputs`` and return its C3, C4, C5 feature maps.

    Args:
        inputs: ``(B, H, W, 3)`` symbolic input of caffe-preprocessed BGR images.
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.
        weights: ``"imagenet"``, None, or a path to a local ``.h5`` weights file of the same
            ResNet without its top (as ``keras.applications`` writes it).
        freeze_backbone: make every backbone layer non-trainable.
        freeze_batch_norm: keep BatchNormalization layers in inference mode with fixed
            statistics. Detection trains with 1-2 images per device, too few for batch
            statistics (detectron2 and fizyr freeze them too).

    Returns:
        ``(C3, C4, C5)`` with strides 8, 16, 32 and 512, 1024, 2048 channels.
    """
    name = validate_backbone(backbone)
    weights = resolve_weights(weights)
    constructor_name, taps = BACKBONES[name]
    constructor = getattr(keras.applications, constructor_name)
    if weights == "imagenet":
        # Fetched here, into the cache keras.applications reads, so that a failure says what,
        # why and the way around it; the constructor then finds the file.
        preset = PRESETS[name]
        fetch_file(
            f"{constructor_name} ImageNet weights",
            preset.weights.url,
            "pass its path as --weights PATH (Python: weights=PATH), or train from random "
            "weights with --weights none",
            cache_subdir="models",
            file_hash=preset.weights.file_hash,
        )
    model = constructor(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_tensor=inputs,
    )
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(weights)
        except Exception as e:  # h5py/Keras raise several types for a mismatched file
            raise ValueError(
                f"could not load backbone weights from {weights} into {constructor_name} "
                f"(include_top=False): {e}. Use the notop weights file of the same ResNet."
            ) from e
    model = without_conv_bias(model, inputs)
    set_trainable(model.layers, freeze_backbone, freeze_batch_norm)
    return tuple(model.get_layer(tap).output for tap in taps)


def set_trainable(layers: Any, freeze_backbone: bool, freeze_batch_norm: bool) -> None:
    """Freeze a backbone's layers (``freeze_backbone``) or only its BatchNormalization layers
    (``freeze_batch_norm``); a BatchNormalization left to train gets
    :data:`TRAINED_BATCH_NORM_MOMENTUM`."""
    for layer in layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        if freeze_backbone or (freeze_batch_norm and is_batch_norm):
            layer.trainable = False
        elif is_batch_norm:
            layer.momentum = TRAINED_BATCH_NORM_MOMENTUM


def without_conv_bias(model: keras.Model, inputs: Any) -> keras.Model:
    """A copy of ``model`` on ``inputs`` whose convolutions that feed a BatchNormalization
    have no bias, folded into that BatchNormalization's moving mean.

    keras.applications' ResNets give every convolution a bias, although each one feeds a
    BatchNormalization that removes it: in training, the batch mean takes it away, and in
    inference ``BN(conv(x) + b)`` with moving mean ``m`` equals ``BN(conv(x))`` with moving mean
    ``m - b``. The copy computes the same function (to float rounding) with 53 fewer variables
    in ResNet50 (26,560 parameters); each of them otherwise costs a bias add and its gradient
    in every step, an optimizer update, and graph-building time in the first step (about 5 s of
    30 s at 384x384 on a 2-core CPU). Layer names stay those of keras.applications.
    """
    folds: dict[str, str] = {}  # conv name -> batch-norm name
    for layer in model.layers:
        if not (isinstance(layer, keras.layers.Conv2D) and layer.use_bias):
            continue
        consumers = [node.operation for node in layer._outbound_nodes]
        if len(consumers) == 1 and isinstance(consumers[0], keras.layers.BatchNormalization):
            norm = consumers[0]
            if norm.axis in (-1, 3) and norm.center:
                folds[layer.name] = norm.name
    if not folds:
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = False
        return layer.__class__.from_config(config)

    input_tensors = [inputs] if isinstance(model.input, list) else inputs
    copy = keras.models.clone_model(model, input_tensors=input_tensors, clone_function=clone)
    for layer in model.layers:
        if not layer.weights:
            continue
        target = copy.get_layer(layer.name)
        if layer.name in folds:
            kernel, bias = layer.get_weights()
            target.set_weights([kernel])
            norm = copy.get_layer(folds[layer.name])
            norm.set_weights(model.get_layer(norm.name).get_weights())
            norm.moving_mean.assign(norm.moving_mean - bias)
        elif layer.name not in folds.values():
            target.set_weights(layer.get_weights())
    return copy
