"""What an evaluation returns: :class:`EvaluationResult` (the mAP, each class's
:class:`ClassResult`, the detections kept per image) and the metric names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_retinanet.inference import Detections

# voc07: VOC2007 11-point AP; voc12: VOC2010+ all-point AP; coco: COCOeval AP@[.5:.95].
METRICS = ("voc07", "voc12", "coco")


@dataclass
class ClassResult:
    """Pascal VOC result of one class.

    Attributes:
        label: class index.
        name: class name.
        average_precision: AP at the evaluation IoU threshold (0.0 when the class has no
            ground truth: undefined, and left out of the mean).
        num_annotations: non-difficult ground-truth boxes of the class.
        num_detections: detections of the class over the data set.
        recall: ``(P,)`` float64, recall after each ranked detection that counts.
        precision: ``(P,)`` float64, precision at the same points.
        scores: ``(P,)`` score of the detection at each point (non-increasing).
    """

    label: int
    name: str
    average_precision: float
    num_annotations: int
    num_detections: int
    recall: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


@dataclass
class EvaluationResult:
    """What :func:`evaluate` found.

    Attributes:
        classes: one :class:`ClassResult` per class, by label.
        mean_average_precision: the headline number: for ``voc07``/``voc12`` the mean AP of the
            classes with at least one non-difficult box; for ``coco`` COCOeval's AP
            (IoU 0.5:0.95).
        inference_time: mean seconds per image spent in the model's ``predict_on_batch``
            (batch time divided by batch size). The first call, which compiles the graph, is
            left out when there are others; the first call of another padded input shape
            is counted.
        metric: one of :data:`METRICS`.
        iou_threshold: IoU threshold of the VOC matching.
        score_threshold: detections at or below this score were dropped.
        max_detections: at most this many detections were kept per image.
        image_min_side: resize target of the shorter image side.
        image_max_side: bound on the longer image side.
        image_indices: generator indices of the evaluated images (unreadable images skipped
            with ``skip_bad_images`` are left out).
        image_sizes: ``(height, width)`` of each evaluated image.
        detections: per evaluated image, :class:`~keras_retinanet.inference.Detections` in
            original image pixels, sorted by descending score.
        annotations: per evaluated image, the generator's ground truth in original pixels
            (``{"bboxes": (M, 4), "labels": (M,), "difficult": (M,)}``) after its box
            filtering.
        first_batch_time: seconds of the first model call (graph compilation included).
        coco_metrics: ``{name: value}`` from
            :func:`keras_retinanet.evaluation.coco.evaluate_coco` for the ``coco`` metric,
            else None.
    """

    classes: list[ClassResult]
    mean_average_precision: float
    inference_time: float
    metric: str
    iou_threshold: float
    score_threshold: float
    max_detections: int
    image_min_side: float
    image_max_side: float
    image_indices: list[int] = field(repr=False)
    image_sizes: list[tuple[int, int]] = field(repr=False)
    detections: list[Detections] = field(repr=False)
    annotations: list[dict[str, np.ndarray]] = field(repr=False)
    first_batch_time: float = 0.0
    coco_metrics: dict[str, float] | None = None

    @property
    def average_precisions(self) -> dict[int, tuple[float, int]]:
        """``{label: (ap, num_annotations)}``, as
        :func:`keras_retinanet.evaluation.voc.evaluate_detections` returns it."""
        return {c.label: (c.average_precision, c.num_annotations) for c in self.classes}

    @property
    def class_names(self) -> list[str]:
        """Class names by label."""
        return [c.name for c in self.classes]

    @property
    def num_images(self) -> int:
        """Number of evaluated images."""
        return len(self.image_indices)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no curves, no per-image detections)."""
        return {
            "metric": self.metric,
            "mAP": self.mean_average_precision,
            "mean_inference_time_s": self.inference_time,
            "first_batch_time_s": self.first_batch_time,
            "num_images": self.num_images,
            "settings": {
                "iou_threshold": self.iou_threshold,
                "score_threshold": self.score_threshold,
                "max_detections": self.max_detections,
                "image_min_side": self.image_min_side,
                "image_max_side": self.image_max_side,
            },
            "classes": [
                {
                    "label": c.label,
                    "name": c.name,
                    "num_annotations": c.num_annotations,
                    "num_detections": c.num_detections,
                    # AP is undefined without ground truth: null rather than a misleading 0.
                    "ap": c.average_precision if c.num_annotations > 0 else None,
                }
                for c in self.classes
            ],
            "coco": self.coco_metrics,
        }
