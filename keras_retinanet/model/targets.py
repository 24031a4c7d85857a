"""Anchor-to-ground-truth target assignment: which anchor learns which box, by a model
variant's matcher (:attr:`keras_retinanet.model.variants.ModelVariant.matcher`).

Every matcher starts from the same rule (Lin et al. 2017, sec. 4): an anchor is positive when
its IoU with its best box is at least 0.5, background below 0.4, and ignored in between. They
differ in what follows, each as its source computes it (``tests/test_training_equivalence.py``
compares them with the real code):

- ``"retinanet"`` (this package's own): each box's best anchor(s) are also made positive *for
  that box*, so no box, however thin, goes unlearned (torchvision gives such an anchor to its
  own best box instead, which can leave a box with none). An anchor that is the best of
  several boxes goes to the one it overlaps most, the lowest index on an exact tie, so the
  order of the annotations decides nothing. An anchor already positive keeps its box.
- ``"torchvision"``: ``Matcher(0.5, 0.4, allow_low_quality_matches=True)``: every anchor
  whose IoU with some box equals that box's highest is made positive for its *own* best box
  (the first of equal ones), ignored anchors included.
- ``"fizyr"``: no low-quality matches; ignored only strictly above 0.4; and anchors whose centre
  lies outside the image (in the batch's padding, or past its last pixel) are ignored.

Anchors over the padding of a batch are matched like any other under ``"retinanet"`` and
``"torchvision"``: those that overlap no box are negatives, so the model learns that the
padding holds no object (ignoring them let a trained model fire there, see
``benchmarks/bench_accuracy.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_retinanet.model.anchors import IGNORE, NEGATIVE, POSITIVE
from keras_retinanet.model.boxes import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    bbox_transform,
    bbox_transform_centre_size,
    compute_overlap,
)

MATCHERS = ("retinanet", "torchvision", "fizyr")


def match_anchors(
    overlaps: np.ndarray,
    matcher: str = "retinanet",
    negative_overlap: float = 0.4,  # bg < 0.4, fg >= 0.5, ignore between: Lin et al. 2017, sec. 4
    positive_overlap: float = 0.5,
    allow_low_quality_matches: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The box each anchor learns and its state, by one of :data:`MATCHERS`.

    Args:
        overlaps: ``(N, M)`` IoU of N anchors with M >= 1 boxes.
        matcher: see the module docstring.
        negative_overlap: IoU below which an anchor is background.
        positive_overlap: IoU at or above which an anchor is foreground.
        allow_low_quality_matches: False leaves the low-quality matches out of every matcher
            (``"fizyr"`` has none).

    Returns:
        ``(box_index, state)``: ``(N,)`` int64, the box of each anchor (its best, or the one a
        low-quality match gave it; meaningful where the state is positive), and ``(N,)``
        float32 states (:data:`~keras_retinanet.model.anchors.POSITIVE`, ``NEGATIVE``,
        ``IGNORE``).
    """
    if matcher not in MATCHERS:
        raise ValueError(f"unknown matcher {matcher!r}; choose one of {MATCHERS}")
    num_anchors = overlaps.shape[0]
    box_index = overlaps.argmax(axis=1)  # the first of equal maxima, as torch.max
    max_overlap = overlaps[np.arange(num_anchors), box_index]
    positive = max_overlap >= positive_overlap
    if matcher == "fizyr":
        ignore = (max_overlap > negative_overlap) & ~positive
    else:
        ignore = (max_overlap >= negative_overlap) & ~positive
    if matcher != "fizyr" and allow_low_quality_matches:
        best = overlaps.max(axis=0)  # (M,)
        # torchvision promotes ties with a box's best even when that best is 0; ours only
        # boxes some anchor overlaps.
        matchable = best > 0 if matcher == "retinanet" else np.ones_like(best, dtype=bool)
        # A tie with best[j] needs max_overlap >= best[j]: the rows that reach the smallest
        # best give the same pairs as all N, at a fraction of the cost.
        threshold = best[matchable].min() if matchable.any() else np.inf
        rows = np.flatnonzero(max_overlap >= threshold)
        row_idx, pair_box = np.nonzero((overlaps[rows] == best[None, :]) & matchable)
        pair_anchor = rows[row_idx]
        if matcher == "torchvision":
            promoted = np.unique(pair_anchor)  # keep their own best box
        else:
            keep = ~positive[pair_anchor]  # a positive anchor keeps its own box
            pair_anchor, pair_box = pair_anchor[keep], pair_box[keep]
            iou = overlaps[pair_anchor, pair_box]
            order = np.lexsort((pair_box, -iou, pair_anchor))
            pair_anchor, pair_box = pair_anchor[order], pair_box[order]
            first = np.ones(len(pair_anchor), dtype=bool)
            first[1:] = pair_anchor[1:] != pair_anchor[:-1]
            promoted = pair_anchor[first]
            box_index[promoted] = pair_box[first]
        positive[promoted] = True
        ignore[promoted] = False
    state = np.full(num_anchors, NEGATIVE, dtype=np.float32)
    state[ignore] = IGNORE
    state[positive] = POSITIVE
    return box_index, state


def centre_outside(anchors: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """``(N,)`` bool: anchors whose centre lies at or past the image's right or bottom edge
    (fizyr ignores them)."""
    centre_x = (anchors[:, 0] + anchors[:, 2]) / 2
    centre_y = (anchors[:, 1] + anchors[:, 3]) / 2
    return (centre_x >= image_shape[1]) | (centre_y >= image_shape[0])


def anchor_targets_bbox(
    anchors: np.ndarray,
    image_group: Sequence[Any],
    annotations_group: Sequence[dict],
    num_classes: int,
    negative_overlap: float = 0.4,  # bg < 0.4, fg >= 0.5, ignore between: Lin et al. 2017, sec. 4
    positive_overlap: float = 0.5,
    mean: Any = DEFAULT_MEAN,
    std: Any = DEFAULT_STD,
    coder: str = "corners",
    matcher: str = "retinanet",
    allow_low_quality_matches: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Regression and classification targets for a batch.

    Anchors are matched by :func:`match_anchors` (``matcher``). Boxes flagged ``difficult``
    are not assigned; anchors that overlap one by ``>= negative_overlap`` are ignored rather
    than used as negatives (the ``"fizyr"`` matcher treats them as any box, as fizyr's
    ``PascalVocGenerator(skip_difficult=False)`` trains them).

    Args:
        anchors: ``(N, 4)`` float anchors from
            :func:`~keras_retinanet.model.anchors.anchors_for_shape` for the padded batch.
        image_group: per image, the (unpadded) image or its shape ``(H, W[, C])``; the
            ``"fizyr"`` matcher ignores the anchors whose centre lies outside it.
        annotations_group: per image, ``{"bboxes": (M, 4) float, "labels": (M,) int}`` and
            optionally ``"difficult": (M,) bool``, boxes in the image's (resized) pixels.
        num_classes: K.
        negative_overlap: IoU below which an anchor is background.
        positive_overlap: IoU at or above which an anchor is foreground.
        mean: regression target mean, see :func:`keras_retinanet.model.boxes.bbox_transform`.
        std: regression target std.
        coder: the model variant's box coder: ``"corners"`` (:func:`bbox_transform` with
            ``mean``/``std``, every anchor, as fizyr) or ``"centre_size"``
            (:func:`keras_retinanet.model.boxes.bbox_transform_centre_size`, positives only: the
            log of a zero-size box is not a number).
        matcher: the model variant's matcher, one of :data:`MATCHERS`.
        allow_low_quality_matches: see :func:`match_anchors`.

    Returns:
        ``regression`` ``(B, N, 5)`` float32 (4 deltas, then the anchor state) and
        ``labels`` ``(B, N, K + 1)`` float32 (one-hot classes of positive anchors, then the
        anchor state); the state is -1 ignore, 0 negative, 1 positive.
    """
    if len(image_group) != len(annotations_group):
        raise ValueError(
            f"got {len(image_group)} images but {len(annotations_group)} annotation sets"
        )
    anchors = np.asarray(anchors, dtype=np.float32)
    batch_size, num_anchors = len(image_group), anchors.shape[0]
    regression = np.zeros((batch_size, num_anchors, 5), dtype=np.float32)
    labels = np.zeros((batch_size, num_anchors, num_classes + 1), dtype=np.float32)

    for index, image_annotations in enumerate(annotations_group):
        bboxes = np.asarray(image_annotations["bboxes"], dtype=np.float32).reshape(-1, 4)
        box_labels = np.asarray(image_annotations["labels"], dtype=np.int64).reshape(-1)
        difficult = np.asarray(
            image_annotations.get("difficult", np.zeros(len(bboxes), dtype=bool)), dtype=bool
        ).reshape(-1)
        if matcher == "fizyr":  # fizyr's generators train difficult boxes as any other
            difficult = np.zeros_like(difficult)
        if len(box_labels) and (box_labels.min() < 0 or box_labels.max() >= num_classes):
            raise ValueError(
                f"annotation labels must be in [0, {num_classes}), got {box_labels.tolist()}"
            )

        state = np.zeros(num_anchors, dtype=np.float32)  # all negative to start
        easy = ~difficult
        if easy.any():
            easy_boxes, easy_labels = bboxes[easy], box_labels[easy]
            box_index, state = match_anchors(
                compute_overlap(anchors, easy_boxes),
                matcher,
                negative_overlap,
                positive_overlap,
                allow_low_quality_matches,
            )
            positive = state == POSITIVE
            if coder == "centre_size":
                regression[index, positive, :4] = bbox_transform_centre_size(
                    anchors[positive], easy_boxes[box_index[positive]]
                )
            else:
                regression[index, :, :4] = bbox_transform(
                    anchors, easy_boxes[box_index], mean=mean, std=std
                )
            labels[index, positive, easy_labels[box_index[positive]]] = 1
        if difficult.any():
            near_difficult = compute_overlap(anchors, bboxes[difficult]).max(axis=1)
            state[(near_difficult >= negative_overlap) & (state != POSITIVE)] = IGNORE
        if matcher == "fizyr":
            image = image_group[index]
            shape = image.shape if hasattr(image, "shape") else tuple(image)
            state[centre_outside(anchors, shape)] = IGNORE

        labels[index, state != POSITIVE, :num_classes] = 0
        regression[index, :, 4] = state
        labels[index, :, num_classes] = state
    return regression, labels
