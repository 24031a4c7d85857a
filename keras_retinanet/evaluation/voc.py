"""Pascal VOC detection metrics: per-class precision/recall and (mean) average precision.

The matching protocol follows the Pascal VOC development kit:

* the detections of one class are ranked by score over the whole data set;
* each detection is compared with the ground-truth boxes of the same class in its own image
  and assigned to the box of highest IoU (ties go to the first box);
* it is a true positive when that IoU is at least ``iou_threshold`` (``VOCevaldet.m``:
  ``ovmax >= VOCopts.minoverlap``) and the box has not been claimed by a higher-scoring
  detection, otherwise a false positive (so a second detection of an object is a false
  positive, even when another box it overlaps is still free);
* a detection whose best box is *difficult* (and above the threshold) is ignored: neither a
  true nor a false positive. Difficult boxes are not counted in the recall denominator.

Boxes are ``(x1, y1, x2, y2)`` float absolute pixels, half-open, so a box is ``x2 - x1`` wide
with no ``+ 1``. The VOC loader turns the 1-based inclusive ``[xmin, xmax]`` of the XML files
into ``x1 = xmin - 1, x2 = xmax``, so the IoU computed here equals the devkit's IoU with its
``+ 1`` widths.

IoU comes from :func:`keras_retinanet.model.boxes.compute_overlap` (NumPy only); matplotlib is
imported inside :func:`plot_precision_recall` alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_retinanet.model.boxes import compute_overlap

__all__ = [
    "VOC07_RECALL_THRESHOLDS",
    "average_precision",
    "precision_recall",
    "evaluate_detections",
    "mean_average_precision",
    "plot_precision_recall",
]


def _matlab_colon(start: float, step: float, stop: float) -> tuple[float, ...]:
    """The doubles of MATLAB's ``start:step:stop``, built as MATLAB builds them.

    MATLAB computes the first half of a colon range forwards (``start + k * step``) and the
    second half backwards from the end (``stop - (n - k) * step``), so that the last element
    is exactly ``stop``. For ``0:0.1:1`` that gives ``k / 10`` for every ``k`` but ``k = 3``,
    where ``3 * 0.1 == 0.30000000000000004`` (one ulp above 0.3).
    """
    n = round((stop - start) / step)
    half = n // 2
    return tuple(start + k * step if k <= half else stop - (n - k) * step for k in range(n + 1))


#: Recall levels of the VOC2007 11-point AP, exactly as the devkit's ``for t=0:0.1:1`` makes
#: them in MATLAB: ``k / 10`` but for ``0.30000000000000004``, so a recall of exactly 3/10
#: does not reach the 0.3 level. Other implementations differ by one ulp at some levels, and
#: that changes AP only where a class's recall lands exactly on one of them: py-faster-rcnn
#: and detectron2 use ``np.arange(0, 1.1, 0.1)`` (0.3, 0.6 and 0.7 one ulp high), an exact
#: ``k / 10`` has none high. A recall of exactly 3/10, 6/10 or 7/10 (e.g. 3 of 10 boxes found)
#: moves the AP by at most ``(p(level) - p(next level)) / 11``, i.e. up to 1/11 = 0.091.
VOC07_RECALL_THRESHOLDS: tuple[float, ...] = _matlab_colon(0.0, 0.1, 1.0)


def _image_detections(detections_image: Any, label: int, image_index: int) -> np.ndarray:
    """Returns the ``(D, 5)`` float64 detections of one class in one image."""
    try:
        dets = detections_image[label]
    except (IndexError, KeyError) as error:
        raise ValueError(
            f"detections[{image_index}] has no entry for class {label}; give one (D, 5) array "
            "per class, an empty np.zeros((0, 5)) where there is nothing"
        ) from error
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(
            f"detections[{image_index}][{label}] has shape {dets.shape}; expected (D, 5) rows "
            "of [x1, y1, x2, y2, score]"
        )
    return dets


def _image_annotations(
    annotations_image: Any, label: int, image_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the ``(G, 4)`` float64 boxes and ``(G,)`` bool difficult flags of one class."""
    try:
        entry = annotations_image[label]
    except (IndexError, KeyError) as error:
        raise ValueError(
            f"annotations[{image_index}] has no entry for class {label}; give one "
            '{"bboxes": (G, 4), "difficult": (G,)} dict per class'
        ) from error
    boxes = np.asarray(entry["bboxes"], dtype=np.float64)
    if boxes.size == 0:
        boxes = np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f'annotations[{image_index}][{label}]["bboxes"] has shape {boxes.shape}; '
            "expected (G, 4) rows of [x1, y1, x2, y2]"
        )
    difficult = entry.get("difficult")
    if difficult is None:
        difficult = np.zeros(len(boxes), dtype=bool)
    else:
        difficult = np.asarray(difficult, dtype=bool).reshape(-1)
    if difficult.shape != (len(boxes),):
        raise ValueError(
            f'annotations[{image_index}][{label}]["difficult"] has {difficult.size} flags for '
            f"{len(boxes)} boxes; give one flag per box"
        )
    return boxes, difficult


def average_precision(
    recall: np.ndarray | Sequence[float],
    precision: np.ndarray | Sequence[float],
    use_07_metric: bool = True,
) -> float:
    """Area under a precision/recall curve, as Pascal VOC defines it.

    Args:
        recall: ``(D,)`` float array, recall after each ranked detection (non-decreasing).
        precision: ``(D,)`` float array, precision after each ranked detection.
        use_07_metric: True for the VOC2007 11-point interpolated AP, the mean over
            ``t`` in :data:`VOC07_RECALL_THRESHOLDS` (``0:0.1:1``) of the highest precision at
            recall ``>= t`` (0 where no point reaches ``t``). False for the VOC2010+
            all-point AP, the exact area under the curve after making precision
            non-increasing from the right.

    Returns:
        The average precision in ``[0, 1]``; 0.0 for an empty curve.

    Raises:
        ValueError: if ``recall`` and ``precision`` differ in length.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(
            f"recall has {recall.size} points but precision has {precision.size}; pass the "
            "two arrays returned by precision_recall"
        )

    if use_07_metric:
        ap = 0.0
        for threshold in VOC07_RECALL_THRESHOLDS:
            reached = recall >= threshold
            best = float(precision[reached].max()) if reached.any() else 0.0
            ap += best / 11.0
        return ap

    # Sentinels: the curve starts at recall 0 and ends at recall 1 with precision 0.
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # Interpolated precision: the best precision at this or any higher recall.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def precision_recall(
    detections: Sequence[Sequence[np.ndarray]],
    annotations: Sequence[Sequence[Mapping[str, np.ndarray]]],
    label: int,
    iou_threshold: float = 0.5,
    return_scores: bool = False,
) -> tuple[np.ndarray, ...]:
    """Precision/recall curve of one class over a data set, with the VOC matching protocol.

    See the module docstring for the protocol. Detections are ranked by descending score with
    a stable sort, so equal scores keep their order (image by image, row by row). A detection
    ignored because its best box is difficult adds no point to the curve: in the devkit it
    would repeat the previous point (or add ``(0, 0)`` before the first), which changes
    neither AP.

    Args:
        detections: one entry per image; ``detections[i][c]`` is a ``(D, 5)`` float array of
            ``[x1, y1, x2, y2, score]`` rows (absolute pixels) for image ``i`` and class ``c``.
        annotations: one entry per image; ``annotations[i][c]`` is a dict with ``"bboxes"``, a
            ``(G, 4)`` float array of ``(x1, y1, x2, y2)`` boxes, and optionally
            ``"difficult"``, a ``(G,)`` bool array (missing means all False).
        label: the class index ``c`` to evaluate.
        iou_threshold: a detection matches a box when their IoU is at least this (the devkit's
            ``ovmax >= minoverlap``).
            0.5 is the VOC value (Everingham et al. 2010, sec. 4.4).
        return_scores: also return the score of each point.

    Returns:
        ``(recall, precision, num_annotations)``: two ``(P,)`` float64 arrays, one point per
        detection that is a true or false positive in ranked order, and the number of
        non-difficult boxes of the class. With no such box, recall is all zeros. With
        ``return_scores``, a fourth entry: the ``(P,)`` scores of those detections
        (non-increasing).

    Raises:
        ValueError: if the two lists differ in length or an entry has the wrong shape.
    """
    if len(detections) != len(annotations):
        raise ValueError(
            f"detections cover {len(detections)} images but annotations cover "
            f"{len(annotations)}; give both in the same image order"
        )

    scores_per_image = []
    best_iou_per_image = []
    best_box_per_image = []  # index into the concatenation of all images' boxes
    difficult_per_image = []
    box_offset = 0
    for image_index, (dets_image, anns_image) in enumerate(zip(detections, annotations)):
        dets = _image_detections(dets_image, label, image_index)
        boxes, difficult = _image_annotations(anns_image, label, image_index)
        difficult_per_image.append(difficult)
        if len(dets):
            if len(boxes):
                iou = compute_overlap(dets[:, :4], boxes)  # (D, G)
                best_box = iou.argmax(axis=1)  # first maximum on ties, as in the devkit
                best_iou = iou[np.arange(len(dets)), best_box]
            else:
                # No box to match: -inf is below any threshold, so every detection is an FP.
                best_box = np.zeros(len(dets), dtype=np.int64)
                best_iou = np.full(len(dets), -np.inf)
            scores_per_image.append(dets[:, 4])
            best_iou_per_image.append(best_iou)
            best_box_per_image.append(best_box + box_offset)
        box_offset += len(boxes)

    difficult = (
        np.concatenate(difficult_per_image) if difficult_per_image else np.zeros(0, dtype=bool)
    )
    num_annotations = int(np.count_nonzero(~difficult))
    if not scores_per_image:
        empty = (np.zeros(0), np.zeros(0), num_annotations)
        return (*empty, np.zeros(0)) if return_scores else empty

    scores = np.concatenate(scores_per_image)
    best_iou = np.concatenate(best_iou_per_image)
    best_box = np.concatenate(best_box_per_image)
    order = np.argsort(-scores, kind="stable")

    # The best box of each detection does not depend on the ranking, only whether that box
    # is still free does, so only this cheap bookkeeping runs in Python.
    claimed = np.zeros(len(difficult), dtype=bool)
    is_tp = np.zeros(len(order), dtype=bool)
    is_fp = np.zeros(len(order), dtype=bool)
    for rank, det in enumerate(order):
        if best_iou[det] >= iou_threshold:
            box = best_box[det]
            if difficult[box]:
                continue  # neither TP nor FP; a difficult box is never claimed
            if claimed[box]:
                is_fp[rank] = True
            else:
                is_tp[rank] = True
                claimed[box] = True
        else:
            is_fp[rank] = True

    counted = is_tp | is_fp
    tp = np.cumsum(is_tp[counted]).astype(np.float64)
    fp = np.cumsum(is_fp[counted]).astype(np.float64)
    # Every kept point has tp + fp >= 1, so the division is safe.
    precision = tp / (tp + fp)
    recall = tp / num_annotations if num_annotations > 0 else np.zeros_like(tp)
    if return_scores:
        return recall, precision, num_annotations, scores[order][counted]
    return recall, precision, num_annotations


def evaluate_detections(
    detections: Sequence[Sequence[np.ndarray]],
    annotations: Sequence[Sequence[Mapping[str, np.ndarray]]],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict[int, tuple[float, int]]:
    """Pascal VOC average precision of every class.

    Args:
        detections: one entry per image; ``detections[i][c]`` is a ``(D, 5)`` float array of
            ``[x1, y1, x2, y2, score]`` rows (absolute pixels) for image ``i`` and class ``c``.
        annotations: one entry per image; ``annotations[i][c]`` is a dict with ``"bboxes"``, a
            ``(G, 4)`` float array of ``(x1, y1, x2, y2)`` boxes, and optionally
            ``"difficult"``, a ``(G,)`` bool array (missing means all False).
        num_classes: the number of classes ``K``; classes ``0 .. K-1`` are evaluated.
        iou_threshold: a detection matches a box when their IoU is at least this (the devkit's
            ``ovmax >= minoverlap``).
            0.5 is the VOC value.
        use_07_metric: True for the VOC2007 11-point AP, False for the VOC2010+ all-point AP.
            The VOC2007 test set is conventionally reported with the 11-point metric.

    Returns:
        ``{c: (ap, num_annotations)}`` for every class, ``num_annotations`` counting the
        non-difficult boxes. A class with no such box gets ``(0.0, 0)``: its AP is undefined,
        and :func:`mean_average_precision` leaves it out by default.

    Raises:
        ValueError: if the inputs disagree in length or shape.
    """
    results = {}
    for label in range(num_classes):
        recall, precision, num_annotations = precision_recall(
            detections, annotations, label, iou_threshold=iou_threshold
        )
        if num_annotations == 0:
            results[label] = (0.0, 0)
            continue
        ap = average_precision(recall, precision, use_07_metric=use_07_metric)
        results[label] = (ap, num_annotations)
    return results


def mean_average_precision(
    results: Mapping[int, tuple[float, int]], ignore_empty: bool = True
) -> float:
    """Mean of per-class average precisions.

    Args:
        results: ``{c: (ap, num_annotations)}`` as returned by :func:`evaluate_detections`.
        ignore_empty: True to average only over classes with at least one (non-difficult)
            annotation, whose AP is defined; False to average over every class.

    Returns:
        The mean AP; 0.0 when no class is averaged.
    """
    aps = [ap for ap, num in results.values() if num > 0 or not ignore_empty]
    if not aps:
        return 0.0
    return float(np.mean(aps))


def plot_precision_recall(
    recall: np.ndarray | Sequence[float],
    precision: np.ndarray | Sequence[float],
    ap: float,
    class_name: str,
    path: str | os.PathLike,
) -> str:
    """Draws one class's precision/recall curve to a PNG file.

    Args:
        recall: ``(P,)`` float array from :func:`precision_recall`.
        precision: ``(P,)`` float array from :func:`precision_recall`.
        ap: the class's average precision, shown in the title.
        class_name: the class's name, shown in the title.
        path: where to write the PNG; missing parent folders are created.

    Returns:
        ``path`` as a string.
    """
    # Lazy import, and a Figure with its own Agg canvas rather than pyplot: evaluation does not
    # pay for matplotlib unless it plots, and the global backend (e.g. a notebook's) is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # matplotlib loads only when a plot is drawn (it is slow to import)
    from matplotlib.figure import Figure

    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)

    figure = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if recall.size:
        # Precision only changes at a detection, so the curve is a staircase.
        axes.step(recall, precision, where="post", color="tab:blue", label="precision")
        interpolated = np.maximum.accumulate(precision[::-1])[::-1]
        axes.step(
            recall,
            interpolated,
            where="post",
            color="tab:orange",
            linestyle="--",
            label="interpolated",
        )
        axes.legend(loc="lower left")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.05)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(f"{class_name}: AP = {ap:.4f}")
    axes.grid(True, alpha=0.3)
    figure.savefig(path, format="png")
    return path
