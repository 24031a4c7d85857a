"""Turning snapshots into deployable detectors: inference ``.keras`` models, SavedModel, TFLite
and ONNX.

:func:`convert_model` turns a training snapshot into an inference model file (anchors, box
decoding and NMS in the graph) and records the filter settings in its metadata.

:func:`export_saved_model`, :func:`export_tflite` and :func:`export_onnx` write artifacts that
need neither this package nor Keras to run. Each takes **uint8 RGB** images ``(B, H, W, 3)``
and does inside the graph what :func:`keras_retinanet.inference.detect` does in Python:

1. RGB -> BGR, resize keeping the aspect ratio so that the shorter side is ``min_side``
   unless the longer side would exceed ``max_side``
   (:func:`keras_retinanet.preprocessing.image.compute_resize_scale`), rounded to uint8
   levels as OpenCV does;
2. Caffe mean subtraction and zero padding at the bottom and right to a multiple of 128;
3. the inference model;
4. boxes divided by the resize scale and clipped to the input image.

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

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keras_retinanet import models
from keras_retinanet.inference import DEFAULT_PAD_MULTIPLE
from keras_retinanet.preprocessing.image import CAFFE_MEAN_BGR, compute_resize_scale

FORMATS = ("saved_model", "tflite", "onnx")
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
# Default resize of snapshots that do not record their training sizes: the detectron2 /
# torchvision defaults, as in keras_retinanet.preprocessing.image.resize_image.
DEFAULT_MIN_SIDE = 800
DEFAULT_MAX_SIDE = 1333
# Opset 17 (ONNX 1.12, 2022): every op the graph needs (Loop, TopK, Einsum) and supported by
# onnxruntime >= 1.12.
DEFAULT_ONNX_OPSET = 17
METADATA_FILE = "keras_retinanet.json"


# --------------------------------------------------------------------------- convert


def convert_model(
    model_in: str,
    model_out: str,
    nms: bool = True,
    class_specific_filter: bool = True,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.05,
    max_detections: int = 300,
) -> str:
    """Turn a training snapshot into an inference model file.

    The output is :func:`keras_retinanet.models.retinanet_box` of the snapshot, with the
    anchors recorded in its metadata, saved with the input's metadata plus
    ``"model": "inference"`` and ``"filter_detections"`` (the settings below).

    Args:
        model_in: training snapshot (``.keras`` or ``.h5``).
        model_out: output path (``.keras`` or ``.h5``); may equal ``model_in``.
        nms, class_specific_filter, nms_threshold, score_threshold, max_detections: see
            :class:`keras_retinanet.layers.FilterDetections`.

    Returns:
        ``model_out``.

    Raises:
        FileNotFoundError: ``model_in`` does not exist.
        ValueError: a path does not end in ``.keras``/``.h5``, or ``model_in`` is already an
            inference model with other filter settings.
    """
    settings = {
        "nms": bool(nms),
        "class_specific_filter": bool(class_specific_filter),
        "nms_threshold": float(nms_threshold),
        "score_threshold": float(score_threshold),
        "max_detections": int(max_detections),
    }
    if not str(model_out).endswith((".keras", ".h5")):
        raise ValueError(f"output path must end in .keras or .h5, got {model_out}")
    metadata = models.read_metadata(model_in)  # also checks that model_in exists
    model = models.load_model(model_in, convert=True, **settings)
    recorded = model.get_layer("filtered_detections").get_config()
    different = {k: recorded[k] for k, v in settings.items() if recorded[k] != v}
    if different:
        raise ValueError(
            f"{model_in} is already an inference model, with filter settings {different}; "
            "convert the training snapshot it came from to get other settings"
        )
    metadata = dict(metadata)
    metadata["model"] = "inference"
    metadata["filter_detections"] = settings
    return models.save_model(model, model_out, metadata=metadata)


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedDetector:
    """An inference model with what export needs to know about it.

    Attributes:
        model: the inference ``keras.Model`` (outputs boxes, scores, labels).
        metadata: the snapshot's metadata record (``{}`` if none).
        min_side: resize target of the shorter image side.
        max_side: bound on the longer image side.
    """

    model: Any
    metadata: dict
    min_side: float
    max_side: float


def load_detector(
    model: Any,
    min_side: float | None = None,
    max_side: float | None = None,
    metadata: dict | None = None,
) -> LoadedDetector:
    """Load a snapshot as an inference model and settle the resize sizes.

    Args:
        model: path of a training or inference snapshot, or an inference ``keras.Model``.
        min_side: shorter-side target; default the snapshot's ``image_min_side``, else 800.
        max_side: longer-side bound; default the snapshot's ``image_max_side``, else 1333.
        metadata: metadata for an in-memory model (read from the file for a path).

    Raises:
        FileNotFoundError: the snapshot does not exist.
        ValueError: an in-memory model that is not an inference model, or bad sizes.
    """
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        metadata = models.read_metadata(path) if metadata is None else metadata
        model = models.load_model(path, convert=True)
        source = path
    else:
        if not models.is_inference_model(model):
            raise ValueError(
                "export needs an inference model: pass a snapshot path, or wrap the training "
                "model with keras_retinanet.models.retinanet_box"
            )
        metadata = metadata or {}
        source = "the model's metadata"
    recorded = {"image_min_side": min_side, "image_max_side": max_side}
    missing = [key for key, given in recorded.items() if given is None and key not in metadata]
    if missing:
        warnings.warn(
            f"{source} records no {' / '.join(missing)}; using min_side={DEFAULT_MIN_SIDE}, "
            f"max_side={DEFAULT_MAX_SIDE} where missing. Pass --min-side and --max-side to "
            "resize as the model was trained.",
            stacklevel=2,
        )
    if min_side is None:
        min_side = metadata.get("image_min_side", DEFAULT_MIN_SIDE)
    if max_side is None:
        max_side = metadata.get("image_max_side", DEFAULT_MAX_SIDE)
    min_side, max_side = float(min_side), float(max_side)
    if not 0 < min_side <= max_side:
        raise ValueError(f"need 0 < min_side <= max_side, got {min_side} and {max_side}")
    return LoadedDetector(model=model, metadata=metadata, min_side=min_side, max_side=max_side)


# --------------------------------------------------------------------------- graph


def _resize_matrix(in_size: Any, out_size: Any, shrink: Any) -> Any:
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
    """
    import tensorflow as tf

    in_f = tf.cast(in_size, tf.float64)
    step = in_f / tf.cast(out_size, tf.float64)
    i = tf.cast(tf.range(out_size), tf.float64)[:, None]
    j = tf.cast(tf.range(in_size), tf.float64)[None, :]
    overlap = tf.minimum(j + 1.0, (i + 1.0) * step) - tf.maximum(j, i * step)
    area = tf.maximum(overlap, 0.0) / step
    position = tf.clip_by_value((i + 0.5) * step - 0.5, 0.0, in_f - 1.0)
    linear = tf.maximum(1.0 - tf.abs(position - j), 0.0)
    return tf.cast(tf.where(shrink, area, linear), tf.float32)


def _resize_plan(height: Any, width: Any, min_side: float, max_side: float) -> tuple:
    """``(scale, new_height, new_width)`` of :func:`compute_resize_scale` for tensor sizes.

    Float64 and round-half-to-even like Python's ``round``, so the sizes equal those of
    :func:`keras_retinanet.preprocessing.image.resize_image`.
    """
    import tensorflow as tf

    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    smallest, largest = tf.minimum(h, w), tf.maximum(h, w)
    scale = min_side / smallest
    scale = tf.where(largest * scale > max_side, max_side / largest, scale)
    new_h = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), 1)
    return scale, new_h, new_w


def _static_plan(image_size: Sequence[int], min_side: float, max_side: float) -> tuple:
    height, width = int(image_size[0]), int(image_size[1])
    scale = compute_resize_scale((height, width), min_side=min_side, max_side=max_side)
    return scale, max(1, round(height * scale)), max(1, round(width * scale))


def input_spec(image_size: Sequence[int] | None = None, batch_size: int | None = None) -> Any:
    """``tf.TensorSpec`` of the artifacts' input: ``(B, H, W, 3)`` uint8 named ``images``."""
    import tensorflow as tf

    shape = [batch_size, *(image_size or (None, None)), 3]
    return tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)


def network_input(
    images: Any,
    min_side: float,
    max_side: float,
    image_size: Sequence[int] | None = None,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> tuple[Any, Any]:
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
        pad_multiple: see :func:`keras_retinanet.inference.prepare_batch`.

    Returns:
        ``(batch, scale)``: ``(B, H', W', 3)`` float32 network input and the resize scale
        (a Python float for a static size, else a float64 scalar tensor).
    """
    import tensorflow as tf

    if image_size is not None:
        height, width = int(image_size[0]), int(image_size[1])
        scale = compute_resize_scale((height, width), min_side=min_side, max_side=max_side)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        # Evaluated once, eagerly, and embedded as constants: captured eager tensors would
        # become extra graph inputs in the ONNX conversion.
        with tf.init_scope():
            rows = _resize_matrix(height, new_h, scale < 1).numpy()
            cols = _resize_matrix(width, new_w, scale < 1).numpy()
        rows, cols = tf.constant(rows), tf.constant(cols)
    else:
        shape = tf.shape(images)
        scale, new_h, new_w = _resize_plan(shape[1], shape[2], min_side, max_side)
        rows = _resize_matrix(shape[1], new_h, scale < 1)
        cols = _resize_matrix(shape[2], new_w, scale < 1)
    padded_h = (new_h + pad_multiple - 1) // pad_multiple * pad_multiple
    padded_w = (new_w + pad_multiple - 1) // pad_multiple * pad_multiple
    x = tf.reverse(tf.cast(images, tf.float32), axis=[-1])  # RGB -> BGR
    x = tf.transpose(x, [0, 3, 1, 2])  # (B, 3, H, W): resize rows and columns as MatMuls
    x = tf.matmul(tf.matmul(rows, x), cols, transpose_b=True)
    x = tf.transpose(x, [0, 2, 3, 1])
    # OpenCV returns uint8: round half up and saturate before normalising.
    x = tf.clip_by_value(tf.floor(x + 0.5), 0.0, 255.0)
    x = x - tf.constant(CAFFE_MEAN_BGR, dtype=tf.float32)
    x = tf.pad(x, [[0, 0], [0, padded_h - new_h], [0, padded_w - new_w], [0, 0]])
    return x, scale


def detection_function(
    model: Any,
    min_side: float,
    max_side: float,
    image_size: Sequence[int] | None = None,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
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
    import keras
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

    def detect(images: Any) -> dict[str, Any]:
        x, scale = network_input(images, min_side, max_side, image_size, pad_multiple)
        boxes, scores, labels = model(x, training=False)
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
        boxes = tf.where(found[..., None], boxes, -tf.ones_like(boxes))
        return {
            "boxes": boxes,
            "scores": scores,
            "labels": labels,
            "num_detections": tf.reduce_sum(tf.cast(found, tf.int32), axis=1),
        }

    return detect


# --------------------------------------------------------------------------- artifacts


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        format: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        path: the file (TFLite, ONNX) or folder (SavedModel) written.
        size_bytes: bytes on disk (all files of a SavedModel).
        image_size: the fixed ``(H, W)`` input size, or None for any size.
        notes: remarks for the user (ops that needed TensorFlow kernels, fallbacks).
        flex_ops: TensorFlow ops a TFLite model runs through the Flex delegate (empty when it
            uses TFLite builtins only).
    """

    format: str
    path: str
    size_bytes: int
    image_size: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    flex_ops: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One or more lines for the command line."""
        size = f"{self.size_bytes / 2**20:.1f} MB"
        input_size = "any size" if self.image_size is None else "x".join(map(str, self.image_size))
        lines = [f"wrote {self.format} to {self.path} ({size}, input {input_size})"]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _disk_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _export_metadata(detector: LoadedDetector, image_size: Sequence[int] | None) -> dict:
    """The snapshot's metadata plus what a caller of the artifact needs to know."""
    filter_layer = detector.model.get_layer("filtered_detections").get_config()
    record = dict(detector.metadata)
    record.update(
        {
            "model": "inference",
            "input": "uint8 RGB (B, H, W, 3)",
            "image_min_side": detector.min_side,
            "image_max_side": detector.max_side,
            "image_size": None if image_size is None else [int(s) for s in image_size],
            "filter_detections": {
                k: filter_layer[k]
                for k in (
                    "nms",
                    "class_specific_filter",
                    "nms_threshold",
                    "score_threshold",
                    "max_detections",
                )
            },
        }
    )
    return record


def _write_saved_model(
    detector: LoadedDetector,
    path: str,
    image_size: Sequence[int] | None,
    batch_size: int | None = None,
) -> None:
    """SavedModel with the ``serving_default`` signature, metadata in ``assets.extra``."""
    import keras

    function = detection_function(detector.model, detector.min_side, detector.max_side, image_size)
    # ExportArchive rather than a tf.Module holding the Keras model: it saves just the
    # variables the endpoint reads, as plain tf.Variables that the TFLite converter freezes
    # into constants (with the model as a tf.Module attribute, the converter kept them as
    # resource variables and the TFLite model read uninitialised memory). Not track()ing the
    # model keeps it from saving every variable a second time.
    archive = keras.export.ExportArchive()
    archive.add_endpoint(
        SIGNATURE_KEY, function, input_signature=[input_spec(image_size, batch_size)]
    )
    archive.write_out(path, verbose=False)
    # assets.extra is the SavedModel folder for files TensorFlow itself does not read.
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(_export_metadata(detector, image_size), f, indent=1, sort_keys=True)


def _replace_path(temporary: str, path: str) -> None:
    """Move ``temporary`` over ``path`` (file or folder), so a failed export leaves no half
    artifact behind."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    os.replace(temporary, path)


def export_saved_model(
    model: Any,
    path: str,
    image_size: Sequence[int] | None = None,
    min_side: float | None = None,
    max_side: float | None = None,
    metadata: dict | None = None,
) -> ExportResult:
    """Write a SavedModel whose ``serving_default`` signature is the whole detector.

    Run it with ``tf.saved_model.load(path).signatures["serving_default"](images=...)``;
    ``images`` are uint8 RGB ``(B, H, W, 3)``. The snapshot's metadata (class names, sizes,
    filter settings) is written to ``assets.extra/keras_retinanet.json``.

    Args:
        model: snapshot path or inference ``keras.Model``.
        path: output folder (replaced if it exists).
        image_size: fixed ``(H, W)`` input size, or None for any size.
        min_side, max_side: resize sizes (default: the snapshot's training sizes).
        metadata: metadata of an in-memory model.

    Returns:
        An :class:`ExportResult`.
    """
    detector = load_detector(model, min_side, max_side, metadata)
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        _write_saved_model(detector, temporary, image_size)
        _replace_path(temporary, path)
    finally:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary)
    return ExportResult(
        "saved_model",
        path,
        _disk_size(path),
        None if image_size is None else tuple(int(s) for s in image_size),
    )


def tflite_ops(model_content: bytes) -> list[str]:
    """Names of the operators a TFLite flatbuffer uses (Flex ops start with ``Flex``)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=model_content)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def export_tflite(
    model: Any,
    path: str,
    image_size: Sequence[int],
    fp16: bool = False,
    min_side: float | None = None,
    max_side: float | None = None,
    metadata: dict | None = None,
    allow_flex: bool = True,
) -> ExportResult:
    """Write a TFLite model with a fixed input ``(1, H, W, 3)`` uint8 RGB.

    Converted from a fixed-size SavedModel (see :func:`export_saved_model`). TFLite builtin
    ops are tried first; if the converter rejects an op, the conversion is retried with
    TensorFlow ops (``SELECT_TF_OPS``, the Flex delegate that ``tf.lite.Interpreter`` from the
    ``tensorflow`` package includes), and the ops that needed it are listed in the result.

    Args:
        model: snapshot path or inference ``keras.Model``.
        path: output ``.tflite`` file.
        image_size: ``(H, W)`` of the input images (TFLite runs fixed shapes).
        fp16: store weights as float16 (half the size; computed in float32 on CPU).
        min_side, max_side: resize sizes (default: the snapshot's training sizes).
        metadata: metadata of an in-memory model.
        allow_flex: fall back to TensorFlow ops when builtins are not enough; False raises.

    Returns:
        An :class:`ExportResult` with ``flex_ops`` and notes.

    Raises:
        ValueError: no ``image_size``.
        RuntimeError: the conversion failed (the converter's message is included).
    """
    import tensorflow as tf

    if image_size is None:
        raise ValueError(
            "TFLite runs fixed input shapes: pass the size of the images you will feed, "
            "e.g. --image-size 480 640"
        )
    image_size = (int(image_size[0]), int(image_size[1]))
    detector = load_detector(model, min_side, max_side, metadata)
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        saved = os.path.join(scratch, "saved_model")
        _write_saved_model(detector, saved, image_size, batch_size=1)

        def convert(ops: list[Any]) -> bytes:
            converter = tf.lite.TFLiteConverter.from_saved_model(
                saved, signature_keys=[SIGNATURE_KEY]
            )
            converter.target_spec.supported_ops = ops
            if fp16:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            return converter.convert()

        try:
            content = convert([tf.lite.OpsSet.TFLITE_BUILTINS])
        except Exception as builtin_error:  # the converter raises ConverterError and others
            if not allow_flex:
                raise RuntimeError(
                    f"TFLite builtins cannot express the graph: {builtin_error}"
                ) from builtin_error
            try:
                content = convert([tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])
            except Exception as error:
                raise RuntimeError(f"TFLite conversion failed: {error}") from error
    flex_ops = [op for op in tflite_ops(content) if op.startswith("Flex")]
    if flex_ops:
        notes.append(
            f"ops run as TensorFlow kernels (Flex delegate): {', '.join(flex_ops)}; "
            "tf.lite.Interpreter includes it, the standalone LiteRT runtime needs the Flex "
            "delegate library"
        )
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as f:
        f.write(content)
    os.replace(temporary, path)
    return ExportResult("tflite", path, len(content), image_size, notes, flex_ops)


class OnnxExportError(RuntimeError):
    """The ONNX converter is missing or could not convert the graph; the message says why."""


def export_onnx(
    model: Any,
    path: str,
    image_size: Sequence[int] | None = None,
    min_side: float | None = None,
    max_side: float | None = None,
    metadata: dict | None = None,
    opset: int = DEFAULT_ONNX_OPSET,
) -> ExportResult:
    """Write an ONNX model of the whole detector, NMS included, with ``tf2onnx``.

    Input ``images`` uint8 RGB ``(B, H, W, 3)`` (H, W fixed with ``image_size``); outputs
    ``boxes``, ``scores``, ``labels``, ``num_detections`` as described in the module
    docstring. The snapshot's metadata is stored as the model's ``keras_retinanet``
    metadata property.

    Args:
        model: snapshot path or inference ``keras.Model``.
        path: output ``.onnx`` file.
        image_size: fixed ``(H, W)`` input size, or None for any size.
        min_side, max_side: resize sizes (default: the snapshot's training sizes).
        metadata: metadata of an in-memory model.
        opset: ONNX opset.

    Returns:
        An :class:`ExportResult`.

    Raises:
        OnnxExportError: ``tf2onnx``/``onnx`` are not installed, or the conversion failed
            (the message names the ops tf2onnx could not convert).
    """
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise OnnxExportError(
            f"ONNX export needs tf2onnx and onnx ({error}); install them with "
            "`pip install tf2onnx onnx` (onnxruntime to run the result)"
        ) from error
    import tensorflow as tf

    detector = load_detector(model, min_side, max_side, metadata)
    spec = [input_spec(image_size)]
    function = tf.function(
        detection_function(detector.model, detector.min_side, detector.max_side, image_size),
        input_signature=spec,
    )
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    except Exception as error:
        raise OnnxExportError(f"tf2onnx could not convert the detector: {error}") from error
    unsupported = _onnx_unconverted_ops(proto)
    if unsupported:
        raise OnnxExportError(
            "tf2onnx left TensorFlow ops it could not convert in the graph: "
            f"{', '.join(unsupported)}; onnxruntime cannot run them"
        )
    entry = proto.metadata_props.add()
    entry.key = models.METADATA_KEY
    entry.value = json.dumps(_export_metadata(detector, image_size), sort_keys=True)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    onnx.save_model(proto, temporary)
    os.replace(temporary, path)
    return ExportResult(
        "onnx",
        path,
        os.path.getsize(path),
        None if image_size is None else tuple(int(s) for s in image_size),
        [f"opset {opset}, tf2onnx {tf2onnx.__version__}"],
    )


def _onnx_unconverted_ops(proto: Any) -> list[str]:
    """Op types outside the standard ONNX domains (tf2onnx keeps unconvertible TF ops)."""
    standard = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
    ops: set[str] = set()

    def visit(graph: Any) -> None:
        for node in graph.node:
            if node.domain not in standard:
                ops.add(f"{node.domain}.{node.op_type}")
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.node:
                    visit(attribute.g)
                for subgraph in attribute.graphs:
                    visit(subgraph)

    visit(proto.graph)
    return sorted(ops)


# --------------------------------------------------------------------------- dispatch


def export_model(
    model: Any,
    output: str,
    format: str,
    image_size: Sequence[int] | None = None,
    fp16: bool = False,
    min_side: float | None = None,
    max_side: float | None = None,
) -> ExportResult:
    """Export a snapshot to ``format`` (one of :data:`FORMATS`); see the ``export_*`` functions.

    Raises:
        ValueError: unknown format, ``fp16`` outside TFLite, or TFLite without ``image_size``.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if fp16 and format != "tflite":
        raise ValueError("--fp16 applies to TFLite only")
    if format == "saved_model":
        return export_saved_model(model, output, image_size, min_side, max_side)
    if format == "tflite":
        return export_tflite(model, output, image_size, fp16, min_side, max_side)
    return export_onnx(model, output, image_size, min_side, max_side)
