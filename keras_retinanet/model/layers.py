"""Custom Keras layers of the RetinaNet graphs, written in ``keras.ops`` for every backend.

All layers are registered under the package name ``keras_retinanet``, store each ``__init__``
argument under its own name and return it from ``get_config()``, so
``keras.saving.load_model(path)`` needs no ``custom_objects``.

:class:`FilterDetections` (score threshold, NMS, top detections) has a module of its own,
:mod:`keras_retinanet.model.filter_detections`; it is re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_retinanet.model import anchors as anchors_lib
from keras_retinanet.model import boxes as boxes_lib
from keras_retinanet.model.filter_detections import FilterDetections
from keras_retinanet.model.nms import greedy_nms_mask
from keras_retinanet.model.normalisation import CAFFE_MEAN_BGR, TORCH_MEAN_RGB, TORCH_STD_RGB

__all__ = [
    "Anchors",
    "ClipBoxes",
    "FilterDetections",
    "NormalizeInput",
    "RegressBoxes",
    "UpsampleLike",
    "greedy_nms_mask",
    "prior_bias",
]

_PACKAGE = "keras_retinanet"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UpsampleLike(keras.layers.Layer):
    """Nearest-neighbour resize of ``source`` to the spatial size of ``target``.

    Called as ``UpsampleLike()([source, target])`` with ``source`` ``(B, h, w, C)`` and
    ``target`` ``(B, H, W, C')``; returns ``(B, H, W, C)``. Output pixel ``(i, j)`` takes source
    pixel ``(floor(i * h / H), floor(j * w / W))``. In the FPN, ``H`` is ``2h`` or ``2h - 1``
    (ResNet rounds odd sizes up), so this is 2x nearest upsampling cropped to the finer map.
    """

    def call(self, inputs: Sequence[Any]) -> Any:
        source, target = inputs
        source_shape, target_shape = ops.shape(source), ops.shape(target)
        rows = (ops.arange(target_shape[1]) * source_shape[1]) // target_shape[1]
        cols = (ops.arange(target_shape[2]) * source_shape[2]) // target_shape[2]
        resized = ops.take(source, rows, axis=1)
        return ops.take(resized, cols, axis=2)

    def compute_output_shape(self, input_shape: Sequence[Sequence[int | None]]) -> tuple:
        source_shape, target_shape = input_shape
        return (source_shape[0], target_shape[1], target_shape[2], source_shape[3])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Anchors(keras.layers.Layer):
    """Anchors of one pyramid level for a feature map, in input-image pixels.

    Uses :func:`keras_retinanet.model.anchors.generate_anchors` and
    :func:`keras_retinanet.model.anchors.shift`, the same code the data loader uses.

    Args:
        size: base anchor side in pixels.
        stride: feature-map stride in pixels.
        ratios: aspect ratios ``h / w``.
        scales: multipliers of ``size``.
        rule: the model variant's anchor rule: ``"centred"`` or ``"torchvision"`` (whose
            stride is ``input_size // feature_size``, so the layer needs the input too).

    Call: ``Anchors(...)(features)``, or ``Anchors(rule="torchvision")([features, image])``,
    with ``features`` ``(B, H, W, C)`` and ``image`` the network input; returns
    ``(B, H * W * A, 4)`` float32 ``(x1, y1, x2, y2)``.
    """

    def __init__(
        self,
        size: float,
        stride: int,
        ratios: Sequence[float] = anchors_lib.AnchorParameters.ratios,
        scales: Sequence[float] = anchors_lib.AnchorParameters.scales,
        rule: str = "centred",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = float(size)
        self.stride = int(stride)
        self.ratios = [float(r) for r in ratios]
        self.scales = [float(s) for s in scales]
        self.rule = str(rule)
        self.num_anchors = len(self.ratios) * len(self.scales)
        self._base_anchors = anchors_lib.base_anchors(
            self.size, self.ratios, self.scales, self.rule
        )

    def call(self, inputs: Any) -> Any:
        features, image = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        shape = ops.shape(features)
        if self.rule == "torchvision":
            image_shape = ops.shape(image)
            strides = anchors_lib.level_strides(
                image_shape[1:3], shape[1:3], self.stride, "torchvision"
            )
            offset = 0.0
        else:
            strides, offset = self.stride, 0.5
        level_anchors = anchors_lib.shift(
            shape[1:3], strides, self._base_anchors, xp=ops, offset=offset
        )
        level_anchors = ops.expand_dims(level_anchors, axis=0)
        return ops.tile(level_anchors, (shape[0], 1, 1))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        if isinstance(input_shape, list) or isinstance(input_shape[0], (tuple, list)):
            input_shape = input_shape[0]
        height, width = input_shape[1], input_shape[2]
        count = None if height is None or width is None else height * width * self.num_anchors
        return (input_shape[0], count, 4)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "size": self.size,
                "stride": self.stride,
                "ratios": self.ratios,
                "scales": self.scales,
                "rule": self.rule,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RegressBoxes(keras.layers.Layer):
    """Apply regression deltas to anchors (:func:`keras_retinanet.model.boxes.bbox_transform_inv`).

    Args:
        mean: mean of the regression targets (scalar or 4 values).
        std: std of the regression targets (scalar or 4 values).
        coder: ``"corners"`` (:func:`~keras_retinanet.model.boxes.bbox_transform_inv` with
            ``mean``/``std``) or ``"centre_size"`` (torchvision's,
            :func:`~keras_retinanet.model.boxes.bbox_transform_inv_centre_size`; ignores them).

    Call: ``RegressBoxes()([anchors, regression])`` with both ``(B, N, 4)``; returns
    ``(B, N, 4)`` float32 ``(x1, y1, x2, y2)`` boxes.
    """

    def __init__(
        self,
        mean: float | Sequence[float] = boxes_lib.DEFAULT_MEAN,
        std: float | Sequence[float] = boxes_lib.DEFAULT_STD,
        coder: str = "corners",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.coder = str(coder)
        self.mean = [float(m) for m in np.broadcast_to(np.asarray(mean, dtype=float), (4,))]
        self.std = [float(s) for s in np.broadcast_to(np.asarray(std, dtype=float), (4,))]

    def call(self, inputs: Sequence[Any]) -> Any:
        anchors, regression = inputs
        regression = ops.cast(regression, "float32")
        return boxes_lib.decode_boxes(anchors, regression, self.coder, self.mean, self.std, xp=ops)

    def compute_output_shape(self, input_shape: Sequence[Sequence[int | None]]) -> tuple:
        return tuple(input_shape[1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std, "coder": self.coder})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClipBoxes(keras.layers.Layer):
    """Clip boxes to the network input's ``[0, W] x [0, H]`` (or ``[0, W - 1] x [0, H - 1]``
    with ``clip="size_minus_one"``, as fizyr), or to each image's own size inside it.

    Call: ``ClipBoxes()([image, boxes])`` with ``image`` ``(B, H, W, C)`` and ``boxes``
    ``(B, N, 4)``, or ``ClipBoxes()([image, boxes, image_sizes])`` with ``image_sizes``
    ``(B, 2)`` the ``(height, width)`` of each image in the padded batch (its top-left
    corner), so that a box reaching into the padding is cut at the image's edge before NMS
    compares it, as torchvision clips to the resized image. Returns ``(B, N, 4)``.
    """

    def __init__(self, clip: str = "size", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clip = str(clip)

    def call(self, inputs: Sequence[Any]) -> Any:
        image, boxes = inputs[0], inputs[1]
        margin = 1 if self.clip == "size_minus_one" else 0
        if len(inputs) > 2:
            sizes = ops.cast(inputs[2], boxes.dtype)
            height = sizes[:, None, 0] - margin  # (B, 1): broadcast over the N boxes
            width = sizes[:, None, 1] - margin
        else:
            shape = ops.shape(image)
            height = ops.cast(shape[1] - margin, boxes.dtype)
            width = ops.cast(shape[2] - margin, boxes.dtype)
        return boxes_lib.clip_boxes(boxes, height, width, xp=ops)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"clip": self.clip})
        return config

    def compute_output_shape(self, input_shape: Sequence[Sequence[int | None]]) -> tuple:
        return tuple(input_shape[1])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizeInput(keras.layers.Layer):
    """Map this package's caffe-style input (BGR minus the ImageNet mean, 0-255) to the input
    a network was trained with.

    Args:
        mode: ``"torch"``: RGB / 255, minus ImageNet's mean, over its std (torchvision's,
            DenseNet's); ``"tf"``: RGB / 127.5 - 1 (ResNetV2's, MobileNetV2's); ``"rgb"``: RGB
            0-255 (networks that normalise inside: MobileNetV3, EfficientNet, ConvNeXt).

    Call: ``(B, H, W, 3)`` float caffe-style images; returns ``(B, H, W, 3)``. The loaders pad
    a torch-input variant's batches with the value this maps to 0
    (:meth:`keras_retinanet.model.variants.ModelVariant.pad_value`), as PyTorch pads.
    """

    MODES = ("torch", "tf", "rgb")

    def __init__(self, mode: str = "torch", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"NormalizeInput mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, images: Any) -> Any:
        rgb = ops.flip(images + ops.convert_to_tensor(CAFFE_MEAN_BGR, images.dtype), axis=-1)
        if self.mode == "rgb":
            return rgb
        if self.mode == "tf":
            return rgb / 127.5 - 1.0
        mean = ops.convert_to_tensor(TORCH_MEAN_RGB, images.dtype)
        std = ops.convert_to_tensor(TORCH_STD_RGB, images.dtype)
        return (rgb / 255.0 - mean) / std

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChannelAffine(keras.layers.Layer):
    """``x * scale + offset`` per channel (last axis), with ``scale`` and ``offset`` held as
    non-trainable weights.

    :func:`keras_retinanet.model.backbones.portable_ops` puts it in place of a network's input
    ``Normalization`` (EfficientNet's, ConvNeXt's): as weights, the statistics travel wherever
    weights do (a fine-tune copies them layer by layer, where a ``Rescaling``'s numbers, held
    in its config, would stay those of the fresh network), and an export sees them as
    constants of the graph.

    Args:
        scale, offset: per-channel values (equal length), or None for 1 and 0 (set by weights).

    Call: ``(..., C)`` float tensor; returns the same shape.
    """

    def __init__(
        self,
        scale: Sequence[float] | None = None,
        offset: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._initial = (
            None if scale is None else [float(v) for v in scale],
            None if offset is None else [float(v) for v in offset],
        )

    def build(self, input_shape: Sequence[int | None]) -> None:
        channels = int(input_shape[-1])
        scale, offset = self._initial
        for values in (scale, offset):
            if values is not None and len(values) != channels:
                raise ValueError(f"{self.name}: {len(values)} values for {channels} channels")
        self.scale = self.add_weight(
            name="scale", shape=(channels,), trainable=False,
            initializer=keras.initializers.Constant(scale) if scale else "ones",
        )  # fmt: skip
        self.offset = self.add_weight(
            name="offset", shape=(channels,), trainable=False,
            initializer=keras.initializers.Constant(offset) if offset else "zeros",
        )  # fmt: skip

    def call(self, x: Any) -> Any:
        return x * ops.cast(self.scale, x.dtype) + ops.cast(self.offset, x.dtype)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"scale": self._initial[0], "offset": self._initial[1]})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ErfGelu(keras.layers.Layer):
    """The exact GELU, ``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))``, written with erf.

    ``keras.activations.gelu`` computes the same with TensorFlow's ``erfc``, which ONNX has no
    operator for (tf2onnx writes an ``Erfc`` node onnxruntime cannot load); ``erf`` is an ONNX,
    TFLite and XLA op. :func:`keras_retinanet.model.backbones.portable_ops` puts this layer in
    place of ConvNeXt's GELU activations.

    Call: any float tensor; returns the same shape.
    """

    def call(self, x: Any) -> Any:
        return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        return super().get_config()


def prior_bias(probability: float) -> float:
    """Classification bias so that every anchor starts at foreground ``probability``:
    ``-log((1 - p) / p)`` (Lin et al. 2017, sec. 4.1, p = 0.01)."""
    return -math.log((1.0 - probability) / probability)
