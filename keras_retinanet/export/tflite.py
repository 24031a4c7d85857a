"""TFLite export: a fixed-size SavedModel converted with builtins, or Flex ops if needed."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

from keras_retinanet.export.common import SIGNATURE_KEY, ExportResult, load_detector
from keras_retinanet.export.saved_model import _write_saved_model


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
