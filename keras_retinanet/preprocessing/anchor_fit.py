"""Anchors fitted to a dataset's boxes, as training sees them (``retinanet-anchors``,
``retinanet-train --anchors auto``).

A box is **covered** when some anchor centred in its (unpadded) image overlaps it with IoU
``>= positive_overlap`` (0.5): the definition of :mod:`keras_retinanet.coverage`, which
``retinanet-debug`` reports. :mod:`keras_retinanet.preprocessing.anchor_match` computes it,
and each box's number of positive anchors, for thousands of boxes and hundreds of anchor sets
in seconds, equal to the whole grid's numbers.

:func:`fit_anchors` searches, level strides fixed:

* **sizes** (one factor on every level's size): where the anchors start and end, so that
  the smallest and largest boxes get one;
* **scales** within a level: how far they spread, up to two octaves (beyond one, a box gets
  anchors of two levels);
* **ratios**: symmetric sets (``1/r, 1, r``) and sets at quantiles of the boxes' ``h / w``;

by coordinate ascent on, in order: the mean over classes of the covered share (a rare
class counts as much as a common one: platelets are 7% of bccd's boxes), the covered share
of all boxes, then the mean best IoU; and of the candidates that cover within half a percent
of the best, it keeps the one with the most positive anchors per box (geometric mean over
classes). Anchors per location (A) stay as they were unless asked. :func:`size_advice` names
the image size at which boxes no anchor covers would be covered.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.preprocessing.anchor_match import (  # noqa: F401  (re-exported)
    Coverage,
    best_anchor_iou,
    coverage_of,
    positives_per_box,
)
from keras_retinanet.preprocessing.box_sample import (  # noqa: F401  (re-exported)
    BoxSample,
    collect_boxes,
    subset,
)

SIZE_BUCKETS = (16, 32, 64, 128, 256)
# retinanet-train --anchors auto fits when the default anchors leave more than this share of
# some class's boxes without a positive anchor. One box in ten: beyond it a class's AP is
# capped visibly (bccd's platelets: 65% uncovered at 256 px, AP 0.000 in every model).
AUTO_FIT_SHARE = 0.1
# The image scale factors tried when asking at which image size a box would be covered.
_SCALE_STEPS = 2.0 ** (np.arange(-24, 25) / 8)  # 1/8x .. 8x, eighth-octave steps


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
        part = subset(sample, open_).scaled(factor, pad_multiple)
        covered = best_anchor_iou(part, params, rule) >= positive_overlap
        index = np.flatnonzero(open_)[covered]
        needed[index] = factor
    return needed


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
    part = subset(sample, uncovered)
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
