"""ONNX export with ``tf2onnx``, NMS included; the metadata is a model property."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from keras_retinanet.export.calibration import DEFAULT_CALIBRATION_IMAGES
from keras_retinanet.export.calibration import calibration_images as calibration_batches
from keras_retinanet.export.common import (
    DEFAULT_ONNX_OPSET,
    INPUT_NAME,
    ExportResult,
    _export_metadata,
    load_detector,
)
from keras_retinanet.export.graph import detection_function, input_spec
from keras_retinanet.model import retinanet as models


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
    int8: bool = False,
    calibration: str | Sequence[Any] | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
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
        int8: quantise the convolutions with onnxruntime's static quantisation (QDQ format,
            uint8 activations, per-channel int8 weights in 7 bits: AVX2 CPUs without VNNI
            saturate the 16-bit sums of full 8-bit products), calibrated on
            ``calibration``; box decoding and NMS stay float. Needs ``onnxruntime``.
        calibration, calibration_images: as for
            :func:`keras_retinanet.export.tflite.export_tflite`.

    Returns:
        An :class:`ExportResult`.

    Raises:
        OnnxExportError: ``tf2onnx``/``onnx`` are not installed, or the conversion failed
            (the message names the ops tf2onnx could not convert).
    """
    if int8 and calibration is None:
        raise ValueError("int8 needs calibration images: --calibration DATASET")
    try:
        # optional ([export] extra): only the ONNX export needs it
        import onnx

        # optional ([export] extra): only the ONNX export needs it
        import tf2onnx

        if int8:
            import onnxruntime.quantization  # noqa: F401
    except ImportError as error:
        raise OnnxExportError(
            f"ONNX export needs tf2onnx and onnx, and int8 also onnxruntime ({error}); "
            "install them with `pip install tf2onnx onnx onnxruntime`"
        ) from error
    # TensorFlow only here: the package imports and runs on JAX without it
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
    notes = [f"opset {opset}, tf2onnx {tf2onnx.__version__}"]
    if int8:
        batches = calibration_batches(calibration, image_size, calibration_images)
        proto = _quantise(proto, batches)
        convs = [n for n in _all_nodes(proto.graph) if n.op_type == "Conv"]
        notes.append(
            f"int8: {len(convs)} convolutions with int8 weights, calibrated on "
            f"{len(batches)} images; box decoding and NMS run in float"
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
        notes,
    )


def _quantise(proto: Any, batches: list[Any]) -> Any:
    """``proto`` with its convolutions statically quantised to int8 by onnxruntime."""
    # optional ([export] extra): only the ONNX export needs it
    import onnx

    # optional ([export] extra): only the int8 ONNX export needs it
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="retinanet-int8-") as scratch:
        source, target = (os.path.join(scratch, n) for n in ("fp32.onnx", "int8.onnx"))
        onnx.save_model(proto, source)
        quantize_static(
            source,
            target,
            Reader(),
            # QDQ: QOperator (QLinearConv) measured 0.89x the latency but lost every
            # detection of a trained model (VOC mAP 0.50 -> 0.00) on onnxruntime 1.32.
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],  # the network; decoding and NMS stay float
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return onnx.load_model(target)


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                nodes.extend(_all_nodes(attribute.g))
    return nodes


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
