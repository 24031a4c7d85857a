"""Thresholds that mean something: precision, recall and F1 at a score threshold, and the
threshold that maximises F1, per class and overall.

Computed from an evaluation's ranked detections (the VOC matching of
:func:`keras_retinanet.evaluation.voc.precision_recall`: a detection is a true positive when
its best box, at IoU >= the evaluation's threshold, is not yet claimed; detections on difficult
boxes count neither way). Keeping the detections that score strictly above ``t``, as every
consumer of the detection settings does, gives

    precision = TP / (TP + FP),  recall = TP / boxes,  F1 = 2 P R / (P + R).

The best threshold of a class is the one of highest F1, halfway between the last detection it
keeps and the next one (so a model whose scores shift a little keeps the same detections);
``retinanet-predict --score-threshold best:REPORT.json`` and ``retinanet-convert`` read them
back (:func:`class_thresholds_from_report`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_retinanet.evaluation.results import ClassResult, EvaluationResult

BEST_PREFIX = "best:"


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates of the detections kept above a threshold."""

    threshold: float
    true_positives: int
    false_positives: int
    boxes: int

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1 when nothing is kept (no detection is wrong)."""
        kept = self.true_positives + self.false_positives
        return self.true_positives / kept if kept else 1.0

    @property
    def recall(self) -> float:
        """TP / boxes; 0 without boxes."""
        return self.true_positives / self.boxes if self.boxes else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0 or nothing is found)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if self.true_positives and p + r > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        """JSON form."""
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.boxes - self.true_positives,
        }


def _counts(result: ClassResult) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative TP and FP after each ranked point of a class's curve."""
    tp = np.rint(result.recall * result.num_annotations).astype(np.int64)
    tp = tp if result.num_annotations else np.zeros(len(result.precision), np.int64)
    seen = np.arange(1, len(result.precision) + 1)
    return tp, seen - tp


def operating_point(result: ClassResult, threshold: float) -> OperatingPoint:
    """The detections of one class scoring strictly above ``threshold``."""
    tp, fp = _counts(result)
    kept = int(np.count_nonzero(result.scores > threshold))
    if kept == 0:
        return OperatingPoint(float(threshold), 0, 0, result.num_annotations)
    return OperatingPoint(float(threshold), int(tp[kept - 1]), int(fp[kept - 1]),
                          result.num_annotations)  # fmt: skip


def best_f1(result: ClassResult, floor: float) -> OperatingPoint:
    """The threshold of highest F1 for one class (the highest such threshold on ties).

    Args:
        result: the class's curve with its scores.
        floor: the evaluation's own score threshold: nothing below it was seen, so a
            threshold that keeps every detection is this.
    """
    tp, fp = _counts(result)
    scores = result.scores
    if not len(scores) or not result.num_annotations:
        return OperatingPoint(float(max(floor, scores[0] if len(scores) else floor)), 0, 0,
                              result.num_annotations)  # fmt: skip
    # A threshold can only cut between distinct scores: the last point of each run of ties,
    # where something lower (the next score, or the floor) leaves room for a strict ">".
    last = np.flatnonzero(np.append(scores[1:] < scores[:-1], True))
    below_last = np.append(scores[last[:-1] + 1], floor)
    last = last[below_last < scores[last]]
    if not len(last):
        return OperatingPoint(float(floor), 0, 0, result.num_annotations)
    precision = tp[last] / (last + 1)
    recall = tp[last] / result.num_annotations
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp[last] > 0, 2 * precision * recall / (precision + recall), 0.0)
    choice = int(np.argmax(f1))  # first: the highest threshold of the best F1
    index = last[choice]
    below = scores[index + 1] if index + 1 < len(scores) else floor
    threshold = float((scores[index] + below) / 2)
    return OperatingPoint(threshold, int(tp[index]), int(fp[index]), result.num_annotations)


def threshold_report(result: EvaluationResult, threshold: float | None = None) -> dict[str, Any]:
    """Per class and overall (summed counts), the operating point at ``threshold`` (the
    evaluation's score threshold by default) and at each class's best-F1 threshold."""
    threshold = result.score_threshold if threshold is None else float(threshold)
    classes, at, best = {}, [], []
    for c in result.classes:
        if c.num_annotations == 0 and c.num_detections == 0:
            continue
        point = operating_point(c, threshold)
        top = best_f1(c, result.score_threshold)
        at.append(point)
        best.append(top)
        classes[c.name] = {"at_threshold": point.to_dict(), "best_f1": top.to_dict()}

    def overall(points: Sequence[OperatingPoint], value: float | None) -> dict[str, Any]:
        total = OperatingPoint(
            value if value is not None else float("nan"),
            sum(p.true_positives for p in points),
            sum(p.false_positives for p in points),
            sum(p.boxes for p in points),
        )
        record = total.to_dict()
        if value is None:
            record["threshold"] = "per class"
        return record

    return {
        "score_threshold": threshold,
        "classes": classes,
        "overall": {"at_threshold": overall(at, threshold), "best_f1": overall(best, None)},
        "best_thresholds": {name: v["best_f1"]["threshold"] for name, v in classes.items()},
    }


def format_thresholds(report: dict[str, Any]) -> str:
    """The report of :func:`threshold_report` as a console table."""
    t = report["score_threshold"]
    rows = [(name, v["at_threshold"], v["best_f1"]) for name, v in report["classes"].items()]
    rows.append(("all", report["overall"]["at_threshold"], report["overall"]["best_f1"]))
    width = max(5, *(len(r[0]) for r in rows))
    header = (
        f"{'class':<{width}}  {'P@' + format(t, 'g'):>7} {'R':>6} {'F1':>6}   "
        f"{'best F1 at':>10} {'P':>6} {'R':>6} {'F1':>6}"
    )
    lines = [header, "-" * len(header)]
    for name, at, best in rows:
        where = best["threshold"]
        where = f"{where:.3f}" if isinstance(where, float) else where
        lines.append(
            f"{name:<{width}}  {at['precision']:>7.3f} {at['recall']:>6.3f} {at['f1']:>6.3f}   "
            f"{where:>10} {best['precision']:>6.3f} {best['recall']:>6.3f} {best['f1']:>6.3f}"
        )
    return "\n".join(lines)


def class_thresholds_from_report(
    path: str | os.PathLike, class_names: Sequence[str] | None, num_classes: int | None = None
) -> tuple[float, ...]:
    """Per-class score thresholds (best F1) from a ``retinanet-evaluate`` JSON report.

    Args:
        path: the report (``--json`` of ``retinanet-evaluate``).
        class_names: the model's class names by label, matched by name; None: the report's
            classes in label order.
        num_classes: the model's number of classes (when it has no names).

    Returns:
        ``(K,)`` thresholds by label. A class the report has no threshold for (no box and no
        detection in the evaluation) gets the highest threshold of the others, the careful
        choice.

    Raises:
        FileNotFoundError: no such report.
        ValueError: the report has no thresholds, or its classes do not match the model's.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"evaluation report not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a JSON evaluation report: {e}") from e
    found = report.get("thresholds") if isinstance(report, dict) else None
    best = found.get("best_thresholds") if isinstance(found, dict) else None
    if not best:
        raise ValueError(
            f"{path} has no per-class thresholds (field thresholds.best_thresholds); write it "
            "with retinanet-evaluate ... --json REPORT.json"
        )
    order = [c["name"] for c in report.get("classes", [])] or list(best)
    names = list(class_names) if class_names is not None else order
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"{path} covers {len(names)} classes but the model has {num_classes}; evaluate "
            "this model to get its thresholds"
        )
    unknown = [n for n in best if n not in names]
    if unknown:
        raise ValueError(
            f"{path} has thresholds for classes the model does not know: {unknown}; the "
            f"model's classes are {names}"
        )
    fallback = max(float(v) for v in best.values())
    return tuple(float(best.get(name, fallback)) for name in names)


def parse_best(value: str) -> str | None:
    """The report path of a ``best:REPORT.json`` option value, else None."""
    return value[len(BEST_PREFIX) :] if value.startswith(BEST_PREFIX) else None


def score_threshold_option(text: str) -> float | str:
    """argparse type of ``--score-threshold``: a number in [0, 1], or ``best:REPORT.json``
    (each class's best-F1 threshold from a ``retinanet-evaluate`` report)."""
    if text.startswith(BEST_PREFIX):
        if not parse_best(text):
            raise argparse.ArgumentTypeError(
                f"{text!r}: name the report, e.g. best:evaluation/report.json"
            )
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a number in [0, 1] or best:REPORT.json (a retinanet-evaluate report), "
            f"got {text!r}"
        )
    return value


def threshold_settings(
    value: float | str | None, class_names: Sequence[str] | None, num_classes: int | None
) -> dict[str, Any]:
    """The detection-setting options a ``--score-threshold`` value asks for: ``{}`` for None,
    ``{"score_threshold": v}`` for a number, and for ``best:REPORT.json`` the per-class
    thresholds with the lowest of them as the one threshold (what the graph must keep)."""
    if value is None:
        return {}
    if isinstance(value, str):
        thresholds = class_thresholds_from_report(parse_best(value), class_names, num_classes)
        return {"score_threshold": min(thresholds), "class_score_thresholds": thresholds}
    return {"score_threshold": float(value)}
