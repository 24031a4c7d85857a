"""TFLite export: a fixed-size SavedModel converted with builtins, or Flex ops if needed."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_retinanet.export.calibration import DEFAULT_CALIBRATION_IMAGES
from keras_retinanet.export.calibration import calibration_images as calibration_batches
from keras_retinanet.export.common import (
    INPUT_NAME,
    SIGNATURE_KEY,
    ExportResult,
    _export_metadata,
    load_detector,
)
from keras_retinanet.export.saved_model import _write_saved_model
from keras_retinanet.model import layers as layers_lib
from keras_retinanet.model.layers import FilterDetections
from keras_retinanet.model.saving import METADATA_KEY


def tflite_metadata(content: bytes) -> dict:
    """The package's metadata record embedded in a TFLite flatbuffer (``{}`` if none)."""
    # TensorFlow only here: TFLite is its format
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_KEY:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode("utf-8"))
    return {}


def with_tflite_metadata(content: bytes, metadata: dict) -> bytes:
    """``content`` with ``metadata`` embedded as a named metadata buffer (TFLite's own place for
    it; interpreters ignore entries they do not know)."""
    # TensorFlow only here: TFLite is its format
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils  # (both TensorFlow's own)

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_ops(model_content: bytes) -> list[str]:
    """Names of the operators a TFLite flatbuffer uses (Flex ops start with ``Flex``)."""
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=model_content)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def int8_convolutions(model_content: bytes) -> tuple[int, int]:
    """``(int8, all)``: how many CONV_2D / DEPTHWISE_CONV_2D ops of a TFLite flatbuffer take
    int8 inputs, and how many there are."""
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=model_content)
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    convs = [
        op
        for op in interpreter._get_ops_details()
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
    ]
    quantised = sum(dtypes.get(int(op["inputs"][0])) == np.int8 for op in convs)
    return int(quantised), len(convs)


def _float_layer_names(model: Any) -> tuple[str, tuple[str, ...]]:
    """``(model name, names of its layers that stay float)``: everything after the heads'
    last convolutions (sigmoid, anchors, box decoding, clipping, NMS)."""

    post = (
        layers_lib.Anchors,
        layers_lib.RegressBoxes,
        layers_lib.ClipBoxes,
        layers_lib.FilterDetections,
    )
    names = [layer.name for layer in model.layers if isinstance(layer, post)]
    return model.name, (*names, "anchors", "_sigmoid")


def _quantise_network(calibrated: bytes, float_layers: tuple[str, tuple[str, ...]]) -> bytes:
    """Quantise the ops of the network (backbone, FPN, heads) of a calibrated TFLite model.

    Ops are told apart by their output tensor names, which carry the Keras layer path
    (``retinanet_box_1/conv1_conv/...``): the resize and normalisation before the model and
    the float layers after its heads stay float, so the scores and pixel boxes keep their
    float precision and only the convolution stack runs in int8.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    # TensorFlow only here: the package imports and runs on JAX without it
    from tensorflow.lite.python import convert as lite_convert

    model_name, post = float_layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    denied = set()
    for op in interpreter._get_ops_details():
        for output in op["outputs"]:
            name = names.get(int(output), "")
            in_model = name.startswith(model_name)
            if not in_model or any(f"/{layer}" in name for layer in post):
                denied.add(name)
    return lite_convert.mlir_quantize(calibrated, denylisted_nodes=sorted(denied))


def with_tensorflow_nms(model: Any) -> Any:
    """``model`` (sharing its layers and weights) with FilterDetections running TensorFlow's
    NMS op instead of the tiled NMS loop: TFLite's int8 calibrator crashes on the loop
    (:func:`keras_retinanet.model.nms.tensorflow_nms_mask`)."""

    def clone(layer: Any) -> Any:
        if isinstance(layer, FilterDetections):
            config = dict(layer.get_config(), nms_implementation="tensorflow")
            return FilterDetections.from_config(config)
        return layer

    swapped = keras.models.clone_model(model, clone_function=clone)
    swapped.variant = getattr(model, "variant", None)
    return swapped


def export_tflite(
    model: Any,
    path: str,
    image_size: Sequence[int],
    fp16: bool = False,
    min_side: float | None = None,
    max_side: float | None = None,
    metadata: dict | None = None,
    allow_flex: bool = True,
    int8: bool = False,
    calibration: str | Sequence[Any] | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
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
        int8: quantise weights and activations to int8 (static, per-channel weights),
            calibrated on ``calibration``. Only the convolution stack (backbone, FPN, heads)
            is quantised; the resize in front and the sigmoid, box decoding, clipping and NMS
            after it stay float, so scores and pixel boxes keep float precision. Input and
            outputs are those of the float artifact. About a quarter of the size.
            Its NMS is TensorFlow's op (a TFLite builtin) instead of the float artifact's
            loop, which TFLite's calibrator cannot run; both keep the same boxes.
        calibration: for ``int8``: a Pascal VOC folder or folder of images of the user's
            data (:func:`keras_retinanet.export.calibration.calibration_paths`), or uint8 BGR
            images.
        calibration_images: how many images of a ``calibration`` folder to use.

    Returns:
        An :class:`ExportResult` with ``flex_ops`` and notes.

    Raises:
        ValueError: no ``image_size``; ``int8`` without ``calibration``, or with ``fp16``.
        FileNotFoundError: the calibration folder is missing or holds no image.
        RuntimeError: the conversion failed (the converter's message is included).
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    if image_size is None:
        raise ValueError(
            "TFLite runs fixed input shapes: pass the size of the images you will feed, "
            "e.g. --image-size 480 640"
        )
    image_size = (int(image_size[0]), int(image_size[1]))
    if int8 and (calibration is None or fp16):
        raise ValueError(
            "int8 needs calibration images (--calibration DATASET: a folder of the training "
            "images) and excludes fp16"
        )
    batches = calibration_batches(calibration, image_size, calibration_images) if int8 else []
    detector = load_detector(model, min_side, max_side, metadata)
    if int8:
        detector = dataclasses.replace(detector, model=with_tensorflow_nms(detector.model))
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
            if int8:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ({INPUT_NAME: b} for b in batches)
                converter._experimental_calibrate_only = True  # ranges now, quantise below
                return _quantise_network(converter.convert(), _float_layer_names(detector.model))
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
    if int8:
        quantised, total = int8_convolutions(content)
        notes.append(
            f"int8: {quantised} of {total} convolutions run in int8, calibrated on "
            f"{len(batches)} images; box decoding and NMS run in float"
        )
    if flex_ops:
        notes.append(
            f"ops run as TensorFlow kernels (Flex delegate): {', '.join(flex_ops)}; "
            "tf.lite.Interpreter includes it, the standalone LiteRT runtime needs the Flex "
            "delegate library"
        )
    # The metadata rides inside the flatbuffer, where retinanet-evaluate/-predict read it.
    content = with_tflite_metadata(content, _export_metadata(detector, image_size))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as f:
        f.write(content)
    os.replace(temporary, path)
    return ExportResult("tflite", path, len(content), image_size, notes, flex_ops)
