"""Fold frozen BatchNormalization layers into the convolution before them, for inference.

At inference a batch normalisation is a fixed per-channel affine map, ``y * s + t`` with
``s = gamma / sqrt(moving_variance + epsilon)`` and ``t = beta - moving_mean * s``. After a
convolution ``y = conv(x, W) + b`` (no activation between them) the pair is one convolution:

    W' = W * s          (per output channel: the kernel's last axis; a depthwise kernel's
                         last two, input channel by multiplier)
    b' = b * s + t

so the inference graph runs convolution + bias (+ ReLU) and no normalisation. TensorFlow's
graph optimiser fuses that into one ``_FusedConv2D`` op; it cannot fuse a convolution with
Keras' batch normalisation, which is a chain of element-wise ops over the whole feature map.
``benchmarks/bench_inference.py`` measures the gain.

Invariant (tested): ``fold_batch_norm(model)(x) == model(x, training=False)`` within float
rounding, for every model of :func:`~keras_retinanet.models.retinanet_model` and every variant.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

# Convolutions a following BatchNormalization folds into: full ones, and depthwise ones
# (MobileNet's and EfficientNet's), whose output channel c * multiplier + m has its own scale.
_FOLDABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def batch_norm_pairs(model: keras.Model) -> dict[int, Any]:
    """The foldable ``BatchNormalization`` layers of ``model`` and its nested models.

    A batch normalisation is foldable when its one input is the output of a ``Conv2D`` or
    ``DepthwiseConv2D`` with
    no activation, the convolution is called once, its output goes to that normalisation
    alone, and the normalisation scales the channel axis (the last).

    Returns:
        ``{id(batch_norm_layer): conv_layer}``.
    """
    pairs: dict[int, Any] = {}
    for layer in _walk(model):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if len(layer._inbound_nodes) != 1 or layer.axis not in (-1, 3):
            continue
        inputs = layer._inbound_nodes[0].arguments.keras_tensors
        if len(inputs) != 1:
            continue
        conv = inputs[0]._keras_history.operation
        if (
            type(conv) in _FOLDABLE
            and conv.get_config()["activation"] == "linear"
            and len(conv._inbound_nodes) == 1
            and len(conv._outbound_nodes) == 1
        ):
            pairs[id(layer)] = conv
    return pairs


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of ``model`` in which every foldable batch normalisation is folded.

    The folded convolutions get a bias (``use_bias=True``) and keep their names; each folded
    ``BatchNormalization`` becomes a ``keras.layers.Identity`` of the same name, so layer
    lookups by name (``get_layer("P3")``, the heads) work on the copy as on ``model``. The copy
    has its own weights: training ``model`` afterwards does not change it, so fold a model for
    inference or export, not one that is still training.

    Args:
        model: a functional Keras model (e.g. from
            :func:`keras_retinanet.model.retinanet.retinanet_model`).

    Returns:
        The folded copy, or ``model`` itself when it has nothing to fold.
    """
    pairs = batch_norm_pairs(model)
    if not pairs:
        return model
    folded_convs = {id(conv) for conv in pairs.values()}

    def clone(layer: Any) -> Any:
        if id(layer) in pairs:
            return keras.layers.Identity(name=layer.name, dtype=layer.dtype_policy.name)
        config = layer.get_config()
        if id(layer) in folded_convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(layer, keras.layers.Identity):  # BatchNormalization's call took a mask
            kwargs = {k: v for k, v in kwargs.items() if k not in ("mask", "training")}
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(
        model, clone_function=clone, call_function=call, recursive=True
    )
    bn_of_conv = {id(conv): bn for bn, conv in _bn_layers(model, pairs)}
    for old, new in zip(_walk(model), _walk(folded), strict=True):
        if old.name != new.name:  # clone_model keeps the layer order; a mismatch is a bug
            raise RuntimeError(f"folding lost the layer order at {old.name!r} / {new.name!r}")
        if id(old) in pairs:
            continue
        if id(old) in bn_of_conv:
            new.set_weights(_fold(old, bn_of_conv[id(old)]))
        elif old.weights and not isinstance(old, keras.Model):  # its layers come next
            new.set_weights(old.get_weights())
    if hasattr(model, "variant"):  # set by retinanet_box / load_model, not saved
        folded.variant = model.variant
    return folded


def _fold(conv: Any, bn: Any) -> list[np.ndarray]:
    """The kernel and bias of ``conv`` followed by ``bn`` in inference mode (float64 maths)."""
    kernel = _numpy(conv.kernel)
    bias = _numpy(conv.bias) if conv.use_bias else 0.0
    mean, variance = _numpy(bn.moving_mean), _numpy(bn.moving_variance)
    gamma = _numpy(bn.gamma) if bn.scale else 1.0
    beta = _numpy(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(variance + bn.epsilon)
    dtype = conv.kernel.dtype
    kernel_scale = scale
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # kernel (kh, kw, C_in, multiplier)
        kernel_scale = np.reshape(scale, kernel.shape[2:])
    return [
        (kernel * kernel_scale).astype(dtype),
        ((bias - mean) * scale + beta).astype(dtype),
    ]


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def _bn_layers(model: keras.Model, pairs: dict[int, Any]) -> list[tuple[Any, Any]]:
    return [(layer, pairs[id(layer)]) for layer in _walk(model) if id(layer) in pairs]


def _walk(model: keras.Model) -> list[Any]:
    """The layers of ``model``, nested models' layers after the nested model, in order."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):  # clone_model renames them
            continue
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(_walk(layer))
    return layers
