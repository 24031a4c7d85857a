"""Reports of an :class:`~keras_retinanet.evaluation.runner.EvaluationResult`: the table
``retinanet-evaluate`` prints, the JSON report, precision/recall plots and annotated images."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import cv2
import numpy as np

from keras_retinanet.evaluation.runner import EvaluationResult
from keras_retinanet.evaluation.thresholds import threshold_report
from keras_retinanet.evaluation.voc import mean_average_precision, plot_precision_recall
from keras_retinanet.visualization import draw_annotations, draw_detections


def format_table(result: EvaluationResult) -> str:
    """A plain-text table: one row per class (name, ground-truth boxes, detections, AP), mAP
    and the mean inference time per image."""
    name_width = max([5] + [len(c.name) for c in result.classes])
    ap_name = {"voc07": "AP (11-pt)", "voc12": "AP", "coco": "AP"}[result.metric]
    header = f"{'class':<{name_width}}  {'boxes':>6}  {'detections':>10}  {ap_name:>10}"
    lines = [header, "-" * len(header)]
    for c in result.classes:
        ap = f"{c.average_precision:.4f}" if c.num_annotations > 0 else "-"
        lines.append(
            f"{c.name:<{name_width}}  {c.num_annotations:>6d}  {c.num_detections:>10d}  {ap:>10}"
        )
    lines.append("-" * len(header))
    counted = sum(c.num_annotations > 0 for c in result.classes)
    if result.metric == "coco":
        voc_map = mean_average_precision(result.average_precisions)
        lines.append(f"mAP@{result.iou_threshold:g} (all-point, {counted} classes): {voc_map:.4f}")
        for name, value in (result.coco_metrics or {}).items():
            lines.append(f"COCO {name:<6}: {value:.4f}")
        lines.append(f"mAP (COCO AP@[.5:.95]): {result.mean_average_precision:.4f}")
    else:
        lines.append(
            f"mAP@{result.iou_threshold:g} ({result.metric}, {counted} classes with ground "
            f"truth): {result.mean_average_precision:.4f}"
        )
    lines.append(
        f"mean inference time: {result.inference_time * 1000:.1f} ms per image "
        f"({result.num_images} images; first batch, with graph compilation: "
        f"{result.first_batch_time:.2f} s)"
    )
    return "\n".join(lines)


def write_json_report(
    result: EvaluationResult, path: str | os.PathLike, extra: dict | None = None
) -> str:
    """Write :meth:`EvaluationResult.to_dict`, the thresholds report (``"thresholds"``:
    precision, recall and F1 at the score threshold and the best-F1 threshold per class, see
    :func:`~keras_retinanet.evaluation.thresholds.threshold_report`) and ``extra`` entries as
    JSON.

    Args:
        result: the evaluation.
        path: the JSON file; missing folders are created.
        extra: more top-level entries (the model path, the data set...).

    Returns:
        ``path`` as a string.
    """
    path = os.fspath(path)
    report = result.to_dict()
    report["thresholds"] = threshold_report(result)
    report.update(extra or {})
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, default=str)
        f.write("\n")
    return path


def write_coco_results(generator: Any, result: EvaluationResult, path: str | os.PathLike) -> str:
    """Write the detections as a COCO results file in a COCO dataset's own image and category
    ids: what ``COCO.loadRes`` and ``COCOeval`` read, and the evaluation server takes.

    Args:
        generator: the :class:`~keras_retinanet.preprocessing.coco.CocoGenerator` evaluated.
        result: from :func:`~keras_retinanet.evaluation.runner.evaluate` on it.
        path: the JSON file; missing folders are created.

    Returns:
        ``path`` as a string.
    """
    # pycocotools (the optional [coco] extra) loads only for COCO data
    from keras_retinanet.evaluation.coco import dataset_results

    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dataset_results(generator, result.image_indices, result.detections), f)
    return path


def _file_stem(text: str) -> str:
    """A file-name-safe version of a class or image name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def save_precision_recall_plots(
    result: EvaluationResult, directory: str | os.PathLike
) -> list[str]:
    """One precision/recall PNG per class with ground truth, named ``<label>_<name>.png``.

    Returns:
        The paths written, by label.
    """
    directory = os.fspath(directory)
    paths = []
    for c in result.classes:
        if c.num_annotations == 0:
            continue
        path = os.path.join(directory, f"{c.label:03d}_{_file_stem(c.name)}.png")
        paths.append(
            plot_precision_recall(c.recall, c.precision, c.average_precision, c.name, path)
        )
    return paths


def save_detection_images(
    generator: Any,
    result: EvaluationResult,
    directory: str | os.PathLike,
    score_threshold: float | None = None,
) -> list[str]:
    """Draw ground truth and detections on each evaluated image and write it as PNG.

    Ground truth is drawn in green (difficult boxes dashed), detections in their class colour
    with ``"name: score"`` captions. Files are named after the image (``<stem>.png``; a
    repeated stem gets ``_<index>``).

    Args:
        generator: the generator ``result`` was computed on.
        result: from :func:`evaluate`.
        directory: output folder, created if missing.
        score_threshold: draw detections scoring above this; None: the detection settings'
            display threshold, 0.5 (the evaluation keeps many
            low-scoring ones that would hide the image).

    Returns:
        The paths written, in the order of ``result.image_indices``.
    """

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    names = dict(enumerate(result.class_names))
    used: set[str] = set()
    paths = []
    for index, detections, ground_truth in zip(
        result.image_indices, result.detections, result.annotations
    ):
        image = np.ascontiguousarray(generator.load_image(index)).copy()
        draw_annotations(image, ground_truth, label_to_name=names)
        draw_detections(
            image,
            detections.boxes,
            detections.scores,
            detections.labels,
            label_to_name=names,
            score_threshold=score_threshold,
        )
        try:
            source = generator.image_path(index)
        except (AttributeError, NotImplementedError):
            source = str(index)
        stem = _file_stem(os.path.splitext(os.path.basename(source))[0])
        if stem in used:
            stem = f"{stem}_{index}"
        used.add(stem)
        path = os.path.join(directory, f"{stem}.png")
        if not cv2.imwrite(path, image):
            raise OSError(f"could not write {path}; check that the folder is writable")
        paths.append(path)
    return paths


LOW_AP = 0.05


def low_ap_hint(result: EvaluationResult, model_path: str, is_snapshot: bool) -> str | None:
    """One line for the classes whose AP is below :data:`LOW_AP` (with boxes to find): the
    command that tells whether no anchor fits them or the model has not learned them."""
    low = [c.name for c in result.classes if c.num_annotations and c.average_precision < LOW_AP]
    if not low or result.metric == "coco":
        return None
    names = ", ".join(low)
    if not is_snapshot:
        return (
            f"AP below {LOW_AP:g}: {names}. A training snapshot of this model (as "
            "retinanet-train writes) tells why: retinanet-debug DATASET --snapshot SNAPSHOT "
            "--scores"
        )
    return (
        f"AP below {LOW_AP:g}: {names}. Why (no anchor fits them, or the model has not learned "
        f"them yet): retinanet-debug DATASET --snapshot {model_path} --scores"
    )
