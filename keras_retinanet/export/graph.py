"""The exported detector as TensorFlow ops: uint8 RGB images in, detections in input pixels out.

Each artifact (SavedModel, TFLite, ONNX) takes **uint8 RGB** images ``(B, H, W, 3)`` and does
inside the graph what :func:`keras_retinanet.inference.detect` does in Python:

1. RGB -> BGR, resize keeping the aspect ratio so that the shorter side is ``min_side``
   unless the longer side would exceed ``max_side``
   (:func:`keras_retinanet.preprocessing.image.compute_resize_scale`), rounded to uint8
   levels as OpenCV does;
2. Caffe mean subtraction and zero padding at the bottom and right to the model variant's
   multiple (32, :data:`keras_retinanet.preprocessing.image.DEFAULT_PAD_MULTIPLE`, for ours;
   as in training);
3. the inference model, its boxes clipped to the resized image before NMS
   (:func:`keras_retinanet.model.image_sizes.sized_detector`);
4. boxes divided by the resize scale and clipped to the input image; boxes left with no
   area (wholly in the padding) are dropped.

and returns ``boxes`` ``(B, D, 4)`` float32 ``(x1, y1, x2, y2)`` in input-image pixels,
``scores`` ``(B, D)`` float32, ``labels`` ``(B, D)`` int32 (sorted by score, rows past
``num_detections`` are -1) and ``num_detections`` ``(B,)`` int32.

The resize is written as two matrix products (rows, then columns) with the weights OpenCV
uses: pixel-area weights when shrinking (``cv2.INTER_AREA``) and half-pixel bilinear weights
when enlarging (``cv2.INTER_LINEAR``). That keeps the graph to MatMul, which every runtime has
(``tf.image.resize`` has no area mode in TFLite or ONNX), and makes the result match
:func:`keras_retinanet.preprocessing.image.resize_image`: exactly for integer shrink factors,
within one grey level otherwise (OpenCV's bilinear path rounds its weights to 11 bits).

TensorFlow is imported here on purpose: this module is about TensorFlow's formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_retinanet.export.common import INPUT_NAME
from keras_retinanet.model.image_sizes import sized_detector
from keras_retinanet.model.variants import get_variant
from keras_retinanet.preprocessing.image import (
    CAFFE_MEAN_BGR,
    compute_resize_scale,
)


def _resize_matrix(in_size: Any, out_size: Any, shrink: Any, step: Any = None) -> Any:
    """Weights ``(out_size, in_size)`` float32 of a 1-D resize as OpenCV does it.

    ``shrink`` selects pixel-area weights (``cv2.INTER_AREA``): output pixel ``i`` averages
    the input interval ``[i * s, (i + 1) * s)`` with ``s = in_size / out_size``, each input
    pixel weighted by its overlap. Otherwise half-pixel bilinear weights (``cv2.INTER_LINEAR``):
    output pixel ``i`` samples input coordinate ``(i + 0.5) * s - 0.5`` clamped to
    ``[0, in_size - 1]``. Rows sum to 1; ``in_size == out_size`` gives the identity.
    Computed in float64 (positions reach thousands of pixels) and cast at the end.

    Args:
        in_size, out_size: int scalars (Python or tensors).
        shrink: bool scalar (Python or tensor).
        step: input pixels per output pixel; default ``in_size / out_size`` (OpenCV with an
            output size, PyTorch's interpolate); fizyr's ``cv2.resize(fx=scale)`` steps by
            ``1 / scale``.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    in_f = tf.cast(in_size, tf.float64)
    if step is None:
        step = in_f / tf.cast(out_size, tf.float64)
    else:
        step = tf.cast(step, tf.float64)
    i = tf.cast(tf.range(out_size), tf.float64)[:, None]
    j = tf.cast(tf.range(in_size), tf.float64)[None, :]
    overlap = tf.minimum(j + 1.0, (i + 1.0) * step) - tf.maximum(j, i * step)
    area = tf.maximum(overlap, 0.0) / step
    position = tf.clip_by_value((i + 0.5) * step - 0.5, 0.0, in_f - 1.0)
    linear = tf.maximum(1.0 - tf.abs(position - j), 0.0)
    return tf.cast(tf.where(shrink, area, linear), tf.float32)


def _resize_plan(
    height: Any, width: Any, min_side: float, max_side: float, rule: str = "area"
) -> tuple:
    """``(scale, new_height, new_width)`` of :func:`compute_resize_scale` for tensor sizes.

    Float64 and round-half-to-even like Python's ``round`` (rounded down under torchvision's
    rule), so the sizes equal those of
    :func:`keras_retinanet.preprocessing.image.resize_image`.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    smallest, largest = tf.minimum(h, w), tf.maximum(h, w)
    scale = min_side / smallest
    scale = tf.where(largest * scale > max_side, max_side / largest, scale)
    rounding = tf.floor if rule == "torchvision" else tf.round
    new_h = tf.maximum(tf.cast(rounding(h * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(rounding(w * scale), tf.int32), 1)
    return scale, new_h, new_w


def input_spec(image_size: Sequence[int] | None = None, batch_size: int | None = None) -> Any:
    """``tf.TensorSpec`` of the artifacts' input: ``(B, H, W, 3)`` uint8 named ``images``."""
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    shape = [batch_size, *(image_size or (None, None)), 3]
    return tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)


def network_input(
    images: Any,
    min_side: float,
    max_side: float,
    image_size: Sequence[int] | None = None,
    pad_multiple: int | None = None,
    variant: Any = None,
    return_size: bool = False,
) -> tuple[Any, ...]:
    """The tensor the exported graph feeds the network, written in TensorFlow ops.

    The in-graph counterpart of :func:`keras_retinanet.inference.prepare_batch`: RGB -> BGR,
    resize (see :func:`_resize_matrix`), rounding to uint8 levels, Caffe mean subtraction,
    zero padding at the bottom and right to a multiple of ``pad_multiple``. Works eagerly too,
    which is how tests compare an artifact with the Keras model on the very same input.

    Args:
        images: ``(B, H, W, 3)`` uint8 RGB images (one size for the whole batch).
        min_side: resize target of the shorter side.
        max_side: bound on the longer side.
        image_size: the static ``(H, W)`` of ``images``, to make every size and resize weight
            a constant (TFLite needs static shapes); None reads the size from ``images``.
        pad_multiple: see :func:`keras_retinanet.inference.prepare_batch`; None: the
            variant's.
        variant: the model variant, whose resize rule, padding and padding value
            (:func:`keras_retinanet.preprocessing.image.resize_image`) the graph follows;
            None: this package's own.
        return_size: also return the resized image's ``(height, width)`` inside the batch.

    Returns:
        ``(batch, scale)``: ``(B, H', W', 3)`` float32 network input and the resize scale
        (a Python float for a static size, else a float64 scalar tensor; under torchvision's
        rule ``(s_x, s_y, s_x, s_y)``, as ``resize_image`` returns it); with ``return_size``,
        then ``(B, 2)`` float32 ``(height, width)`` of the image in the batch.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    variant = get_variant(variant)
    rule = variant.resize
    if pad_multiple is None:
        pad_multiple = variant.pad_multiple
    if image_size is not None:
        height, width = int(image_size[0]), int(image_size[1])
        scale = compute_resize_scale((height, width), min_side=min_side, max_side=max_side)
        rounding = math.floor if rule == "torchvision" else round
        new_h, new_w = max(1, rounding(height * scale)), max(1, rounding(width * scale))
        step = 1.0 / scale if rule == "linear" else None
        # Evaluated once, eagerly, and embedded as constants: captured eager tensors would
        # become extra graph inputs in the ONNX conversion.
        with tf.init_scope():
            shrink = scale < 1 and rule == "area"
            rows = _resize_matrix(height, new_h, shrink, step).numpy()
            cols = _resize_matrix(width, new_w, shrink, step).numpy()
        rows, cols = tf.constant(rows), tf.constant(cols)
        if rule == "torchvision":
            s_x, s_y = new_w / width, new_h / height
            scale = tf.constant([s_x, s_y, s_x, s_y], tf.float32)
    else:
        shape = tf.shape(images)
        scale, new_h, new_w = _resize_plan(shape[1], shape[2], min_side, max_side, rule)
        shrink = (scale < 1) & (rule == "area")
        step = 1.0 / scale if rule == "linear" else None
        rows = _resize_matrix(shape[1], new_h, shrink, step)
        cols = _resize_matrix(shape[2], new_w, shrink, step)
        if rule == "torchvision":
            s_x = tf.cast(new_w, tf.float64) / tf.cast(shape[2], tf.float64)
            s_y = tf.cast(new_h, tf.float64) / tf.cast(shape[1], tf.float64)
            scale = tf.stack([s_x, s_y, s_x, s_y])
    padded_h = (new_h + pad_multiple - 1) // pad_multiple * pad_multiple
    padded_w = (new_w + pad_multiple - 1) // pad_multiple * pad_multiple
    x = tf.reverse(tf.cast(images, tf.float32), axis=[-1])  # RGB -> BGR
    x = tf.transpose(x, [0, 3, 1, 2])  # (B, 3, H, W): resize rows and columns as MatMuls
    x = tf.matmul(tf.matmul(rows, x), cols, transpose_b=True)
    x = tf.transpose(x, [0, 2, 3, 1])
    if rule == "area":  # OpenCV returns uint8: round half up and saturate before normalising
        x = tf.clip_by_value(tf.floor(x + 0.5), 0.0, 255.0)
    pad_value = tf.constant(variant.pad_value(), dtype=tf.float32)
    x = x - tf.constant(CAFFE_MEAN_BGR, dtype=tf.float32) - pad_value
    x = tf.pad(x, [[0, 0], [0, padded_h - new_h], [0, padded_w - new_w], [0, 0]]) + pad_value
    if not return_size:
        return x, scale
    size = tf.cast(tf.stack([new_h, new_w]), tf.float32)
    return x, scale, tf.tile(size[None], [tf.shape(x)[0], 1])


def detection_function(
    model: Any,
    min_side: float,
    max_side: float,
    image_size: Sequence[int] | None = None,
    pad_multiple: int | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """The whole detector as a function of uint8 RGB images, to trace with ``tf.function``.

    Args:
        model: the inference ``keras.Model`` (TensorFlow backend).
        min_side, max_side, image_size, pad_multiple: see :func:`network_input`.

    Returns:
        A function from ``images`` ``(B, H, W, 3)`` uint8 RGB to the dict of ``boxes``
        ``(B, D, 4)`` float32 in input-image pixels (clipped to the image), ``scores`` ``(B, D)``
        float32, ``labels`` ``(B, D)`` int32 and ``num_detections`` ``(B,)`` int32; rows past
        ``num_detections`` are -1.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"export needs the TensorFlow backend, KERAS_BACKEND is {keras.backend.backend()!r}"
            "; run with KERAS_BACKEND=tensorflow"
        )
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))
        if min(image_size) < 1:
            raise ValueError(f"image size must be positive, got {image_size}")

    variant = getattr(model, "variant", None)  # set by retinanet_box / load_model
    sized = sized_detector(model)  # boxes clipped to the image before NMS

    def detect(images: Any) -> dict[str, Any]:
        x, scale, sizes = network_input(
            images, min_side, max_side, image_size, pad_multiple, variant, return_size=True
        )
        if sized is None:
            boxes, scores, labels = model(x, training=False)
        else:
            boxes, scores, labels = sized([x, sizes], training=False)
        labels = tf.cast(labels, tf.int32)
        found = labels >= 0
        if image_size is not None:
            height, width = float(image_size[0]), float(image_size[1])
            boxes = boxes / scale
        else:
            shape = tf.shape(images)
            height = tf.cast(shape[1], tf.float32)
            width = tf.cast(shape[2], tf.float32)
            boxes = boxes / tf.cast(scale, tf.float32)
        limit = tf.stack([width, height, width, height])
        boxes = tf.clip_by_value(boxes, 0.0, limit)
        # A box wholly in the padding has no area left in the image: drop it, and move the
        # remaining rows up (top_k keeps equal keys in index order, so the score order stays).
        found = found & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
        _, order = tf.math.top_k(tf.where(found, scores, -2.0), k=tf.shape(scores)[1])
        boxes, scores, labels, found = (
            tf.gather(t, order, batch_dims=1) for t in (boxes, scores, labels, found)
        )
        boxes = tf.where(found[..., None], boxes, -tf.ones_like(boxes))
        scores = tf.where(found, scores, -tf.ones_like(scores))
        labels = tf.where(found, labels, -tf.ones_like(labels))
        return {
            "boxes": boxes,
            "scores": scores,
            "labels": labels,
            "num_detections": tf.reduce_sum(tf.cast(found, tf.int32), axis=1),
        }

    return detect
