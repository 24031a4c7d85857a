"""ONNX export with ``tf2onnx``, NMS included; the metadata is a model property."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from keras_retinanet import models
from keras_retinanet.export.common import (
    DEFAULT_ONNX_OPSET,
    ExportResult,
    _export_metadata,
    load_detector,
)
from keras_retinanet.export.graph import detection_function, input_spec


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
