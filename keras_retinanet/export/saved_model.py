"""SavedModel export: the whole detector as a ``serving_default`` signature."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import keras

from keras_retinanet.export.common import (
    METADATA_FILE,
    SIGNATURE_KEY,
    ExportResult,
    LoadedDetector,
    _disk_size,
    _export_metadata,
    _replace_path,
    load_detector,
)
from keras_retinanet.export.graph import detection_function, input_spec


def _write_saved_model(
    detector: LoadedDetector,
    path: str,
    image_size: Sequence[int] | None,
    batch_size: int | None = None,
) -> None:
    """SavedModel with the ``serving_default`` signature, metadata in ``assets.extra``."""

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
