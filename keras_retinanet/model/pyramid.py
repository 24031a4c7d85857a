"""The feature pyramid (P3..P7) and the two subnets (heads) shared across its levels.

Layer names are fizyr's (``C5_reduced``, ``P5``, ``pyramid_classification_0``, ...) for every
model variant, so snapshots and converters find the same layers whatever the variant.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_retinanet.model import layers as layers_lib
from keras_retinanet.model.variants import DEFAULT, ModelVariant

# The subnets' hidden and last convolutions start as N(0, 0.01) (Lin et al. 2017, sec. 4.1).
_HEAD_INIT = {"mean": 0.0, "stddev": 0.01}


def _conv(filters: int, name: str, strides: int = 1, kernel_size: int = 3, **kwargs: Any) -> Any:
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", name=name, **kwargs
    )


def _conv3x3(
    filters: int, name: str, conv: str, strides: int = 1, padding: str = "same", **kwargs: Any
) -> Any:
    """A 3x3 convolution, full or depthwise-separable (``conv == "separable"``: a 3x3
    depthwise then a 1x1 pointwise convolution, about 9 + C_out multiplies per output value
    instead of 9 * C_in, as FPNLite and EfficientDet's heads). ``kernel_initializer`` is the
    pointwise one's; the depthwise one's is N(0, 1/9), which keeps its input's variance (each
    output sums 9 products; Keras' default, Glorot's over fans of 9 * C and 9, would shrink
    the signal about C-fold a layer)."""
    if conv == "separable":
        if "kernel_initializer" in kwargs:
            kwargs["pointwise_initializer"] = kwargs.pop("kernel_initializer")
        kwargs.setdefault("depthwise_initializer", keras.initializers.RandomNormal(stddev=1 / 3))
        return keras.layers.SeparableConv2D(
            filters, 3, strides=strides, padding=padding, name=name, **kwargs
        )
    return keras.layers.Conv2D(filters, 3, strides=strides, padding=padding, name=name, **kwargs)


def _strided_conv(x: Any, filters: int, name: str, padding: str, conv: str = "full") -> Any:
    """3x3 stride-2 conv: TensorFlow's ``"same"`` (pads after only, on even sizes) or
    ``"symmetric"`` (pads 1 on every side, PyTorch's ``padding=1``)."""
    if padding == "symmetric":
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        return _conv3x3(filters, name, conv, strides=2, padding="valid")(x)
    return _conv3x3(filters, name, conv, strides=2)(x)


def _subnet_trunk(x: Any, feature_size: int, prefix: str, variant: ModelVariant) -> Any:
    """The ``variant.head_depth`` 3x3 convs + ReLU both subnets start with
    (``{prefix}_0..``); with ``head_norm == "group_norm"`` each conv has no bias and a
    GroupNorm(32) follows it (torchvision's v2 heads)."""
    for i in range(variant.head_depth):
        init: Any = keras.initializers.RandomNormal(**_HEAD_INIT)
        if variant.conv == "separable":
            # N(0, 0.01) keeps a full 3x3 conv's signal (fan-in 9 x 256: gain 0.48 a layer);
            # a pointwise conv's fan-in is only the channels (64: gain 0.08), so three layers
            # would shrink the head's input 2000-fold. He's init keeps it (through the ReLU).
            init = keras.initializers.HeNormal()
        if variant.head_norm == "group_norm":
            x = _conv3x3(
                feature_size, f"{prefix}_{i}", variant.conv, kernel_initializer=init, use_bias=False
            )(x)
            x = keras.layers.GroupNormalization(
                groups=32,
                epsilon=1e-5,
                name=f"{prefix}_{i}_norm",  # torch.nn.GroupNorm's
            )(x)
            x = keras.layers.ReLU(name=f"{prefix}_{i}_relu")(x)
        else:
            x = _conv3x3(
                feature_size,
                f"{prefix}_{i}",
                variant.conv,
                activation="relu",
                kernel_initializer=init,
                bias_initializer="zeros",
            )(x)
    return x


def classification_subnet(
    num_classes: int,
    num_anchors: int,
    pyramid_feature_size: int = 256,
    feature_size: int = 256,
    prior_probability: float = 0.01,  # Lin et al. 2017, sec. 4.1: stable start with focal loss
    name: str = "classification_submodel",
    variant: ModelVariant = DEFAULT,
) -> keras.Model:
    """``variant.head_depth`` (4) 3x3 convs + ReLU, then a 3x3 conv to ``K * A`` with a
    sigmoid; the convolutions are ``variant.conv`` (full or depthwise-separable).

    Returns a model mapping ``(B, H, W, pyramid_feature_size)`` to ``(B, H * W * A, K)``
    probabilities (float32 also under mixed precision).
    """
    inputs = keras.Input(shape=(None, None, pyramid_feature_size))
    x = _subnet_trunk(inputs, feature_size, "pyramid_classification", variant)
    x = _conv3x3(
        num_classes * num_anchors,
        "pyramid_classification",
        variant.conv,
        kernel_initializer=keras.initializers.RandomNormal(**_HEAD_INIT),
        bias_initializer=keras.initializers.Constant(layers_lib.prior_bias(prior_probability)),
    )(x)
    x = keras.layers.Reshape((-1, num_classes), name="pyramid_classification_reshape")(x)
    x = keras.layers.Activation("sigmoid", dtype="float32", name="pyramid_classification_sigmoid")(
        x
    )
    return keras.Model(inputs=inputs, outputs=x, name=name)


def regression_subnet(
    num_values: int,
    num_anchors: int,
    pyramid_feature_size: int = 256,
    feature_size: int = 256,
    name: str = "regression_submodel",
    variant: ModelVariant = DEFAULT,
) -> keras.Model:
    """``variant.head_depth`` (4) 3x3 convs + ReLU, then a 3x3 conv to ``4 * A``; the
    convolutions are ``variant.conv``.

    Returns a model mapping ``(B, H, W, pyramid_feature_size)`` to ``(B, H * W * A, 4)``
    float32 deltas.
    """
    inputs = keras.Input(shape=(None, None, pyramid_feature_size))
    x = _subnet_trunk(inputs, feature_size, "pyramid_regression", variant)
    x = _conv3x3(
        num_values * num_anchors,
        "pyramid_regression",
        variant.conv,
        kernel_initializer=keras.initializers.RandomNormal(**_HEAD_INIT),
        bias_initializer="zeros",
    )(x)
    x = keras.layers.Reshape((-1, num_values), name="pyramid_regression_reshape")(x)
    x = keras.layers.Activation("linear", dtype="float32", name="pyramid_regression_float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name=name)


def feature_pyramid(
    c3: Any, c4: Any, c5: Any, feature_size: int = 256, variant: ModelVariant = DEFAULT
) -> dict[int, Any]:
    """FPN of Lin et al. 2017: P3..P5 top-down from C3..C5, P6 from C5 (or P5, as
    torchvision's v1), P7 from ReLU(P6); its 3x3 convolutions are ``variant.conv`` (full, or
    depthwise-separable as FPNLite's).

    Returns:
        ``{level: feature map}`` for levels 3..7, each with ``feature_size`` channels; the map
        of level l has size ``ceil(H / 2**l)``.
    """
    conv = variant.conv
    p5 = _conv(feature_size, "C5_reduced", kernel_size=1)(c5)
    p5_upsampled = layers_lib.UpsampleLike(name="P5_upsampled")([p5, c4])
    p5 = _conv3x3(feature_size, "P5", conv)(p5)

    p4 = _conv(feature_size, "C4_reduced", kernel_size=1)(c4)
    p4 = keras.layers.Add(name="P4_merged")([p5_upsampled, p4])
    p4_upsampled = layers_lib.UpsampleLike(name="P4_upsampled")([p4, c3])
    p4 = _conv3x3(feature_size, "P4", conv)(p4)

    p3 = _conv(feature_size, "C3_reduced", kernel_size=1)(c3)
    p3 = keras.layers.Add(name="P3_merged")([p4_upsampled, p3])
    p3 = _conv3x3(feature_size, "P3", conv)(p3)

    # P6 from C5 rather than P5, as in the RetinaNet paper (sec. 4, footnote 2).
    source = c5 if variant.p6_from == "C5" else p5
    p6 = _strided_conv(source, feature_size, "P6", variant.pyramid_padding, conv)
    p7 = keras.layers.Activation("relu", name="C6_relu")(p6)
    p7 = _strided_conv(p7, feature_size, "P7", variant.pyramid_padding, conv)
    return {3: p3, 4: p4, 5: p5, 6: p6, 7: p7}
