"""Running an exported artifact as the package's tools run a snapshot.

``retinanet-evaluate`` and ``retinanet-predict`` take a SavedModel folder, a ``.tflite`` or an
``.onnx`` file (float or int8) where they take a snapshot, so a user measures the mAP of the
file they ship. :func:`load_artifact` reads the artifact's metadata (class names, sizes and
detection settings, written at export) and returns an :class:`Artifact`, whose
:meth:`Artifact.detect_images` gives :class:`~keras_retinanet.inference.Detections` in each
photo's pixels, as :func:`keras_retinanet.inference.detect` does for a Keras model.

Each runtime is imported when its format is used: TensorFlow for SavedModel and TFLite,
onnxruntime for ONNX.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from keras_retinanet.export.common import INPUT_NAME, METADATA_FILE, SIGNATURE_KEY
from keras_retinanet.export.tflite import tflite_metadata
from keras_retinanet.inference import Detections
from keras_retinanet.model.saving import METADATA_KEY
from keras_retinanet.model.settings import DetectionSettings, check_threshold


def artifact_format(path: str | os.PathLike) -> str | None:
    """``"saved_model"``, ``"tflite"`` or ``"onnx"`` for an exported artifact, else None."""
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    if path.lower().endswith(".tflite"):
        return "tflite"
    if path.lower().endswith(".onnx"):
        return "onnx"
    return None


class Artifact:
    """An exported detector, run on photos.

    Attributes:
        path: the artifact.
        format: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        metadata: what the export recorded (``classes``, ``num_classes``, ``image_min_side``,
            ``image_size``, ``detection_settings`` ...).
        image_size: ``(H, W)`` of a fixed-size artifact, else None.
        detection_settings: the settings its graph applies (the score threshold asked of it
            must not be lower).
    """

    def __init__(self, path: str, format: str, metadata: dict, run: Any) -> None:
        self.path = path
        self.format = format
        self.metadata = metadata
        size = metadata.get("image_size")
        self.image_size = tuple(int(s) for s in size) if size else None
        # Artifacts exported before the settings object recorded "filter_detections".
        recorded = metadata.get("detection_settings") or metadata.get("filter_detections")
        self.detection_settings = DetectionSettings.from_dict(recorded)
        self.name = os.path.basename(os.path.normpath(path))
        self._run = run

    @property
    def num_classes(self) -> int | None:
        classes = self.metadata.get("classes")
        return self.metadata.get("num_classes") or (len(classes) if classes else None)

    def detect_images(
        self,
        images: Sequence[np.ndarray],
        score_threshold: float | None = None,
        per_class: bool = True,
    ) -> list[Detections]:
        """Detections of BGR uint8 photos of any size, in each photo's pixels.

        A fixed-size artifact gets each photo resized to its input size (``cv2.INTER_AREA``),
        and its boxes are scaled back per axis; any other takes the photo as it is.

        ``per_class`` applies the per-class thresholds the artifact records (its detection
        settings' ``class_score_thresholds``); evaluation turns them off.

        Raises:
            ThresholdError: ``score_threshold`` below the one the artifact's graph applies.
        """
        threshold = self.detection_settings.score_threshold
        settings = self.detection_settings
        if not per_class:
            settings = settings.replace(class_score_thresholds=None)
        if score_threshold is not None:
            check_threshold(score_threshold, threshold, self.path)
            threshold = score_threshold
        results = []
        for image in images:
            rgb = np.ascontiguousarray(image[..., ::-1])
            height, width = image.shape[:2]
            scale = np.ones(4, np.float32)
            if self.image_size is not None:
                size_h, size_w = self.image_size
                rgb = cv2.resize(rgb, (size_w, size_h), interpolation=cv2.INTER_AREA)
                scale = np.array([width / size_w, height / size_h] * 2, np.float32)
            outputs = self._run(rgb[None])
            count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
            boxes = np.asarray(outputs["boxes"], np.float32)[0][:count] * scale
            scores = np.asarray(outputs["scores"], np.float32)[0][:count]
            labels = np.asarray(outputs["labels"]).astype(np.int32)[0][:count]
            keep = settings.keep(scores, labels, threshold)
            results.append(Detections(boxes[keep], scores[keep], labels[keep]))
        return results


def _saved_model_runner(path: str) -> tuple[dict, Any]:
    # TensorFlow only here: SavedModel is its format
    import tensorflow as tf

    with open(os.path.join(path, "assets.extra", METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f)
    serve = tf.saved_model.load(path).signatures[SIGNATURE_KEY]

    def run(batch: np.ndarray) -> dict:
        return {k: v.numpy() for k, v in serve(**{INPUT_NAME: tf.constant(batch)}).items()}

    return metadata, run


def _tflite_runner(path: str) -> tuple[dict, Any]:
    # TensorFlow only here: TFLite is its format
    import tensorflow as tf

    with open(path, "rb") as f:
        content = f.read()
    interpreter = tf.lite.Interpreter(model_content=content)
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)

    def run(batch: np.ndarray) -> dict:
        return runner(**{INPUT_NAME: batch})

    return tflite_metadata(content), run


def _onnx_runner(path: str) -> tuple[dict, Any]:
    # optional ([export] extra): only ONNX artifacts need onnxruntime
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    record = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    names = [output.name for output in session.get_outputs()]

    def run(batch: np.ndarray) -> dict:
        return dict(zip(names, session.run(None, {INPUT_NAME: batch})))

    return json.loads(record) if record else {}, run


def load_artifact(path: str | os.PathLike) -> Artifact:
    """The exported artifact at ``path``, ready to detect.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not an artifact, or it records no class names (it was not
            written by ``retinanet-export``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"artifact not found: {path}")
    kind = artifact_format(path)
    runners = {"saved_model": _saved_model_runner, "tflite": _tflite_runner, "onnx": _onnx_runner}
    if kind is None:
        raise ValueError(f"{path} is not an exported artifact (SavedModel, .tflite or .onnx)")
    try:
        metadata, run = runners[kind](path)
    except ImportError as error:
        raise ValueError(
            f"{path} is a {kind} artifact, and running it needs {error.name or 'its runtime'}, "
            "which is not installed (onnxruntime: pip install onnxruntime; SavedModel and "
            "TFLite: TensorFlow)"
        ) from error
    except Exception as error:  # noqa: BLE001  (each runtime raises its own types)
        raise ValueError(
            f"{path} could not be opened as a {kind} artifact ({type(error).__name__}: {error}); "
            "is it complete? Export it again with retinanet-export"
        ) from error
    if not metadata:
        raise ValueError(
            f"{path} has no keras_retinanet metadata: it was not written by retinanet-export "
            "(or by a version before artifacts carried it); export it again"
        )
    return Artifact(path, kind, metadata, run)
