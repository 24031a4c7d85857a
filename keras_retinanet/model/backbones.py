"""Backbones from ``keras.applications``, tapped at C3, C4 and C5, behind the input each needs."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_retinanet.model import layers as layers_lib
from keras_retinanet.model.backbone_families import BACKBONE_FAMILIES, BackboneFamily
from keras_retinanet.model.download import fetch_file
from keras_retinanet.model.presets import PRESETS, presets_of
from keras_retinanet.model.variants import ModelVariant, get_variant

# The backbones a detector can be built on, by name: the "backbone" presets' families, a view
# of the one registry (a name ending in _lite is its family with the "lite" variant).
BACKBONES: dict[str, BackboneFamily] = {
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


def preset_variant(backbone: str) -> ModelVariant:
    """The model variant a backbone preset builds (``"lite"`` for the ``*_lite`` presets, the
    default for the others)."""
    return get_variant(PRESETS[validate_backbone(backbone)].variant)


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
    """Build a backbone on ``inputs`` and return its C3, C4, C5 feature maps.

    Args:
        inputs: ``(B, H, W, 3)`` symbolic input of caffe-preprocessed BGR images; a layer maps
            them to what the family's network takes (:class:`~keras_retinanet.model.layers.
            NormalizeInput`), so every detector takes the same input whatever its backbone.
        backbone: a name in :data:`BACKBONES` (``"resnet50"``, ``"mobilenet_v3_large"``, ...).
        weights: ``"imagenet"``, None, or a path to a local ``.h5`` weights file of the same
            network without its top (as ``keras.applications`` writes it).
        freeze_backbone: make every backbone layer non-trainable.
        freeze_batch_norm: keep BatchNormalization layers in inference mode with fixed
            statistics. Detection trains with 1-2 images per device, too few for batch
            statistics (detectron2 and fizyr freeze them too).

    Returns:
        ``(C3, C4, C5)`` with strides 8, 16, 32 (ResNet50: 512, 1024, 2048 channels).
    """
    name = validate_backbone(backbone)
    weights = resolve_weights(weights)
    family = BACKBONES[name]
    constructor = getattr(keras.applications, family.constructor)
    path = weights
    if weights == "imagenet":
        # Fetched here, into the cache keras.applications reads, so that a failure says what,
        # why and the way around it; the network then loads it as any other weights file.
        path = fetch_file(
            f"{family.constructor} ImageNet weights",
            family.url,
            "pass its path as --weights PATH (Python: weights=PATH), or train from random "
            "weights with --weights none",
            cache_subdir="models",
            file_hash=family.file_hash,
        )
    x = inputs
    if family.input != "caffe":
        x = layers_lib.NormalizeInput(family.input, name="normalize_input")(inputs)
    # Built without weights and loaded as keras.applications loads its ImageNet file, so the
    # network is the same layers whatever its weights (a fine-tune copies them layer by layer).
    model = constructor(include_top=False, weights=None, input_tensor=x)
    if path is not None:
        try:
            model.load_weights(path)
        except Exception as e:  # h5py/Keras raise several types for a mismatched file
            raise ValueError(
                f"could not load backbone weights from {path} into {family.constructor} "
                f"(include_top=False): {e}. Use the notop weights file of the same network."
            ) from e
    input_scale = family.loaded_input_scale if path is not None else None
    model = portable_ops(without_conv_bias(model, inputs), inputs, input_scale)
    set_trainable(model.layers, freeze_backbone, freeze_batch_norm)
    return tuple(tap_output(model, tap) for tap in family.taps)


def tap_output(model: keras.Model, tap: str) -> Any:
    """The output a tap names (:mod:`keras_retinanet.model.backbone_families`): a layer's name,
    ``"output"`` (the network's output) or ``"NAME>"`` (the one layer consuming ``NAME``)."""
    if tap == "output":
        return model.output
    if tap.endswith(">"):
        consumers = model.get_layer(tap[:-1])._outbound_nodes
        if len(consumers) != 1:
            raise ValueError(f"tap {tap!r}: {tap[:-1]} has {len(consumers)} consumers, not 1")
        return consumers[0].operation.output
    return model.get_layer(tap).output


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


def portable_ops(
    model: keras.Model, inputs: Any, input_scale: Sequence[float] | None = None
) -> keras.Model:
    """A copy of ``model`` on ``inputs`` computing the same function with ops that every
    runtime we export to has; ``model`` itself when nothing needs replacing.

    - A grouped convolution with one input channel per group (ConvNeXt's 7x7 ones,
      ``Conv2D(groups=C)``) becomes a ``DepthwiseConv2D`` of the same name and weights
      (kernel ``(k, k, 1, C)`` as ``(k, k, C, 1)``). TensorFlow has no grouped convolution
      on a CPU: Keras runs one as an XLA-compiled call, which tf2onnx cannot convert and which
      costs a call per layer; a depthwise convolution is a native op everywhere.
    - A GELU activation becomes :class:`~keras_retinanet.model.layers.ErfGelu` (TensorFlow's
      GELU uses ``erfc``, which ONNX lacks).
    - A ``Normalization`` layer (EfficientNet's, EfficientNetV2's and ConvNeXt's input
      statistics) becomes the :class:`~keras_retinanet.model.layers.ChannelAffine` it
      computes, ``(x - mean) / std``, times ``input_scale`` per channel where given
      (:attr:`~keras_retinanet.model.backbone_families.BackboneFamily.loaded_input_scale`):
      given its statistics as numbers, Keras holds them as tensors outside the graph, which a
      traced export captures as extra inputs that tf2onnx cannot feed.
    """

    def is_grouped(layer: keras.layers.Layer) -> bool:
        return (
            type(layer) is keras.layers.Conv2D
            and layer.groups > 1
            and layer.groups == layer.filters
            and layer.kernel.shape[-2] == 1
        )

    def is_gelu(layer: keras.layers.Layer) -> bool:
        return (
            type(layer) is keras.layers.Activation
            and getattr(layer.activation, "__name__", "") == "gelu"
        )

    grouped = {layer.name for layer in model.layers if is_grouped(layer)}
    gelus = {layer.name for layer in model.layers if is_gelu(layer)}
    normalizations = [layer for layer in model.layers if type(layer) is keras.layers.Normalization]
    rescalings = {
        layer.name: _as_channel_affine(layer, input_scale, _stable_name(layer, normalizations))
        for layer in normalizations
    }
    if not grouped and not gelus and not rescalings:
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name in rescalings:
            return rescalings[layer.name]
        if layer.name in gelus:
            return layers_lib.ErfGelu(name=layer.name, dtype=config.get("dtype"))
        if layer.name not in grouped:
            return layer.__class__.from_config(config)
        keep = ("name", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                "activation", "use_bias", "dtype", "trainable", "bias_initializer",
                "bias_regularizer", "bias_constraint", "activity_regularizer")  # fmt: skip
        arguments = {k: config[k] for k in keep if k in config}
        for part in ("initializer", "regularizer", "constraint"):  # the kernel's are depthwise
            if f"kernel_{part}" in config:
                arguments[f"depthwise_{part}"] = config[f"kernel_{part}"]
        return keras.layers.DepthwiseConv2D(**arguments)

    input_tensors = [inputs] if isinstance(model.input, list) else inputs
    copy = keras.models.clone_model(model, input_tensors=input_tensors, clone_function=clone)
    for layer in model.layers:
        if not layer.weights or layer.name in rescalings:
            continue
        weights = layer.get_weights()
        if layer.name in grouped:  # (k, k, 1, C) -> (k, k, C, 1)
            weights[0] = weights[0].transpose(0, 1, 3, 2)
        copy.get_layer(layer.name).set_weights(weights)
    return copy


def _stable_name(layer: keras.layers.Layer, normalizations: list) -> str:
    """``layer``'s name, or ``"input_statistics"`` where keras.applications left it unnamed
    (EfficientNet's ``normalization_N``, numbered by how many the process made before): the
    layer holds weights now, and a fine-tune finds weights by layer name."""
    if not re.fullmatch(r"normalization(_\d+)?", layer.name):
        return layer.name
    if len(normalizations) != 1:
        raise ValueError(f"{len(normalizations)} unnamed Normalization layers: name them")
    return "input_statistics"


def _as_channel_affine(
    layer: keras.layers.Normalization, factor: Sequence[float] | None = None, name: str = ""
) -> layers_lib.ChannelAffine:
    """The :class:`~keras_retinanet.model.layers.ChannelAffine` that computes what a last-axis
    ``Normalization`` does now, ``(x - mean) / max(sqrt(variance), epsilon)`` (Keras' own
    formula), times ``factor`` per channel where given."""
    if tuple(layer.axis) not in ((-1,), (3,)) or getattr(layer, "invert", False):
        raise ValueError(f"{layer.name}: only a last-axis, non-inverted Normalization converts")
    if layer.input_mean is not None:
        mean, variance = layer.input_mean, layer.input_variance
    else:
        mean, variance = layer.adapt_mean, layer.adapt_variance
    mean = np.asarray(keras.ops.convert_to_numpy(mean), dtype=np.float64).reshape(-1)
    variance = np.asarray(keras.ops.convert_to_numpy(variance), dtype=np.float64).reshape(-1)
    scale = 1.0 / np.maximum(np.sqrt(variance), keras.backend.epsilon())
    if factor is not None:
        scale = scale * np.asarray(factor, dtype=np.float64)
    return layers_lib.ChannelAffine(
        scale=[float(v) for v in scale],
        offset=[float(v) for v in -mean * scale],
        name=name or layer.name,
    )
