"""Which anchors fit which boxes, for thousands of boxes and hundreds of anchor sets: the
best anchor IoU of each box and its number of positive anchors, both equal to what the whole
anchor grid gives (:func:`keras_retinanet.model.anchors.anchors_for_shape`), computed from the
grid centres near each box only.

Along each axis, the anchor of a given shape that overlaps a box most is the one whose centre
is nearest the box's centre (the overlap of two intervals of fixed lengths only shrinks as
their centres part), so :func:`best_anchor_iou` needs one centre per axis and level;
:func:`positives_per_box` enumerates the few centres around it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_retinanet.model.anchors import AnchorParameters, base_anchors
from keras_retinanet.preprocessing.box_sample import BoxSample


def _best_overlap_1d(
    low: np.ndarray, high: np.ndarray, cells: np.ndarray, limit: np.ndarray, stride: np.ndarray,
    offset: float, anchor_low: np.ndarray, anchor_high: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """``(M, A)`` largest overlap of each box's interval ``[low, high]`` with the intervals of
    the A base anchors placed at the level's grid centres inside the image (``< limit``)."""
    stride32 = stride.astype(np.float32)
    # Centres (k + offset) * stride, k < cells, inside the image: k < limit / stride - offset.
    inside = np.minimum(cells, np.ceil(limit / stride - offset)).astype(np.int64)
    centre = (low + high) / 2
    nearest = np.round(centre / stride - offset).astype(np.int64)
    best = np.zeros((len(low), len(anchor_low)))
    for step in (-1, 0, 1):  # float rounding: the neighbours of the nearest centre too
        k = np.clip(nearest + step, 0, np.maximum(inside - 1, 0))
        grid = ((k.astype(np.float32) + np.float32(offset)) * stride32)[:, None]
        # float32 sums, as the anchor grid's: bitwise the coordinates training uses.
        a_low = (grid + anchor_low[None, :]).astype(np.float64)
        a_high = (grid + anchor_high[None, :]).astype(np.float64)
        overlap = np.minimum(high[:, None], a_high) - np.maximum(low[:, None], a_low)
        np.maximum(best, overlap, out=best)
    best[inside <= 0] = 0.0
    return np.maximum(best, 0.0)


def best_anchor_iou(
    sample: BoxSample, params: AnchorParameters, rule: str = "centred"
) -> np.ndarray:
    """``(M,)`` float64 IoU of each box with its best anchor centred in its image.

    Equal to ``compute_overlap(anchors_inside, boxes).max(axis=0)`` over the whole grid of
    :func:`keras_retinanet.model.anchors.anchors_for_shape` (the number
    :func:`keras_retinanet.coverage.image_coverage` reports), computed from the nearest grid
    centres only.
    """
    boxes = sample.bboxes
    best = np.zeros(len(boxes))
    if not len(boxes):
        return best
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    offset = 0.0 if rule == "torchvision" else 0.5
    padded = sample.padded_shapes
    for size, stride in zip(params.sizes, params.strides):
        base = base_anchors(size, params.ratios, params.scales, rule)  # (A, 4) float32
        rows = -(-padded[:, 0] // stride)
        cols = -(-padded[:, 1] // stride)
        if rule == "torchvision":  # input_size // feature_size per axis (level_strides)
            stride_y, stride_x = padded[:, 0] // rows, padded[:, 1] // cols
        else:
            stride_y = stride_x = np.full(len(boxes), stride, np.int64)
        overlap_x = _best_overlap_1d(
            boxes[:, 0], boxes[:, 2], cols, sample.image_shapes[:, 1], stride_x, offset,
            base[:, 0], base[:, 2],
        )  # fmt: skip
        overlap_y = _best_overlap_1d(
            boxes[:, 1], boxes[:, 3], rows, sample.image_shapes[:, 0], stride_y, offset,
            base[:, 1], base[:, 3],
        )  # fmt: skip
        intersection = overlap_x * overlap_y
        anchor_area = ((base[:, 2] - base[:, 0]) * (base[:, 3] - base[:, 1])).astype(np.float64)
        union = area[:, None] + anchor_area[None, :] - intersection
        iou = np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)
        np.maximum(best, iou.max(axis=1), out=best)
    return best


def positives_per_box(
    sample: BoxSample,
    params: AnchorParameters,
    rule: str = "centred",
    positive_overlap: float = 0.5,
) -> np.ndarray:
    """``(M,)`` number of anchors centred in its image that overlap each box with IoU
    ``>= positive_overlap``: the positive examples training draws from the box (low-quality
    matches aside). The grid positions near each box's centre are enumerated per level, only
    for the boxes whose area is within a factor of 2 of one of the level's anchors (no other
    can reach IoU 0.5)."""
    boxes = sample.bboxes
    counts = np.zeros(len(boxes))
    if not len(boxes):
        return counts
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = widths * heights
    offset = 0.0 if rule == "torchvision" else 0.5
    for size, stride in zip(params.sizes, params.strides):
        base = base_anchors(size, params.ratios, params.scales, rule).astype(np.float64)
        anchor_area = (base[:, 2] - base[:, 0]) * (base[:, 3] - base[:, 1])
        ratio = area[:, None] / anchor_area[None, :]
        near = ((ratio >= 0.5) & (ratio <= 2.0)).any(axis=1)
        if not near.any():
            continue
        index = np.flatnonzero(near)
        padded = sample.padded_shapes[index]
        span = max(float((base[:, 2] - base[:, 0]).max()), float((base[:, 3] - base[:, 1]).max()))
        span = max(span, float(max(widths[index].max(), heights[index].max())))
        reach = min(12, math.ceil(span / (2 * stride)) + 1)
        steps = np.arange(-reach, reach + 1)

        def axis(low, high, cells, limit, axis_stride, a_low, a_high, steps=steps):
            inside = np.minimum(cells, np.ceil(limit / axis_stride - offset)).astype(np.int64)
            nearest = np.round((low + high) / 2 / axis_stride - offset).astype(np.int64)
            k = nearest[:, None] + steps[None, :]  # (m, S)
            valid = (k >= 0) & (k < inside[:, None])
            centre = ((k.astype(np.float32) + np.float32(offset))
                      * axis_stride[:, None].astype(np.float32))  # fmt: skip
            lo = (centre[:, :, None] + a_low[None, None, :].astype(np.float32)).astype(np.float64)
            hi = (centre[:, :, None] + a_high[None, None, :].astype(np.float32)).astype(np.float64)
            overlap = np.minimum(high[:, None, None], hi) - np.maximum(low[:, None, None], lo)
            overlap = np.maximum(overlap, 0) * valid[:, :, None]
            return overlap  # (m, S, A)

        rows = -(-padded[:, 0] // stride)
        cols = -(-padded[:, 1] // stride)
        if rule == "torchvision":
            stride_y, stride_x = padded[:, 0] // rows, padded[:, 1] // cols
        else:
            stride_y = stride_x = np.full(len(index), stride, np.int64)
        b = boxes[index]
        overlap_x = axis(b[:, 0], b[:, 2], cols, sample.image_shapes[index, 1], stride_x,
                         base[:, 0], base[:, 2])  # fmt: skip
        overlap_y = axis(b[:, 1], b[:, 3], rows, sample.image_shapes[index, 0], stride_y,
                         base[:, 1], base[:, 3])  # fmt: skip
        # (m, Sx, Sy, A): every grid position near the box, every anchor shape.
        intersection = overlap_x[:, :, None, :] * overlap_y[:, None, :, :]
        union = area[index, None, None, None] + anchor_area[None, None, None, :] - intersection
        positive = intersection >= positive_overlap * union
        counts[index] += positive.sum(axis=(1, 2, 3))
    return counts


@dataclasses.dataclass
class Coverage:
    """How well one set of anchors covers a :class:`BoxSample`."""

    params: AnchorParameters
    best_iou: np.ndarray  # (M,)
    covered: np.ndarray  # (M,) bool
    class_shares: np.ndarray  # (K,) covered share per class, NaN where a class has no box
    positives: float | None = None  # positive_balance, where fit_anchors counted it

    @property
    def share(self) -> float:
        """Covered share of all boxes (1 with no boxes)."""
        return float(self.covered.mean()) if len(self.covered) else 1.0

    @property
    def balanced_share(self) -> float:
        """Mean over the classes that have boxes of their covered share."""
        present = self.class_shares[~np.isnan(self.class_shares)]
        return float(present.mean()) if len(present) else 1.0

    def key(self) -> tuple[float, float, float]:
        """What the fit maximises, in order."""
        mean_iou = float(self.best_iou.mean()) if len(self.best_iou) else 0.0
        return (round(self.balanced_share, 9), round(self.share, 9), mean_iou)


def coverage_of(
    sample: BoxSample,
    params: AnchorParameters,
    rule: str = "centred",
    positive_overlap: float = 0.5,
) -> Coverage:
    """:func:`best_anchor_iou` and the covered shares, overall and per class."""
    best = best_anchor_iou(sample, params, rule)
    covered = best >= positive_overlap
    num_classes = len(sample.class_names)
    counts = np.bincount(sample.labels, minlength=num_classes).astype(np.float64)
    hits = np.bincount(sample.labels[covered], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(counts > 0, hits / counts, np.nan)
    return Coverage(params, best, covered, shares)
