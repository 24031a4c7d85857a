"""Turning snapshots into deployable detectors: inference ``.keras`` models, SavedModel, TFLite
and ONNX.

* :mod:`~keras_retinanet.export.inference_model`: :func:`convert_model`, a training snapshot -> an
  inference model file (anchors, box decoding and NMS in the graph).
* :mod:`~keras_retinanet.export.common`: names and defaults, :func:`load_detector` (the model
  and its resize sizes), the artifact metadata and :class:`ExportResult`.
* :mod:`~keras_retinanet.export.graph`: the detector as TensorFlow ops on uint8 RGB images
  (resize, normalise, pad, model, rescale, clip), shared by the three formats.
* :mod:`~keras_retinanet.export.calibration`: the images that fix an int8 artifact's ranges.
* :mod:`~keras_retinanet.export.saved_model`, :mod:`~keras_retinanet.export.tflite`,
  :mod:`~keras_retinanet.export.onnx`: one module per format.

:func:`export_model` dispatches on the format name; the artifacts need neither this package
nor Keras to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras_retinanet.export.calibration import (
    DEFAULT_CALIBRATION_IMAGES,
    calibration_images,
    calibration_paths,
)
from keras_retinanet.export.common import (
    DEFAULT_MAX_SIDE,
    DEFAULT_MIN_SIDE,
    DEFAULT_ONNX_OPSET,
    FORMATS,
    INPUT_NAME,
    METADATA_FILE,
    OUTPUT_NAMES,
    SIGNATURE_KEY,
    ExportResult,
    LoadedDetector,
    load_detector,
)
from keras_retinanet.export.graph import detection_function, input_spec, network_input
from keras_retinanet.export.inference_model import convert_model
from keras_retinanet.export.onnx import OnnxExportError, export_onnx
from keras_retinanet.export.saved_model import export_saved_model
from keras_retinanet.export.tflite import export_tflite, int8_convolutions, tflite_ops
from keras_retinanet.model.precision import choose_precision, with_precision

__all__ = [
    "DEFAULT_CALIBRATION_IMAGES",
    "calibration_images",
    "calibration_paths",
    "int8_convolutions",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_MIN_SIDE",
    "DEFAULT_ONNX_OPSET",
    "FORMATS",
    "INPUT_NAME",
    "METADATA_FILE",
    "OUTPUT_NAMES",
    "SIGNATURE_KEY",
    "ExportResult",
    "LoadedDetector",
    "OnnxExportError",
    "convert_model",
    "detection_function",
    "export_model",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "input_spec",
    "load_detector",
    "network_input",
    "tflite_ops",
]


def export_model(
    model: Any,
    output: str,
    format: str,
    image_size: Sequence[int] | None = None,
    fp16: bool = False,
    min_side: float | None = None,
    max_side: float | None = None,
    int8: bool = False,
    calibration: Any = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    precision: str = "float32",
) -> ExportResult:
    """Export a snapshot to ``format`` (one of :data:`FORMATS`); see the ``export_*`` functions.

    ``precision="bfloat16"`` (SavedModel only: TFLite has no bfloat16 kernels and onnxruntime's
    CPU provider no bfloat16 convolutions) exports the network in bfloat16, decoding and NMS in
    float32 (:func:`keras_retinanet.model.precision.with_precision`); on a CPU without bfloat16
    instructions it warns and exports float32.

    Raises:
        ValueError: unknown format, ``fp16`` outside TFLite, ``int8`` for a SavedModel or
            without ``calibration``, TFLite without ``image_size``, or bfloat16 outside
            SavedModel.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if fp16 and format != "tflite":
        raise ValueError("--fp16 applies to TFLite only")
    if int8 and format == "saved_model":
        raise ValueError("int8 applies to TFLite and ONNX")
    quantise = dict(int8=int8, calibration=calibration, calibration_images=calibration_images)
    if precision != "float32" and format != "saved_model":
        raise ValueError(f"--precision {precision} applies to --format saved_model only")
    if format == "saved_model":
        if choose_precision(precision) != "float32":
            detector = load_detector(model, min_side, max_side)
            metadata = dict(detector.metadata, precision=precision)
            bfloat16 = with_precision(detector.model, precision)
            return export_saved_model(
                bfloat16, output, image_size, detector.min_side, detector.max_side, metadata
            )
        return export_saved_model(model, output, image_size, min_side, max_side)
    if format == "tflite":
        return export_tflite(model, output, image_size, fp16, min_side, max_side, **quantise)
    return export_onnx(model, output, image_size, min_side, max_side, **quantise)
