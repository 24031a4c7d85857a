"""Anchor coverage: which ground-truth boxes the anchors fit, as training sees them.

The work behind ``retinanet-debug``, the tool to reach for when mAP stays at 0 or small
objects are missed. Each image goes through the generator's own pipeline (augmentation when
asked, resizing), the anchors of its padded input shape are laid out, and the training
targets are computed with :func:`keras_retinanet.model.targets.anchor_targets_bbox`. Then:

* a box is **covered** when at least one anchor centred in the image overlaps it with IoU
  ``>= positive_overlap`` (0.5): it is taught from anchors that fit it;
* a box is **uncovered** otherwise. Training still makes its best anchor positive (a
  "low-quality match", IoU < 0.5), but the regression has to stretch that anchor far and the
  classifier sees a single example, so such objects are learned badly or not at all. Many
  uncovered boxes mean the anchor sizes or ratios (``--config``) or the image size
  (``--image-min-side``) do not suit the data.

Difficult boxes get no positive anchor by design and are left out of the statistics.
This module holds the per-image part (:func:`image_coverage`, :func:`draw_coverage`);
:mod:`keras_retinanet.debug` sums it over a dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from keras_retinanet.model.anchors import POSITIVE, AnchorParameters
from keras_retinanet.model.anchors import anchors_for_shape as anchor_grid
from keras_retinanet.model.boxes import compute_overlap
from keras_retinanet.model.targets import anchor_targets_bbox
from keras_retinanet.preprocessing.image import ImageReadError
from keras_retinanet.visualization import (
    draw_annotations,
    draw_box,
    draw_caption,
    label_color,
)

UNCOVERED_COLOR = (0, 0, 255)  # BGR red


def _is_reddish(color: tuple[int, int, int]) -> bool:
    blue, green, red = color
    return red >= 128 and green < 100 and blue < 100


# Anchor colours: the class palette without its reds, which would look like uncovered boxes.
_ANCHOR_COLORS = tuple(
    label_color(label) for label in range(80) if not _is_reddish(label_color(label))
)


def anchor_color(label: int) -> tuple[int, int, int]:
    """BGR colour of the positive anchors of a class (never red, which marks uncovered boxes)."""
    return _ANCHOR_COLORS[int(label) % len(_ANCHOR_COLORS)]


@dataclass
class ImageCoverage:
    """Anchor coverage of one image after the training transforms.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR image as the network sees it (augmented, resized,
            before mean subtraction and padding).
        annotations: its ground truth in the same pixels (``"bboxes"`` ``(M, 4)``,
            ``"labels"`` ``(M,)``, ``"difficult"`` ``(M,)``).
        positive_anchors: ``(P, 4)`` float32 anchors that are positive in the training
            targets, ``(x1, y1, x2, y2)`` in the same pixels.
        positive_labels: ``(P,)`` int class of each positive anchor.
        best_iou: ``(M,)`` float IoU of each box with its best anchor centred in the image.
        covered: ``(M,)`` bool, ``best_iou >= positive_overlap``; False for difficult boxes.
    """

    image: np.ndarray
    annotations: dict[str, np.ndarray]
    positive_anchors: np.ndarray
    positive_labels: np.ndarray
    best_iou: np.ndarray
    covered: np.ndarray

    @property
    def counted(self) -> np.ndarray:
        """``(M,)`` bool: the boxes the statistics count (not difficult)."""
        difficult = self.annotations.get("difficult")
        if difficult is None:
            return np.ones(len(self.covered), dtype=bool)
        return ~np.asarray(difficult, dtype=bool).reshape(-1)

    @property
    def uncovered(self) -> np.ndarray:
        """``(M,)`` bool: counted boxes without an anchor of IoU >= ``positive_overlap``."""
        return self.counted & ~self.covered


def image_coverage(
    image: np.ndarray,
    annotations: dict[str, np.ndarray],
    num_classes: int,
    anchor_parameters: AnchorParameters | None = None,
    padded_shape: Sequence[int] | None = None,
    negative_overlap: float = 0.4,
    positive_overlap: float = 0.5,
    rule: str = "centred",
) -> ImageCoverage:
    """Anchor coverage of one (already resized) image.

    Args:
        image: ``(H, W, 3)`` image as fed to the network (before padding).
        annotations: ``{"bboxes": (M, 4), "labels": (M,)[, "difficult": (M,)]}`` in the
            image's pixels.
        num_classes: K.
        anchor_parameters: the anchors; defaults to ``AnchorParameters()``.
        padded_shape: ``(H, W)`` of the padded network input the anchors are laid out on;
            the image's own shape if None.
        negative_overlap: passed to :func:`~keras_retinanet.model.targets.anchor_targets_bbox`.
        positive_overlap: IoU a box needs with some anchor to count as covered (and the
            training threshold for positives).
        rule: the model variant's anchor rule (see
            :func:`keras_retinanet.model.anchors.anchors_for_shape`).

    Returns:
        An :class:`ImageCoverage`.
    """
    height, width = image.shape[:2]
    shape = tuple(padded_shape) if padded_shape is not None else (height, width)
    anchors = anchor_grid(shape, anchor_parameters, rule)
    regression, labels = anchor_targets_bbox(
        anchors,
        [image],
        [annotations],
        num_classes,
        negative_overlap=negative_overlap,
        positive_overlap=positive_overlap,
    )
    positive = regression[0, :, 4] == POSITIVE
    positive_labels = labels[0, positive, :num_classes].argmax(axis=1)

    bboxes = np.asarray(annotations["bboxes"], dtype=np.float32).reshape(-1, 4)
    difficult = np.asarray(
        annotations.get("difficult", np.zeros(len(bboxes), dtype=bool)), dtype=bool
    ).reshape(-1)
    # Anchors centred in the padding are ignored by training, so they cover nothing.
    centre_x = (anchors[:, 0] + anchors[:, 2]) / 2
    centre_y = (anchors[:, 1] + anchors[:, 3]) / 2
    inside = (centre_x < width) & (centre_y < height)
    if len(bboxes):
        best_iou = compute_overlap(anchors[inside], bboxes).max(axis=0, initial=0.0)
    else:
        best_iou = np.zeros((0,), dtype=np.float64)
    covered = (best_iou >= positive_overlap) & ~difficult
    return ImageCoverage(
        image=image,
        annotations=annotations,
        positive_anchors=anchors[positive],
        positive_labels=positive_labels,
        best_iou=best_iou,
        covered=covered,
    )


def draw_coverage(
    coverage: ImageCoverage,
    class_names: Sequence[str] | None = None,
    draw_anchors: bool = True,
    draw_ground_truth: bool = True,
) -> np.ndarray:
    """Picture of an image's positive anchors, ground truth and uncovered boxes.

    Positive anchors are thin outlines in their class colour (:func:`anchor_color`), ground
    truth is green (dashed when difficult) with its class name, and boxes without an anchor
    of IoU >= 0.5 are drawn over in thick red with the caption ``"<name>: no anchor"``.

    Args:
        coverage: from :func:`image_coverage`.
        class_names: names by label for the captions; label numbers if None.
        draw_anchors: draw the positive anchors.
        draw_ground_truth: draw the ground-truth boxes.

    Returns:
        A new ``(H, W, 3)`` uint8 BGR image.
    """
    picture = np.ascontiguousarray(coverage.image, dtype=np.uint8).copy()

    def name(label: int) -> str:
        label = int(label)
        return class_names[label] if class_names and 0 <= label < len(class_names) else str(label)

    if draw_anchors:
        for anchor, label in zip(coverage.positive_anchors, coverage.positive_labels):
            draw_box(picture, anchor, anchor_color(label), thickness=1)
    if draw_ground_truth:
        draw_annotations(picture, coverage.annotations, label_to_name=name)
    bboxes = np.asarray(coverage.annotations["bboxes"]).reshape(-1, 4)
    labels = np.asarray(coverage.annotations["labels"]).reshape(-1)
    uncovered = np.flatnonzero(coverage.uncovered)
    for index in uncovered:
        draw_box(picture, bboxes[index], UNCOVERED_COLOR, thickness=3)
    for index in uncovered:
        draw_caption(picture, bboxes[index], f"{name(labels[index])}: no anchor", UNCOVERED_COLOR)
    return picture


def preprocessed_images(
    generator: Any, count: int, progress: bool, description: str, skipped: list[str]
) -> Iterator[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    """``(path, image, annotations)`` of the generator's first ``count`` images, each through
    its own pipeline (transform, resizing), with a progress bar; the paths of unreadable
    images go to ``skipped`` (with a warning)."""
    indices: Any = range(count)
    if progress:
        indices = tqdm(indices, unit="image", desc=description)
    for index in indices:
        path = generator.image_path(index)
        try:
            images, annotations, _ = generator.preprocess_group([index])
        except ImageReadError as e:
            warnings.warn(f"skipping {path}: {e}", stacklevel=3)
            skipped.append(path)
            continue
        if not images:  # skipped by the generator (skip_bad_images), which warned
            skipped.append(path)
            continue
        yield path, images[0], annotations[0]
