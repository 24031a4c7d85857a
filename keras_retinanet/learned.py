"""Has the model learned each class? Its scores and boxes at the anchors that teach the class.

The second half of the diagnosis behind ``retinanet-debug`` (``--scores``), for a class whose
AP stays at 0. Coverage (:mod:`keras_retinanet.coverage`) says whether any anchor fits the
class's boxes; this module says what a trained model does at those anchors. Each image goes
through the generator's pipeline (as training and coverage see it), the training targets give
every anchor's state and class, and the model's training outputs give its class probabilities
and box regression. Per class:

* **separation**: the chance that the class's score at one of its positive anchors, drawn at
  random, is above its score at a random other anchor (a negative, or a positive of another
  class; ignored anchors and those centred in the padding are left out). It is the area under
  the ROC curve of the class's score as a detector of its own anchors: 0.5 is chance, 1 a
  perfect ranking. It is computed from histograms of the logit in steps of 1/64 over
  [-16, 16] (ties within a step count half), so it costs no memory per anchor.
* **found**: the share of the class's boxes whose best-scored positive anchor regresses to a
  box of IoU >= 0.5 with it: the box the detector would report at that place.

A class with separation near 0.5 has not been learned: no threshold, NMS setting or anchor
change gives it AP, and the cure is more training (steps, examples, ImageNet weights). Since
an image has thousands of background anchors for each positive one, a class needs a
separation near 1 for a good AP: at 0.9 hundreds of background anchors per image still score
above its typical anchor. One that is separated but seldom found is learned and misplaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_retinanet.coverage import preprocessed_images
from keras_retinanet.model.anchors import POSITIVE, anchors_for_shape
from keras_retinanet.model.boxes import box_iou, compute_overlap, decode_boxes
from keras_retinanet.model.retinanet import is_inference_model

LOGIT_LIMIT = 16.0
BINS = 2048  # 1/64 of a logit each
# The verdict's tiers (ScoreReport.verdict), set from BCCD at 256-352 px, ResNet50 from random
# weights (benchmarks/README.md, issue #26): the platelets' separation was 0.66 after 200 steps
# (AP 0) and 0.88 after 800 (AP at most 0.05: background anchors still outrank most of them);
# the red cells' 0.985 went with AP 0.75, the white cells' 1.000 with AP 0.98.
NOT_LEARNED = 0.75
LEARNED = 0.95
FOUND_IOU = 0.5
SCORES_FILE = "scores.json"


def logit_bins(probabilities: np.ndarray) -> np.ndarray:
    """The histogram bin of each probability's logit (same shape, int): steps of
    ``2 * LOGIT_LIMIT / BINS``, values past the limits in the end bins."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    logits = np.clip(np.log(p) - np.log1p(-p), -LOGIT_LIMIT, LOGIT_LIMIT)
    return np.minimum(((logits + LOGIT_LIMIT) * (BINS / (2 * LOGIT_LIMIT))).astype(int), BINS - 1)


def logit_histogram(probabilities: np.ndarray) -> np.ndarray:
    """``(BINS,)`` int64 counts of the probabilities' logits (see :func:`logit_bins`)."""
    return np.bincount(logit_bins(probabilities).reshape(-1), minlength=BINS).astype(np.int64)


def separation(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The area under the ROC curve from two logit histograms: P(positive > negative), ties
    within a bin counted half. NaN without a positive or without a negative."""
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    total = positives.sum() * negatives.sum()
    if total == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    return float((positives * (below + 0.5 * negatives)).sum() / total)


def median_probability(histogram: np.ndarray) -> float:
    """The median of a logit histogram, as a probability (its bin's centre); NaN if empty."""
    histogram = np.asarray(histogram)
    count = histogram.sum()
    if count == 0:
        return float("nan")
    index = int(np.searchsorted(np.cumsum(histogram), (count + 1) / 2))
    logit = -LOGIT_LIMIT + (index + 0.5) * (2 * LOGIT_LIMIT / BINS)
    return float(1 / (1 + np.exp(-logit)))


@dataclass
class ScoreReport:
    """Per class: histograms of its score at its positive anchors and at the others, its
    boxes, and how many of them the best-scored positive anchor finds (IoU >= 0.5).

    Attributes:
        class_names: names by label.
        positives: ``(K, BINS)`` logit histograms of class k's score at its positive anchors.
        negatives: ``(K, BINS)`` the same at every other counted anchor.
        annotated: ``(K,)`` boxes in the images (difficult ones left out).
        boxes: ``(K,)`` boxes with at least one positive anchor.
        found: ``(K,)`` of those, boxes the best-scored positive anchor finds.
        images: images analysed.
        skipped: paths of images that could not be read.
    """

    class_names: list[str]
    positives: np.ndarray = field(init=False)
    negatives: np.ndarray = field(init=False)
    annotated: np.ndarray = field(init=False)
    boxes: np.ndarray = field(init=False)
    found: np.ndarray = field(init=False)
    images: int = 0
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = len(self.class_names)
        self.positives = np.zeros((k, BINS), np.int64)
        self.negatives = np.zeros((k, BINS), np.int64)
        self.annotated = np.zeros(k, np.int64)
        self.boxes = np.zeros(k, np.int64)
        self.found = np.zeros(k, np.int64)

    def add_image(
        self,
        anchors: np.ndarray,
        regression_targets: np.ndarray,
        classification_targets: np.ndarray,
        probabilities: np.ndarray,
        deltas: np.ndarray,
        image_shape: Sequence[int],
        annotations: dict[str, np.ndarray],
        box_coder: str = "corners",
    ) -> None:
        """Add one image: its ``(N, 4)`` anchors, the training targets (``(N, 5)`` and
        ``(N, K + 1)``, the last column the anchor state), the model's ``(N, K)``
        probabilities and ``(N, 4)`` regression, the image's ``(H, W)`` before padding and
        its ground truth in the same pixels (``"bboxes"``, ``"labels"``[, ``"difficult"``])."""
        height, width = int(image_shape[0]), int(image_shape[1])
        state = classification_targets[:, -1]
        labels = classification_targets[:, :-1]
        centre_x = (anchors[:, 0] + anchors[:, 2]) / 2
        centre_y = (anchors[:, 1] + anchors[:, 3]) / 2
        counted = (state != -1) & (centre_x < width) & (centre_y < height)
        positive = counted & (state == POSITIVE)
        bboxes = np.asarray(annotations["bboxes"], np.float64).reshape(-1, 4)
        box_labels = np.asarray(annotations["labels"]).reshape(-1)
        difficult = np.asarray(
            annotations.get("difficult", np.zeros(len(bboxes), bool)), bool
        ).reshape(-1)
        for k in range(len(self.class_names)):
            self.annotated[k] += int(np.sum((box_labels == k) & ~difficult))
        # The box each positive anchor learns: the one its decoded regression target matches.
        indices = np.flatnonzero(positive)
        targets = decode_boxes(anchors[indices], regression_targets[indices, :4], box_coder)
        predicted = decode_boxes(anchors[indices], deltas[indices], box_coder)
        ious = box_iou(predicted[:, None], targets[:, None])[:, 0, 0]  # row by row
        if len(indices) and len(bboxes):
            box_of = compute_overlap(targets.astype(np.float64), bboxes).argmax(axis=1)
        else:
            box_of = np.zeros(len(indices), int)
        bins = logit_bins(probabilities)
        for k in range(len(self.class_names)):
            mine = positive & (labels[:, k] == 1)
            self.positives[k] += np.bincount(bins[mine, k], minlength=BINS)
            self.negatives[k] += np.bincount(bins[counted & ~mine, k], minlength=BINS)
            in_class = np.flatnonzero(labels[indices, k] == 1)
            for box in np.unique(box_of[in_class]):
                rows = in_class[box_of[in_class] == box]
                best = rows[np.argmax(probabilities[indices[rows], k])]
                self.boxes[k] += 1
                self.found[k] += bool(ious[best] >= FOUND_IOU)
        self.images += 1

    def separation(self, label: int) -> float:
        return separation(self.positives[label], self.negatives[label])

    def found_share(self, label: int) -> float:
        count = self.annotated[label]
        return float(self.found[label] / count) if count else float("nan")

    def verdict(self, label: int) -> str:
        """What the figures of a class mean, in a few words."""
        if not self.annotated[label]:
            return "no boxes in these images"
        if not self.boxes[label]:
            return "no positive anchor: see the coverage (and --config, --image-min-side)"
        auc = self.separation(label)
        if auc < NOT_LEARNED:
            return (
                "not learned yet (0.5 is chance): no threshold or anchor change gives it AP; "
                "train longer, start from ImageNet weights or give it more examples"
            )
        if auc < LEARNED:
            return (
                "partly learned: background anchors still outrank many of its own, so its AP "
                "stays low; train longer"
            )
        if self.found_share(label) < 0.5:
            return "learned but misplaced: its best anchors' boxes miss; train longer"
        return "learned: if its AP is low, see retinanet-evaluate's per-class thresholds"

    def format(self) -> str:
        """The table printed by ``retinanet-debug --scores``."""
        lines = [
            f"scores of the model at the anchors, {self.images} images "
            "(separation: 0.5 is chance, 1 a perfect ranking of the class's anchors):",
            f"  {'class':<20} {'boxes':>6} {'separation':>10} {'median score':>12} "
            f"{'found':>6}  verdict",
        ]
        absent = []
        for k, name in enumerate(self.class_names):
            if not self.annotated[k]:
                absent.append(name)
                continue
            boxes = int(self.annotated[k])
            if not self.boxes[k]:
                lines.append(
                    f"  {name:<20} {boxes:>6} {'-':>10} {'-':>12} {0:>6.0%}  {self.verdict(k)}"
                )
                continue
            median = median_probability(self.positives[k])
            lines.append(
                f"  {name:<20} {boxes:>6} {self.separation(k):>10.3f} "
                f"{median:>12.4f} {self.found_share(k):>6.0%}  {self.verdict(k)}"
            )
        if absent:
            lines.append(f"  no boxes in these images: {', '.join(absent)}")
        if self.skipped:
            lines.append(f"  {len(self.skipped)} unreadable image(s) skipped")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures per class (``retinanet-debug --scores --output-dir``)."""

        def number(value: float) -> float | None:
            return None if np.isnan(value) else round(float(value), 6)

        return {
            "images": self.images,
            "skipped": list(self.skipped),
            "classes": {
                name: {
                    "annotated": int(self.annotated[k]),
                    "boxes": int(self.boxes[k]),
                    "found": int(self.found[k]),
                    "separation": number(self.separation(k)),
                    "median_positive_score": number(median_probability(self.positives[k])),
                    "verdict": self.verdict(k),
                }
                for k, name in enumerate(self.class_names)
            },
        }


def _outputs(model: Any, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outputs = model.predict_on_batch(inputs)
    if isinstance(outputs, dict):
        return np.asarray(outputs["regression"]), np.asarray(outputs["classification"])
    regression, classification = outputs[:2]
    return np.asarray(regression), np.asarray(classification)


def analyze_scores(
    model: Any,
    generator: Any,
    limit: int | None = None,
    progress: bool = True,
    output_dir: str | os.PathLike | None = None,
) -> ScoreReport:
    """Run a training model (the one ``retinanet-train`` saves) over a generator's images and
    sum its scores at the anchors per class (see the module docstring).

    Args:
        model: a training model (outputs: regression ``(B, N, 4)``, classification
            ``(B, N, K)``); built with the generator's anchors and model variant.
        generator: a :class:`keras_retinanet.preprocessing.generator.Generator`.
        limit: only the first ``limit`` images.
        progress: show a progress bar.
        output_dir: write :data:`SCORES_FILE` here.

    Raises:
        ValueError: an inference model, or a model whose classes or anchors do not match the
            data.
    """
    if is_inference_model(model):
        raise ValueError(
            "--scores needs the training model (the snapshot retinanet-train writes), not an "
            "inference model: it reads the raw scores at every anchor"
        )
    count = generator.size() if limit is None else min(int(limit), generator.size())
    report = ScoreReport(class_names=list(generator.classes))
    for _, image, image_annotations in preprocessed_images(
        generator, count, progress, "scores", report.skipped
    ):
        images, annotations = [image], [image_annotations]
        inputs = generator.compute_inputs(images)
        regression_targets, classification_targets = generator.compute_targets(images, annotations)
        deltas, probabilities = _outputs(model, inputs)
        if probabilities.shape[-1] != generator.num_classes():
            raise ValueError(
                f"the model has {probabilities.shape[-1]} classes and the data "
                f"{generator.num_classes()}; give the snapshot trained on this data"
            )
        anchors = anchors_for_shape(
            inputs.shape[1:3], generator.anchor_parameters, generator.variant.anchor_rule
        )
        if len(anchors) != probabilities.shape[1]:
            raise ValueError(
                f"the model gives {probabilities.shape[1]} anchors for a {inputs.shape[1]}x"
                f"{inputs.shape[2]} input and its anchor parameters {len(anchors)}; give the "
                "snapshot's own anchors (--snapshot, without --config)"
            )
        report.add_image(
            anchors,
            regression_targets[0],
            classification_targets[0],
            probabilities[0],
            deltas[0],
            images[0].shape[:2],
            annotations[0],
            generator.variant.box_coder,
        )
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, SCORES_FILE), "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=1)
    return report
