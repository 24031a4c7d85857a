"""Evaluating a RetinaNet model on a data set: :func:`evaluate` and its result.

:func:`evaluate` runs an inference model over every image of a generator (batches padded by
:func:`keras_retinanet.inference.prepare_batch`, boxes rescaled to original pixels by
:func:`keras_retinanet.inference.detect`), scores the detections with the Pascal VOC protocol
of :mod:`keras_retinanet.evaluation.voc` (and optionally COCOeval through
:mod:`keras_retinanet.evaluation.coco`) and returns an :class:`EvaluationResult` that keeps the
per-image detections, so reports (:mod:`keras_retinanet.evaluation.reports`) need no second
pass of the model.

The metric maths is NumPy (:mod:`keras_retinanet.evaluation.voc`).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_retinanet.evaluation.inputs import (
    _dataset_description,
    check_num_classes,
    model_num_classes,
)
from keras_retinanet.evaluation.results import METRICS, ClassResult, EvaluationResult
from keras_retinanet.evaluation.voc import (
    average_precision,
    mean_average_precision,
    precision_recall,
)
from keras_retinanet.inference import DEFAULT_TILE_OVERLAP, Detections, batched, detect, tiled
from keras_retinanet.model.image_sizes import predict_sized
from keras_retinanet.model.retinanet import as_inference_model
from keras_retinanet.model.settings import DetectionSettings, settings_of_model
from keras_retinanet.preprocessing.image import ImageReadError

__all__ = ["METRICS", "ClassResult", "EvaluationResult", "evaluate"]


class _TimedModel:
    """Forwards ``predict_on_batch`` and ``predict_sized``, recording each call's seconds and
    batch size."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.variant = getattr(model, "variant", None)  # the resize rule detect() applies
        # What detect() reads to check a threshold against the graph's.
        self.layers = getattr(model, "layers", [])
        self.detection_settings = getattr(model, "detection_settings", None)
        self.calls: list[tuple[float, int]] = []

    def predict_on_batch(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._timed(lambda: self.model.predict_on_batch(batch), len(batch))

    def predict_sized(self, batch: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
        return self._timed(lambda: predict_sized(self.model, batch, sizes), len(batch))

    def _timed(self, predict: Any, images: int) -> list[np.ndarray]:
        start = time.perf_counter()
        # np.asarray waits for the result: JAX dispatches asynchronously.
        outputs = [np.asarray(output) for output in predict()]
        self.calls.append((time.perf_counter() - start, images))
        return outputs

    def seconds_per_image(self) -> float:
        """Mean seconds per image, leaving out the first (compiling) call if there are more."""
        calls = self.calls[1:] if len(self.calls) > 1 else self.calls
        images = sum(n for _, n in calls)
        return sum(seconds for seconds, _ in calls) / images if images else 0.0


def _top_detections(detections: Detections, max_detections: int) -> Detections:
    order = np.argsort(-detections.scores, kind="stable")[:max_detections]
    return Detections(
        boxes=detections.boxes[order],
        scores=detections.scores[order],
        labels=detections.labels[order],
    )


def _per_class_detections(detections: Detections, num_classes: int) -> list[np.ndarray]:
    """``[(D_c, 5) float64 [x1, y1, x2, y2, score] for c in range(K)]``."""
    rows = np.concatenate(
        [detections.boxes.astype(np.float64), detections.scores[:, None].astype(np.float64)],
        axis=1,
    )
    return [rows[detections.labels == c] for c in range(num_classes)]


def _per_class_annotations(
    annotations: dict[str, np.ndarray], num_classes: int
) -> list[dict[str, np.ndarray]]:
    """``[{"bboxes": (G_c, 4), "difficult": (G_c,)} for c in range(K)]``."""
    boxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(annotations["labels"]).reshape(-1)
    difficult = np.asarray(
        annotations.get("difficult", np.zeros(len(labels), dtype=bool)), dtype=bool
    ).reshape(-1)
    return [
        {"bboxes": boxes[labels == c], "difficult": difficult[labels == c]}
        for c in range(num_classes)
    ]


def _with(annotations: dict[str, np.ndarray], more: dict[str, np.ndarray]) -> dict:
    """Two annotation records of one image as one."""
    return {
        key: np.concatenate([np.asarray(annotations[key]), np.asarray(more[key])])
        for key in ("bboxes", "labels", "difficult")
    }


def _load_image(generator: Any, index: int) -> np.ndarray | None:
    """The original image, or None for an unreadable one when the generator skips them."""
    if not getattr(generator, "skip_bad_images", False):
        return generator.load_image(index)

    try:
        return generator.load_image(index)
    except ImageReadError as error:
        warnings.warn(f"evaluation skips an unreadable image: {error}", stacklevel=3)
        return None


def evaluate(
    generator: Any,
    model: Any,
    score_threshold: float | None = None,
    max_detections: int = 100,  # per image; also COCO's maxDets for AP
    iou_threshold: float = 0.5,  # Pascal VOC (Everingham et al. 2010, sec. 4.4)
    metric: str = "voc07",
    batch_size: int = 1,
    anchor_parameters: Any = None,
    image_min_side: float | None = None,
    image_max_side: float | None = None,
    class_names: Sequence[str] | None = None,
    verbose: int = 1,
    settings: DetectionSettings | None = None,
    tile: Sequence[int] | None = None,
    tile_overlap: float = DEFAULT_TILE_OVERLAP,
    tile_whole: bool = False,
) -> EvaluationResult:
    """Run a model over every image of a generator and score its detections.

    Images are read at their original size with ``generator.load_image`` (in index order),
    resized and padded in batches of ``batch_size`` (to a multiple of 32, as in training),
    and the detections are rescaled to the original pixels. Each image keeps its
    ``max_detections`` best detections above ``score_threshold``. Ground truth is
    ``generator.load_annotations`` after the generator's own box filtering (the boxes
    training sees, before resizing).

    Args:
        generator: a :class:`keras_retinanet.preprocessing.generator.Generator` (any object
            with ``size``, ``num_classes``, ``load_image``, ``load_annotations`` and
            ``filter_annotations``).
        model: an inference model from ``retinanet_box`` (``predict_on_batch`` of a
            ``(B, H, W, 3)`` float32 batch returns ``boxes (B, D, 4)``, ``scores (B, D)``,
            ``labels (B, D)`` padded with -1), a training model, converted here, or an
            exported artifact (:class:`keras_retinanet.export.runtime.Artifact`: its
            ``detect_images`` resizes as its graph does).
        score_threshold: keep detections scoring strictly above this; None: the settings'
            (0.05 by default, Lin et al. 2017, sec. 5.1).
        max_detections: detections kept per image (COCO's maxDets).
        iou_threshold: a detection matches a box when their IoU is at least this (``>=``, as the
            VOC devkit).
        metric: ``"voc07"`` (11-point AP), ``"voc12"`` (all-point AP) or ``"coco"``
            (per-class all-point AP at ``iou_threshold`` plus COCOeval; the headline is
            COCO's AP at IoU 0.5:0.95).
        batch_size: images per model call.
        anchor_parameters: anchors of a training model to convert; by default the
            generator's ``anchor_parameters``.
        image_min_side: resize target of the shorter side; by default the generator's.
        image_max_side: bound on the longer side; by default the generator's.
        class_names: names by label for the results; by default ``generator.classes``.
        verbose: 1 for a progress bar, 0 for none.
        settings: the detection settings; None: the model's own, else the defaults.
        tile: ``(height, width)``: detect each image tile by tile (large photos, see
            :mod:`keras_retinanet.inference`); None: whole images.
        tile_overlap: share of a tile side that neighbouring tiles share.
        tile_whole: with ``tile``, also detect on each whole image (the large objects).

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        ValueError: an unknown metric, a bad threshold, or a model whose number of classes
            differs from the generator's.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if max_detections < 1:
        raise ValueError(f"max_detections must be at least 1, got {max_detections}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 0.0 < iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")

    num_classes = generator.num_classes()
    names = list(class_names) if class_names is not None else list(generator.classes)
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} class names for a dataset of {num_classes} classes: {names}"
        )
    if anchor_parameters is None:
        anchor_parameters = getattr(generator, "anchor_parameters", None)
    settings = (settings or settings_of_model(model) or DetectionSettings()).with_options(
        score_threshold=score_threshold
    )
    # AP integrates over every score: a model's per-class thresholds (from an earlier report)
    # would cut each class's curve short.
    settings = settings.replace(class_score_thresholds=None)
    score_threshold = settings.score_threshold
    model = as_inference_model(
        model, settings, anchor_parameters, variant=getattr(generator, "variant", None)
    )
    check_num_classes(model_num_classes(model), generator, getattr(model, "name", "the model"))
    min_side = image_min_side if image_min_side is not None else generator.image_min_side
    max_side = image_max_side if image_max_side is not None else generator.image_max_side

    timed = _TimedModel(model)
    image_indices: list[int] = []
    image_sizes: list[tuple[int, int]] = []
    all_detections: list[Detections] = []
    all_annotations: list[dict[str, np.ndarray]] = []
    progress = None
    if verbose:
        progress = keras.utils.Progbar(generator.size(), unit_name="image")
    done = 0
    for indices in batched(range(generator.size()), batch_size):
        images, kept = [], []
        for index in indices:
            image = _load_image(generator, index)
            if image is not None:
                images.append(image)
                kept.append(index)
        if images and hasattr(model, "detect_images"):  # an exported artifact runs its graph
            start = time.perf_counter()
            artifact = functools.partial(
                model.detect_images, score_threshold=settings.score_threshold, per_class=False
            )
            run = tiled(artifact, tile, tile_overlap, tile_whole, settings.nms_threshold)
            batch_detections = run(images)
            timed.calls.append((time.perf_counter() - start, len(images)))
        elif images:
            batch_detections = detect(
                timed, images, min_side=min_side, max_side=max_side, settings=settings,
                tile=tile, tile_overlap=tile_overlap, tile_whole=tile_whole,
            )  # fmt: skip
        if images:
            for index, image, detections in zip(kept, images, batch_detections):
                annotations = generator.load_annotations(index)
                if hasattr(generator, "crowd_annotations"):
                    # COCO's crowd regions, as difficult boxes: the per-class table ignores a
                    # detection whose best match is one (at IoU >= the threshold) instead of
                    # counting it false. COCOeval's rule is close, not the same: it matches a
                    # crowd by the share of the detection inside it, after the other boxes.
                    annotations = _with(annotations, generator.crowd_annotations(index))
                ground_truth = generator.filter_annotations(image, annotations, index)
                image_indices.append(index)
                image_sizes.append((int(image.shape[0]), int(image.shape[1])))
                all_detections.append(_top_detections(detections, max_detections))
                all_annotations.append(ground_truth)
        done += len(indices)
        if progress is not None:
            progress.update(done)

    if not image_indices:
        raise ValueError(f"no image could be evaluated in {_dataset_description(generator)}")

    detections_by_class = [_per_class_detections(d, num_classes) for d in all_detections]
    annotations_by_class = [_per_class_annotations(a, num_classes) for a in all_annotations]
    use_07_metric = metric == "voc07"
    classes = []
    for label in range(num_classes):
        recall, precision, num_annotations, scores = precision_recall(
            detections_by_class, annotations_by_class, label, iou_threshold, return_scores=True
        )
        ap = (
            average_precision(recall, precision, use_07_metric=use_07_metric)
            if num_annotations > 0
            else 0.0
        )
        classes.append(
            ClassResult(
                label=label,
                name=str(names[label]),
                average_precision=float(ap),
                num_annotations=int(num_annotations),
                num_detections=int(sum(len(d[label]) for d in detections_by_class)),
                recall=recall,
                precision=precision,
                scores=scores,
            )
        )

    coco_metrics = None
    if metric == "coco":
        # pycocotools (the optional [coco] extra) loads only for the COCO metric
        from keras_retinanet.evaluation import coco

        if hasattr(generator, "coco_image_id"):  # a COCO file: its own ids, crowds and areas
            coco_metrics = coco.evaluate_on_dataset(generator, image_indices, all_detections)
        else:
            coco_metrics = coco.evaluate_coco(
                detections_by_class, annotations_by_class, image_sizes, names
            )
        headline = coco_metrics["AP"]
    else:
        headline = mean_average_precision(
            {c.label: (c.average_precision, c.num_annotations) for c in classes}
        )

    return EvaluationResult(
        classes=classes,
        mean_average_precision=float(headline),
        inference_time=timed.seconds_per_image(),
        metric=metric,
        iou_threshold=float(iou_threshold),
        score_threshold=float(score_threshold),
        max_detections=int(max_detections),
        image_min_side=min_side,
        image_max_side=max_side,
        image_indices=image_indices,
        image_sizes=image_sizes,
        detections=all_detections,
        annotations=all_annotations,
        first_batch_time=timed.calls[0][0],
        coco_metrics=coco_metrics,
    )
