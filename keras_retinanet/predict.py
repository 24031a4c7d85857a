"""Run a trained detector on image files: draw the detections and write them to JSON.

The work behind ``retinanet-predict``. Inputs may be image files, folders (their image files,
not recursive) and glob patterns (``**`` recurses). Images are read in order, batched,
resized and padded by :func:`keras_retinanet.inference.detect`, and each one is written with
its detections drawn to ``<output_dir>/<stem>.jpg`` (``.png`` for PNG inputs). One
``detections.json`` holds every image's detections in original pixels::

    {
      "model": "snapshots/resnet50_voc_10.keras",
      "score_threshold": 0.5,
      "classes": ["aeroplane", ...],
      "images": [
        {"path": "photos/dog.jpg", "output": "out/dog.jpg", "width": 500, "height": 375,
         "detections": [{"box": [x1, y1, x2, y2], "score": 0.93, "label": 11,
                         "class": "dog"}, ...]},
        ...
      ],
      "skipped": ["photos/broken.jpg"],
      "errors": {"photos/broken.jpg": "cannot read image photos/broken.jpg: ..."}
    }

Boxes are ``(x1, y1, x2, y2)`` floats in the original image's 0-based pixels (``x2 - x1`` is
the width), clipped to the image. An unreadable image is reported with a warning, listed
under ``"skipped"`` and left out; the other images go on.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from keras_retinanet.class_names import class_name, load_class_names  # noqa: F401  (re-exported)
from keras_retinanet.evaluation.thresholds import threshold_settings
from keras_retinanet.export.runtime import artifact_format, load_artifact
from keras_retinanet.inference import DEFAULT_TILE_OVERLAP, Detections, batched, detect, tiled
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.settings import DetectionSettings, settings_of_model
from keras_retinanet.preprocessing.image import (  # noqa: F401  (IMAGE_EXTENSIONS re-exported)
    IMAGE_EXTENSIONS,
    ImageReadError,
    collect_images,
    read_image_bgr,
)
from keras_retinanet.visualization import draw_detections

DETECTIONS_FILE = "detections.json"

# The defaults of training (detectron2 / torchvision); a snapshot's metadata overrides them.
DEFAULT_MIN_SIDE = 800
DEFAULT_MAX_SIDE = 1333


def detections_record(
    path: str, image_shape: Sequence[int], detections: Detections, class_names: Sequence[str] | None
) -> dict[str, Any]:
    """The JSON record of one image (see the module docstring), boxes in original pixels."""
    return {
        "path": path,
        "width": int(image_shape[1]),
        "height": int(image_shape[0]),
        "detections": [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "label": int(label),
                "class": class_name(label, class_names),
            }
            for box, score, label in zip(detections.boxes, detections.scores, detections.labels)
        ],
    }


def _output_name(path: str, used: set[str]) -> str:
    """``<stem>.jpg`` (``.png`` for PNG inputs), made unique among ``used``."""
    stem, extension = os.path.splitext(os.path.basename(path))
    extension = ".png" if extension.lower() == ".png" else ".jpg"
    name, counter = stem + extension, 1
    while name in used:  # photos/a.jpg and more/a.jpg must not overwrite each other
        name, counter = f"{stem}_{counter}{extension}", counter + 1
    used.add(name)
    return name


def _read_images(paths: Iterable[str], errors: dict[str, str]) -> list[tuple[str, np.ndarray]]:
    images = []
    for path in paths:
        try:
            images.append((path, read_image_bgr(path)))
        except ImageReadError as e:
            warnings.warn(f"skipping {path}: {e}", stacklevel=3)
            errors[path] = str(e)
    return images


@dataclass
class PredictionResult:
    """What :func:`predict_images` did.

    Attributes:
        records: one record per image read (see the module docstring).
        skipped: paths of the images that could not be read.
        errors: path -> error message, for the skipped images.
        json_path: the JSON file written, or None.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    json_path: str | None = None

    @property
    def num_detections(self) -> int:
        """Detections over all images."""
        return sum(len(r["detections"]) for r in self.records)

    def summary(self) -> str:
        """One line for the console."""
        text = f"{len(self.records)} image(s), {self.num_detections} detection(s)"
        if self.skipped:
            text += f", {len(self.skipped)} unreadable image(s) skipped: {', '.join(self.skipped)}"
        if self.json_path:
            text += f"; detections written to {self.json_path}"
        return text


def predict_images(
    model: Any,
    image_paths: Sequence[str],
    output_dir: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    score_threshold: float | None = None,
    image_min_side: float = DEFAULT_MIN_SIDE,
    image_max_side: float = DEFAULT_MAX_SIDE,
    batch_size: int = 1,
    draw: bool = True,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    tile: Sequence[int] | None = None,
    tile_overlap: float = DEFAULT_TILE_OVERLAP,
    tile_whole: bool = False,
) -> PredictionResult:
    """Detect objects in image files, draw them and write ``detections.json``.

    Args:
        model: an inference model (:func:`keras_retinanet.model.retinanet.retinanet_box`).
        image_paths: image files, in the order they are processed.
        output_dir: where the drawn images and ``detections.json`` go (created if needed);
            None writes nothing and only returns the records.
        class_names: names by label for captions and the JSON; None shows label numbers.
        score_threshold: keep detections scoring above this; None: the model's detection
            settings' ``display_threshold`` (0.5 by default).
        image_min_side: resize target of the shorter side (use the training value).
        image_max_side: bound on the longer side.
        batch_size: images per forward pass.
        draw: write the images with detections drawn (``output_dir`` must be set).
        progress: show a progress bar.
        metadata: extra top-level entries for the JSON (e.g. ``{"model": path}``).
        tile: ``(height, width)``: detect each photo tile by tile (large photos with small
            objects, see :mod:`keras_retinanet.inference`); None: whole photos.
        tile_overlap: share of a tile side that neighbouring tiles share.
        tile_whole: with ``tile``, also detect on the whole photo (the large objects).

    Returns:
        A :class:`PredictionResult`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if output_dir is not None:
        output_dir = os.fspath(output_dir)
        os.makedirs(output_dir, exist_ok=True)
    if score_threshold is None:
        score_threshold = (settings_of_model(model) or DetectionSettings()).display_threshold
    result = PredictionResult()
    used_names: set[str] = set()
    bar = None
    if progress:
        bar = tqdm(total=len(image_paths), unit="image", desc="predict")
    try:
        for paths in batched(image_paths, batch_size):
            images = _read_images(paths, result.errors)
            photos = [image for _, image in images]
            if not images:
                detections = []
            elif hasattr(model, "detect_images"):  # an exported artifact runs its own graph
                run = functools.partial(model.detect_images, score_threshold=score_threshold)
                nms = model.detection_settings.nms_threshold
                detections = tiled(run, tile, tile_overlap, tile_whole, nms, progress)(photos)
            else:
                detections = detect(
                    model,
                    photos,
                    min_side=image_min_side,
                    max_side=image_max_side,
                    score_threshold=score_threshold,
                    tile=tile,
                    tile_overlap=tile_overlap,
                    tile_whole=tile_whole,
                    progress=progress,
                )
            if images:
                for (path, image), image_detections in zip(images, detections):
                    record = detections_record(path, image.shape, image_detections, class_names)
                    if draw and output_dir is not None:
                        drawn = image.copy()
                        draw_detections(
                            drawn,
                            image_detections.boxes,
                            image_detections.scores,
                            image_detections.labels,
                            label_to_name=lambda label: class_name(label, class_names),
                            score_threshold=score_threshold,
                        )
                        output_path = os.path.join(output_dir, _output_name(path, used_names))
                        if not cv2.imwrite(output_path, drawn):
                            raise OSError(f"could not write {output_path}; is the folder writable?")
                        record["output"] = output_path
                    result.records.append(record)
            if bar is not None:
                bar.set_postfix(
                    detections=result.num_detections, skipped=len(result.errors), refresh=False
                )
                bar.update(len(paths))
    finally:
        if bar is not None:
            bar.close()
    result.skipped = [p for p in image_paths if p in result.errors]

    if output_dir is not None:
        document = dict(metadata or {})
        document.update(
            {
                "score_threshold": float(score_threshold),
                "class_score_thresholds": _class_thresholds(model, class_names),
                "image_min_side": image_min_side,
                "image_max_side": image_max_side,
                "tile": None
                if tile is None
                else {
                    "size": list(tile),
                    "overlap": tile_overlap,
                    "whole": tile_whole,
                },  # fmt: skip
                "classes": list(class_names) if class_names is not None else None,
                "images": result.records,
                "skipped": result.skipped,
                "errors": result.errors,
            }
        )
        json_path = os.path.join(output_dir, DETECTIONS_FILE)
        temporary = json_path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
        os.replace(temporary, json_path)
        result.json_path = json_path
    return result


def _class_thresholds(model: Any, class_names: Sequence[str] | None) -> dict | None:
    """The per-class thresholds a model applies, by class name (label where unnamed)."""
    settings = settings_of_model(model)
    values = settings.class_score_thresholds if settings is not None else None
    if not values:
        return None
    return {class_name(label, class_names): value for label, value in enumerate(values)}


def predict(
    model_path: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike = "predictions",
    score_threshold: float | str | None = None,
    image_min_side: float | None = None,
    image_max_side: float | None = None,
    batch_size: int = 1,
    classes_file: str | os.PathLike | None = None,
    nms_threshold: float | None = None,
    max_detections: int | None = None,
    draw: bool = True,
    progress: bool = True,
    precision: str = "float32",
    tile: Sequence[int] | None = None,
    tile_overlap: float = DEFAULT_TILE_OVERLAP,
    tile_whole: bool = False,
) -> PredictionResult:
    """Load a snapshot and run :func:`predict_images` on files, folders and glob patterns.

    Args:
        model_path: a ``.keras`` / ``.h5`` snapshot (training or inference model), or an
            exported artifact (SavedModel folder, ``.tflite``, ``.onnx``: its own resizing,
            thresholds and budgets apply; ``nms_threshold`` and ``max_detections`` do not).
        inputs: see :func:`collect_images`.
        output_dir: see :func:`predict_images`.
        score_threshold: keep detections scoring above this; ``"best:REPORT.json"``: each
            class's best-F1 threshold from a ``retinanet-evaluate`` report; None: the
            snapshot's per-class thresholds if it records some, else its detection settings'
            ``display_threshold`` (0.5 unless it records another).
        image_min_side: resize target; by default the snapshot's training value, else 800.
        image_max_side: bound on the longer side; by default the snapshot's, else 1333.
        batch_size: images per forward pass.
        classes_file: class names, one per line, when the snapshot has none.
        nms_threshold: IoU above which NMS suppresses a lower-scoring box; None: the
            snapshot's settings (an inference file's graph must already use it).
        max_detections: most detections per image; None: likewise.
        draw: write the drawn images.
        progress: show a progress bar.
        precision: ``"bfloat16"`` runs a snapshot's network in bfloat16 where the CPU has it
            (:func:`keras_retinanet.model.precision.with_precision`).
        tile, tile_overlap, tile_whole: tiled detection, see :func:`predict_images`.

    Returns:
        A :class:`PredictionResult`.

    Raises:
        FileNotFoundError: the snapshot, the classes file or an input does not exist.
    """
    model_path = os.fspath(model_path)
    image_paths = collect_images(inputs)  # before the slow model load: fail fast on typos
    artifact = load_artifact(model_path) if artifact_format(model_path) else None
    metadata = artifact.metadata if artifact else models.read_metadata(model_path)
    given = {"--precision": precision != "float32", "--nms-threshold": nms_threshold is not None,
             "--max-detections": max_detections is not None,
             "--image-min-side": image_min_side is not None,
             "--image-max-side": image_max_side is not None}  # fmt: skip
    if artifact and any(given.values()):
        options = ", ".join(k for k, v in given.items() if v)
        raise ValueError(
            f"{model_path} is an exported artifact: its graph fixes {options}; export its "
            "snapshot again to change them"
        )
    class_names = load_class_names(model_path, classes_file, metadata)
    num_classes = metadata.get("num_classes")
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        warnings.warn(
            f"{len(class_names)} class names for a model of {num_classes} classes "
            f"({model_path}); labels without a name are shown as numbers",
            stacklevel=2,
        )
    if image_min_side is None:
        image_min_side = metadata.get("image_min_side", DEFAULT_MIN_SIDE)
    if image_max_side is None:
        image_max_side = metadata.get("image_max_side", DEFAULT_MAX_SIDE)
    recorded = DetectionSettings.from_dict(metadata.get("detection_settings"))
    per_class = recorded.class_score_thresholds if score_threshold is None else None
    if isinstance(score_threshold, str):  # best:REPORT.json
        chosen = threshold_settings(score_threshold, class_names, num_classes)
        per_class = chosen["class_score_thresholds"]
    if per_class:
        score_threshold = min(per_class)
    elif score_threshold is None:
        score_threshold = recorded.display_threshold
    asked = {"nms_threshold": nms_threshold, "max_detections": max_detections}
    if score_threshold < recorded.score_threshold:  # a training model's graph must keep more
        asked["score_threshold"] = score_threshold
    asked = {k: v for k, v in asked.items() if v is not None}
    model = artifact or models.load_model(model_path, convert=True, precision=precision, **asked)
    if per_class:
        settings = settings_of_model(model) or recorded
        model.detection_settings = settings.replace(class_score_thresholds=tuple(per_class))
    return predict_images(
        model,
        image_paths,
        output_dir=output_dir,
        class_names=class_names,
        score_threshold=score_threshold,
        image_min_side=image_min_side,
        image_max_side=image_max_side,
        batch_size=batch_size,
        draw=draw,
        progress=progress,
        metadata={"model": model_path},
        tile=tile,
        tile_overlap=tile_overlap,
        tile_whole=tile_whole,
    )
