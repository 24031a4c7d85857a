"""A bottleneck ResNet with every padding explicit, for the model variants that are not
keras.applications' (fizyr's keras-resnet, torchvision's ResNet v1.5).

Each padded convolution is ``ZeroPadding2D`` then a ``"valid"`` convolution, so the padding is
the same on every backend and for every input size, as PyTorch's ``padding=k // 2`` is;
TensorFlow's ``"same"`` pads a stride-2 convolution on an even size only after, which would
shift every window by one pixel. Layer names follow torchvision's module names
(``layer2_0_conv1`` is ``layer2.0.conv1``), which the converters map to.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_retinanet.model.variants import ModelVariant

# Bottleneck blocks per stage (He et al. 2016, table 1).
DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def _conv(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=name)(x)


def _norm(x: Any, variant: ModelVariant, name: str) -> Any:
    return keras.layers.BatchNormalization(epsilon=variant.bn_epsilon, name=name)(x)


def _bottleneck(x: Any, filters: int, stride: int, variant: ModelVariant, prefix: str) -> Any:
    stride_1x1, stride_3x3 = (stride, 1) if variant.stride_in == "1x1" else (1, stride)
    y = _conv(x, filters, 1, stride_1x1, f"{prefix}_conv1")
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(_norm(y, variant, f"{prefix}_bn1"))
    y = _conv(y, filters, 3, stride_3x3, f"{prefix}_conv2")
    y = keras.layers.ReLU(name=f"{prefix}_relu2")(_norm(y, variant, f"{prefix}_bn2"))
    y = _norm(_conv(y, filters * 4, 1, 1, f"{prefix}_conv3"), variant, f"{prefix}_bn3")
    if stride != 1 or x.shape[-1] != filters * 4:
        x = _conv(x, filters * 4, 1, stride, f"{prefix}_downsample_conv")
        x = _norm(x, variant, f"{prefix}_downsample_bn")
    y = keras.layers.Add(name=f"{prefix}_add")([y, x])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def resnet_features(inputs: Any, backbone: str, variant: ModelVariant) -> tuple[Any, Any, Any]:
    """Build the ResNet of ``variant`` on ``inputs`` and return C3, C4, C5.

    Args:
        inputs: ``(B, H, W, 3)`` symbolic images, normalised as the variant expects.
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.
        variant: the stem's padding and the position of the stride come from it.

    Returns:
        ``(C3, C4, C5)``: strides 8, 16, 32; 512, 1024, 2048 channels; sizes
        ``ceil(H / stride)`` as in every variant.
    """
    if variant.stem_conv == "same":  # keras-resnet 0.2.0
        conv1 = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1")
        x = conv1(inputs)
    else:
        x = _conv(inputs, 64, 7, 2, "conv1")
    x = keras.layers.ReLU(name="relu")(_norm(x, variant, "bn1"))
    if variant.stem_pool == "same":
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(x)
    else:  # after the ReLU every value is >= 0, so zero padding acts as PyTorch's -inf
        x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    outputs = []
    for stage, blocks in enumerate(DEPTHS[backbone]):
        filters = 64 * 2**stage
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            x = _bottleneck(x, filters, stride, variant, f"layer{stage + 1}_{block}")
        outputs.append(x)
    return outputs[1], outputs[2], outputs[3]
