"""Anchors fitted to a dataset's boxes, as training sees them (``retinanet-anchors``,
``retinanet-train --anchors auto``).

A box is **covered** when some anchor centred in its (unpadded) image overlaps it with IoU
``>= positive_overlap`` (0.5): the definition of :mod:`keras_retinanet.coverage`, which
``retinanet-debug`` reports. Here it is computed for thousands of boxes and hundreds of
anchor configurations without laying out a single anchor grid: along each axis, the anchor
of a given shape that overlaps a box most is the one whose centre is nearest the box's
centre (the overlap of two intervals of fixed lengths only shrinks as their centres part),
so each level needs only the nearest grid centres, per axis. :func:`best_anchor_iou` equals
the brute-force maximum over the grid (``tests/test_anchor_fit.py`` checks it against
:func:`keras_retinanet.coverage.image_coverage`).

:func:`fit_anchors` searches, level strides fixed:

* **sizes** (one factor on every level's size): where the anchors start and end, so that
  the smallest and largest boxes get one;
* **scales** within a level: how far they spread over the octave between two levels;
* **ratios**: symmetric sets (``1/r, 1, r``) and sets at quantiles of the boxes' ``h / w``;

by coordinate ascent on, in order: the mean over classes of the covered share (a rare
class counts as much as a common one: platelets are 8% of bccd's boxes), the covered share
of all boxes, then the mean best IoU. Anchors per location (A) stay as they were unless
asked.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from keras_retinanet.model.anchors import AnchorParameters, base_anchors
from keras_retinanet.preprocessing.image import pad_to_multiple, resized_shape
from keras_retinanet.preprocessing.transform import filter_boxes

# Box sides (sqrt of the area, network pixels) where the per-size table splits.
SIZE_BUCKETS = (16, 32, 64, 128, 256)
# retinanet-train --anchors auto fits when the default anchors leave more than this share of
# some class's boxes without a positive anchor. One box in ten: beyond it a class's AP is
# capped visibly (bccd's platelets: 65% uncovered at 256 px, AP 0.000 in every model).
AUTO_FIT_SHARE = 0.1
# The image scale factors tried when asking at which image size a box would be covered.
_SCALE_STEPS = 2.0 ** (np.arange(-24, 25) / 8)  # 1/8x .. 8x, eighth-octave steps


@dataclasses.dataclass
class BoxSample:
    """Ground-truth boxes in the network's pixels, with the images they are in.

    Attributes:
        bboxes: ``(M, 4)`` float64 ``(x1, y1, x2, y2)`` in the resized image.
        labels: ``(M,)`` int64 class labels.
        image_shapes: ``(M, 2)`` int64 ``(rows, cols)`` of each box's resized image.
        padded_shapes: ``(M, 2)`` int64 ``(rows, cols)`` of the padded network input.
        class_names: names by label.
        images: images read.
        skipped: paths of images that could not be read.
    """

    bboxes: np.ndarray
    labels: np.ndarray
    image_shapes: np.ndarray
    padded_shapes: np.ndarray
    class_names: list[str]
    images: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.bboxes)

    def scaled(self, factor: float, pad_multiple: int) -> BoxSample:
        """The same boxes in images resized by ``factor`` more (sides rounded)."""
        shapes = np.maximum(np.round(self.image_shapes * factor), 1).astype(np.int64)
        return dataclasses.replace(
            self,
            bboxes=self.bboxes * factor,
            image_shapes=shapes,
            padded_shapes=-(-shapes // pad_multiple) * pad_multiple,
        )


def collect_boxes(
    generator: Any,
    augment: bool = False,
    passes: int = 1,
    limit: int | None = None,
    progress: bool = True,
) -> BoxSample:
    """The boxes of a generator's images at its training size, difficult boxes left out.

    Without ``augment`` the image sizes come from the files' headers (nothing is decoded, so
    thousands of images take seconds); with it every image goes through the generator's
    ``preprocess_group`` (its transform and resizing) once per pass, as training sees it.

    Args:
        generator: a :class:`~keras_retinanet.preprocessing.generator.Generator`.
        augment: apply the generator's transform (it must have one).
        passes: augmented passes over the data (different draws each).
        limit: the first ``limit`` images only (an evenly spaced subset when smaller than
            the dataset, so that sorted folders are sampled throughout).
        progress: show a progress bar.

    Returns:
        A :class:`BoxSample`.
    """
    count = generator.size()
    indices = np.arange(count)
    if limit is not None and limit < count:
        indices = np.unique(np.linspace(0, count - 1, int(limit)).round().astype(np.int64))
    rule = generator.variant.resize
    sides = (generator.image_min_side, generator.image_max_side)
    bboxes, labels, shapes, skipped, images = [], [], [], [], 0
    work: Any = [(int(i), p) for p in range(passes if augment else 1) for i in indices]
    if progress:
        work = tqdm(work, unit="image", desc="boxes")
    for index, epoch in work:
        if augment:
            group_images, group_annotations, _ = generator.preprocess_group([index], epoch)
            if not group_images:
                skipped.append(generator.image_path(index))
                continue
            annotations, shape = group_annotations[0], group_images[0].shape[:2]
            boxes = np.asarray(annotations["bboxes"], np.float64).reshape(-1, 4)
        else:
            size = generator.image_size(index)
            if size is None:
                skipped.append(generator.image_path(index))
                continue
            width, height = size
            annotations, _, _ = filter_boxes(generator.load_annotations(index), height, width)
            shape, scale = resized_shape((height, width), *sides, rule)
            boxes = np.asarray(annotations["bboxes"], np.float64).reshape(-1, 4) * scale
        images += 1
        difficult = np.asarray(annotations.get("difficult", np.zeros(len(boxes))), bool)
        keep = ~difficult.reshape(-1)
        bboxes.append(boxes[keep])
        labels.append(np.asarray(annotations["labels"], np.int64).reshape(-1)[keep])
        shapes.append(np.tile(np.asarray(shape, np.int64), (int(keep.sum()), 1)))
    image_shapes = np.concatenate(shapes) if shapes else np.zeros((0, 2), np.int64)
    multiple = generator.pad_multiple
    return BoxSample(
        bboxes=np.concatenate(bboxes) if bboxes else np.zeros((0, 4)),
        labels=np.concatenate(labels) if labels else np.zeros((0,), np.int64),
        image_shapes=image_shapes,
        padded_shapes=np.vectorize(lambda v: pad_to_multiple(v, multiple))(image_shapes)
        if len(image_shapes)
        else image_shapes,
        class_names=list(generator.classes),
        images=images,
        skipped=skipped,
    )


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


def _ratio_candidates(sample: BoxSample, count: int, current: Sequence[float]) -> list[tuple]:
    """Ratio sets of ``count`` values: the current ones, symmetric geometric sets and sets at
    quantiles of the boxes' ``h / w``."""
    candidates = [tuple(current)] if len(current) == count else []
    exponents = np.arange(count) - (count - 1) / 2
    for r in (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0):
        candidates.append(tuple(float(r**e) for e in exponents))
    if len(sample):
        widths = sample.bboxes[:, 2] - sample.bboxes[:, 0]
        heights = sample.bboxes[:, 3] - sample.bboxes[:, 1]
        log_ratios = np.log(np.maximum(heights, 1e-6) / np.maximum(widths, 1e-6))
        for spread in (1.0, 0.6):
            qs = 0.5 + spread * ((np.arange(count) + 0.5) / count - 0.5)
            candidates.append(tuple(float(np.exp(np.quantile(log_ratios, q))) for q in qs))
    return list(dict.fromkeys(tuple(round(r, 4) for r in c) for c in candidates))


def _scale_candidates(count: int) -> list[tuple[float, float]]:
    """``(start, spread)`` pairs: scales ``start * 2**(spread * i / count)``, i < count."""
    starts = 2.0 ** (np.arange(-18, 7) / 12)  # 0.35x .. 1.41x the level's size
    # Spreads beyond one octave overlap the next level's sizes: a box then has anchors of two
    # levels, more positives.
    spreads = (1.0, 0.75, 1.25, 1.5, 2.0) if count > 1 else (1.0,)
    return [(float(s), float(p)) for s, p in itertools.product(starts, spreads)]


def _with(params: AnchorParameters, start: float, spread: float, count: int, ratios) -> Any:
    # The start goes into the sizes, so the scales read as the spread within a level.
    return AnchorParameters(
        sizes=tuple(round(s * start, 2) for s in params.sizes),
        strides=params.strides,
        ratios=tuple(ratios),
        scales=tuple(round(2.0 ** (spread * i / count), 4) for i in range(count)),
    )


def positive_balance(sample: BoxSample, params: AnchorParameters, rule: str = "centred",
                     positive_overlap: float = 0.5) -> float:  # fmt: skip
    """Geometric mean over the classes of their mean positives per box
    (:func:`positives_per_box`): how much every class is taught, none left near zero."""
    counts = positives_per_box(sample, params, rule, positive_overlap)
    means = [counts[sample.labels == k].mean() for k in np.unique(sample.labels)]
    return float(np.exp(np.mean(np.log(np.asarray(means) + 1.0))) - 1.0) if means else 0.0


# Coverage within this of the best counts as equal in the fit's last step, which then takes
# the anchors with the most positives per box (half a percent of boxes: noise for a class).
COVERAGE_TOLERANCE = 0.005
_FINALISTS = 40  # the best-covering candidates whose positives are counted


def fit_anchors(
    sample: BoxSample,
    start: AnchorParameters | None = None,
    rule: str = "centred",
    positive_overlap: float = 0.5,
    num_ratios: int | None = None,
    num_scales: int | None = None,
    rounds: int = 2,
) -> tuple[Coverage, Coverage]:
    """Anchor sizes, scales and ratios that cover the boxes best (see the module docstring).

    Two steps. Coordinate ascent (scales, then ratios, ``rounds`` times) on the coverage: the
    mean over classes of the covered share, then the share of all boxes, then the mean best
    IoU. Then, among every candidate tried whose two shares are within
    :data:`COVERAGE_TOLERANCE` of the best, the one with the most positive anchors per box
    (:func:`positive_balance`): tight anchors on a coarse level cover a box as well as looser
    ones on a fine level, but teach it from fewer anchors (bccd at 256 px: shifting every
    anchor down to reach the platelets halves the positives of the red cells; a wider spread
    of scales covers the platelets and gives every class more).

    Args:
        sample: from :func:`collect_boxes`.
        start: the anchors to improve on (their strides stay); defaults to the defaults.
        rule: the model variant's anchor rule.
        positive_overlap: the IoU that makes an anchor positive in training.
        num_ratios: ratios per location; default: as many as ``start`` has.
        num_scales: scales per location; default: as many as ``start`` has.
        rounds: passes of coordinate ascent (scales, then ratios).

    Returns:
        ``(before, after)``: the coverage of ``start`` and of the fitted anchors
        (``after.params``; ``after.positives``, ``before.positives``: their
        :func:`positive_balance`). ``start`` itself is a candidate when the anchors per
        location stay the same.
    """
    start = start or AnchorParameters()
    num_ratios = int(num_ratios or len(start.ratios))
    num_scales = int(num_scales or len(start.scales))
    if num_ratios < 1 or num_scales < 1:
        raise ValueError("need at least one ratio and one scale per location")
    before = coverage_of(sample, start, rule, positive_overlap)
    same_count = num_ratios == len(start.ratios) and num_scales == len(start.scales)
    tried: dict[AnchorParameters, Coverage] = {start: before} if same_count else {}

    def trial(params: AnchorParameters) -> Coverage:
        if params not in tried:
            tried[params] = coverage_of(sample, params, rule, positive_overlap)
        return tried[params]

    ratio_sets = _ratio_candidates(sample, num_ratios, start.ratios)
    ratios = tuple(start.ratios) if len(start.ratios) == num_ratios else ratio_sets[0]
    scale_pairs = _scale_candidates(num_scales)
    # The sizes of `start` (its scale 1) are the reference the starts multiply.
    reference = dataclasses.replace(start, sizes=tuple(s * start.scales[0] for s in start.sizes))
    choice, best = (1.0, 1.0), before if same_count else None
    for _ in range(rounds):
        for pair in scale_pairs:
            found = trial(_with(reference, *pair, num_scales, ratios))
            if best is None or found.key() > best.key():
                best, choice = found, pair
        for ratio_set in ratio_sets:
            found = trial(_with(reference, *choice, num_scales, ratio_set))
            if found.key() > best.key():
                best, ratios = found, ratio_set
    finalists = [
        c
        for c in tried.values()
        if c.balanced_share >= best.balanced_share - COVERAGE_TOLERANCE
        and c.share >= best.share - COVERAGE_TOLERANCE
    ]
    finalists = sorted(finalists, key=lambda c: c.key(), reverse=True)[:_FINALISTS]
    for c in finalists + [before]:
        c.positives = positive_balance(sample, c.params, rule, positive_overlap)
    chosen = max(finalists, key=lambda c: (c.positives, c.key()))
    return before, chosen


def scale_needed(
    sample: BoxSample,
    params: AnchorParameters,
    pad_multiple: int,
    rule: str = "centred",
    positive_overlap: float = 0.5,
) -> np.ndarray:
    """``(M,)`` the image scale factor closest to 1 at which each box would be covered
    (eighth-octave steps from 1/8 to 8); NaN where no factor in that range covers it."""
    needed = np.full(len(sample), np.nan)
    order = sorted(_SCALE_STEPS, key=lambda f: (abs(math.log(f)), f))
    for factor in order:
        open_ = np.isnan(needed)
        if not open_.any():
            break
        part = _subset(sample, open_).scaled(factor, pad_multiple)
        covered = best_anchor_iou(part, params, rule) >= positive_overlap
        index = np.flatnonzero(open_)[covered]
        needed[index] = factor
    return needed


def _subset(sample: BoxSample, mask: np.ndarray) -> BoxSample:
    return dataclasses.replace(
        sample,
        bboxes=sample.bboxes[mask],
        labels=sample.labels[mask],
        image_shapes=sample.image_shapes[mask],
        padded_shapes=sample.padded_shapes[mask],
    )


def size_advice(
    sample: BoxSample,
    coverage: Coverage,
    image_min_side: int,
    pad_multiple: int,
    rule: str = "centred",
    positive_overlap: float = 0.5,
) -> list[str]:
    """One line per class with uncovered boxes: the ``--image-min-side`` at which 90% of them
    would be covered, or, for boxes no image size covers, the level they would need."""
    uncovered = ~coverage.covered
    if not uncovered.any():
        return []
    part = _subset(sample, uncovered)
    needed = scale_needed(part, coverage.params, pad_multiple, rule, positive_overlap)
    sides = np.sqrt(np.prod(part.bboxes[:, 2:] - part.bboxes[:, :2], axis=1))
    smallest = min(coverage.params.sizes) * min(coverage.params.scales)
    lines = []
    for label, name in enumerate(sample.class_names):
        mine = part.labels == label
        if not mine.any():
            continue
        factors = needed[mine]
        found = factors[~np.isnan(factors)]
        text = f"{name}: {int(mine.sum())} uncovered (median side {np.median(sides[mine]):.0f} px)"
        if len(found):
            up = found[found >= 1]
            down = found[found < 1]
            if len(up) >= len(down):
                factor = float(np.quantile(up, 0.9, method="higher"))
                text += (
                    f"; {len(up)} covered at --image-min-side "
                    f"{math.ceil(image_min_side * factor)} or above ({factor:.2f}x)"
                )
            else:
                factor = float(np.quantile(down, 0.1, method="lower"))
                text += (
                    f"; {len(down)} covered at --image-min-side "
                    f"{math.floor(image_min_side * factor)} or below ({factor:.2f}x)"
                )
        if len(found) < len(factors):
            finest = min(coverage.params.strides)
            text += (
                f"; {len(factors) - len(found)} at no size from 1/8x to 8x: smaller than the "
                f"{smallest:.0f}-px anchors of stride {finest} can reach, they would need a level "
                f"of stride {finest // 2} (P{int(math.log2(finest)) - 1}) or --config anchors "
                "fitted to them (retinanet-anchors)"
            )
        lines.append(text)
    return lines


def coverage_table(
    sample: BoxSample,
    coverages: Sequence[tuple[str, Coverage]],
    positive_overlap: float = 0.5,
    rule: str = "centred",
) -> str:
    """Uncovered boxes per class and per box-size bucket, and the mean number of positive
    anchors per box (:func:`positives_per_box`), two columns per anchor set."""
    header = ["", "boxes"]
    for name, _ in coverages:
        header += [f"uncovered, {name}", "positives/box"]
    positives = [positives_per_box(sample, c.params, rule, positive_overlap) for _, c in coverages]
    rows = []
    for label, name in enumerate(sample.class_names):
        mine = sample.labels == label
        if mine.any():
            rows.append([name, mine])
    sides = np.sqrt(np.prod(sample.bboxes[:, 2:] - sample.bboxes[:, :2], axis=1))
    edges = (0, *SIZE_BUCKETS, np.inf)
    for low, high in zip(edges[:-1], edges[1:]):
        mine = (sides >= low) & (sides < high)
        if mine.any():
            label = f"side {low:g}-{high:g} px" if np.isfinite(high) else f"side >= {low:g} px"
            rows.append([label, mine])
    rows.append(["all", np.ones(len(sample), bool)])
    lines = [header]
    for name, mine in rows:
        cells = [name, str(int(mine.sum()))]
        for (_, coverage), counts in zip(coverages, positives):
            missed = int((~coverage.covered[mine]).sum())
            cells.append(f"{missed} ({100 * missed / mine.sum():.1f}%)")
            cells.append(f"{counts[mine].mean():.1f}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    title = (
        f"boxes without an anchor of IoU >= {positive_overlap:g}, and anchors of IoU >= "
        f"{positive_overlap:g} per box, by class and size:"
    )
    return title + "\n" + "\n".join(out)


def describe(params: AnchorParameters) -> str:
    """The anchors in one line."""
    smallest = min(params.sizes) * min(params.scales)
    largest = max(params.sizes) * max(params.scales)
    return (
        f"sizes {' '.join(f'{s:g}' for s in params.sizes)}, scales "
        f"{' '.join(f'{s:g}' for s in params.scales)}, ratios "
        f"{' '.join(f'{r:g}' for r in params.ratios)} (sides {smallest:.0f}..{largest:.0f} px)"
    )
