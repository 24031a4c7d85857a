"""What every export format shares: names and defaults, loading the detector and settling its
resize sizes, the metadata written beside an artifact, and :class:`ExportResult`."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from keras_retinanet.model import retinanet as models
from keras_retinanet.model.settings import DetectionSettings, settings_of_model

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
                "model with keras_retinanet.model.retinanet.retinanet_box"
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
    settings = settings_of_model(detector.model) or DetectionSettings()
    record = dict(detector.metadata)
    record.update(
        {
            "model": "inference",
            "input": "uint8 RGB (B, H, W, 3)",
            "image_min_side": detector.min_side,
            "image_max_side": detector.max_side,
            "image_size": None if image_size is None else [int(s) for s in image_size],
            "detection_settings": settings.to_dict(),
        }
    )
    return record


def _replace_path(temporary: str, path: str) -> None:
    """Move ``temporary`` over ``path`` (file or folder), so a failed export leaves no half
    artifact behind."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    os.replace(temporary, path)
