"""COCO detection metrics, computed by pycocotools from the package's in-memory structures.

The inputs are those of :mod:`keras_retinanet.evaluation.voc`: ``detections[i][c]`` is a
``(D, 5)`` array of ``[x1, y1, x2, y2, score]`` and ``annotations[i][c]`` a dict with
``"bboxes"`` ``(G, 4)`` and optionally ``"difficult"`` ``(G,)``. Boxes are ``(x1, y1, x2, y2)``
half-open absolute pixels, so they become COCO ``[x, y, w, h]`` as
``[x1, y1, x2 - x1, y2 - y1]`` with no ``+ 1``, the same continuous convention COCO uses.

Identifiers, all 1-based:

* ``image_id = i + 1`` for the ``i``-th image of the lists;
* ``category_id = c + 1`` for class index ``c`` (named ``class_names[c]``);
* annotation ids ``1, 2, ...``. They must be non-zero: COCOeval records "matched to ground
  truth id 0" and "unmatched" with the same 0, so an annotation with id 0 could never count
  as a true positive. Image and category ids are 1-based for the same habit.

This in-memory ground truth is for data that has no COCO file (VOC, CSV). A COCO dataset is
scored against its own annotation file instead (:func:`evaluate_on_dataset`): its image and
category ids, crowd flags and areas as given, as ``COCOeval`` run by hand on the same
detections would score them.

Difficult boxes are written with ``iscrowd = 1``. COCOeval overwrites any ``"ignore"`` field of
a ground-truth annotation with its ``iscrowd`` flag, so ``iscrowd`` is the only way to make it
ignore a box. The effect is close to VOC's: such a box is not in the recall denominator, and
detections that match it (any number of them) are neither true nor false positives. Three
differences remain, all COCOeval's rules for crowd boxes: the overlap with a crowd box is
``intersection / detection area`` (at least the usual IoU); a detection is matched to a regular
box first when one is above the threshold; and an ignored detection still fills one of its
image's ``maxDets`` slots (1, 10 or 100 per class), which can lower ``AR1``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "COCO_METRIC_NAMES",
    "coco_ground_truth",
    "coco_results",
    "dataset_results",
    "evaluate_coco",
    "evaluate_coco_results",
    "evaluate_on_dataset",
]

# The order of COCOeval.stats for iouType "bbox" (see COCOeval.summarize).
COCO_METRIC_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def _quiet(verbose: bool):
    """A context that swallows pycocotools' progress prints unless ``verbose``."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _in_memory_coco(dataset: dict) -> COCO:
    """Builds a ``COCO`` object from a dataset dict without touching the file system."""
    coco = COCO()
    coco.dataset = dataset
    with _quiet(False):
        coco.createIndex()
    return coco


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``(x1, y1, x2, y2)`` boxes to ``(N, 4)`` COCO ``[x, y, w, h]``."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_ground_truth(
    annotations: Sequence[Sequence[Mapping[str, np.ndarray]]],
    image_sizes: Sequence[tuple[int, int]],
    class_names: Sequence[str],
) -> COCO:
    """Builds an in-memory pycocotools ground truth from per-image, per-class annotations.

    Args:
        annotations: one entry per image; ``annotations[i][c]`` is a dict with ``"bboxes"``, a
            ``(G, 4)`` float array of ``(x1, y1, x2, y2)`` boxes in absolute pixels, and
            optionally ``"difficult"``, a ``(G,)`` bool array (missing means all False).
        image_sizes: ``(height, width)`` of each image, in the order of ``annotations``.
        class_names: the ``K`` class names; class ``c`` becomes category ``c + 1``.

    Returns:
        A ``COCO`` object with ``images`` (id ``i + 1``), ``categories`` (id ``c + 1``) and
        ``annotations`` whose ``bbox`` is ``[x, y, w, h]``, ``area`` is ``w * h`` and
        ``iscrowd`` is 1 for difficult boxes (see the module docstring). ``coco.dataset`` is
        JSON-serialisable.

    Raises:
        ValueError: if the lists differ in length or an entry has the wrong shape.
    """
    if len(annotations) != len(image_sizes):
        raise ValueError(
            f"annotations cover {len(annotations)} images but image_sizes has "
            f"{len(image_sizes)} entries; give one (height, width) per image"
        )
    images = [
        {"id": i + 1, "height": int(height), "width": int(width), "file_name": str(i)}
        for i, (height, width) in enumerate(image_sizes)
    ]
    categories = [{"id": c + 1, "name": str(name)} for c, name in enumerate(class_names)]
    coco_annotations = []
    for i, annotations_image in enumerate(annotations):
        for c in range(len(class_names)):
            try:
                entry = annotations_image[c]
            except (IndexError, KeyError) as error:
                raise ValueError(
                    f"annotations[{i}] has no entry for class {c} ({class_names[c]!r}); give "
                    "one dict per class in class_names"
                ) from error
            boxes = np.asarray(entry["bboxes"], dtype=np.float64)
            if boxes.size == 0:
                continue
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(
                    f'annotations[{i}][{c}]["bboxes"] has shape {boxes.shape}; expected (G, 4) '
                    "rows of [x1, y1, x2, y2]"
                )
            difficult = entry.get("difficult")
            if difficult is None:
                difficult = np.zeros(len(boxes), dtype=bool)
            difficult = np.asarray(difficult, dtype=bool).reshape(-1)
            if difficult.shape != (len(boxes),):
                raise ValueError(
                    f'annotations[{i}][{c}]["difficult"] has {difficult.size} flags for '
                    f"{len(boxes)} boxes; give one flag per box"
                )
            for box_xywh, is_difficult in zip(_xywh(boxes), difficult):
                x, y, w, h = (float(v) for v in box_xywh)
                coco_annotations.append(
                    {
                        "id": len(coco_annotations) + 1,
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": int(is_difficult),
                    }
                )
    dataset = {"images": images, "categories": categories, "annotations": coco_annotations}
    return _in_memory_coco(dataset)


def coco_results(detections: Sequence[Sequence[np.ndarray]], num_classes: int) -> list[dict]:
    """Converts per-image, per-class detections into a COCO results list.

    Args:
        detections: one entry per image; ``detections[i][c]`` is a ``(D, 5)`` float array of
            ``[x1, y1, x2, y2, score]`` rows (absolute pixels) for image ``i`` and class ``c``.
        num_classes: the number of classes ``K``; classes ``0 .. K-1`` are read.

    Returns:
        A list of ``{"image_id": i + 1, "category_id": c + 1, "bbox": [x, y, w, h],
        "score": s}`` dicts of Python floats and ints, ready for ``COCO.loadRes`` or
        ``json.dump``.

    Raises:
        ValueError: if an entry has the wrong shape.
    """
    results = []
    for i, detections_image in enumerate(detections):
        for c in range(num_classes):
            try:
                dets = np.asarray(detections_image[c], dtype=np.float64)
            except (IndexError, KeyError) as error:
                raise ValueError(
                    f"detections[{i}] has no entry for class {c}; give one (D, 5) array per "
                    "class, an empty np.zeros((0, 5)) where there is nothing"
                ) from error
            if dets.size == 0:
                continue
            if dets.ndim != 2 or dets.shape[1] != 5:
                raise ValueError(
                    f"detections[{i}][{c}] has shape {dets.shape}; expected (D, 5) rows of "
                    "[x1, y1, x2, y2, score]"
                )
            for box_xywh, score in zip(_xywh(dets[:, :4]), dets[:, 4]):
                results.append(
                    {
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [float(v) for v in box_xywh],
                        "score": float(score),
                    }
                )
    return results


def evaluate_coco(
    detections: Sequence[Sequence[np.ndarray]],
    annotations: Sequence[Sequence[Mapping[str, np.ndarray]]],
    image_sizes: Sequence[tuple[int, int]],
    class_names: Sequence[str],
    verbose: bool = False,
) -> dict[str, float]:
    """COCO box AP and AR of detections, as computed by pycocotools' ``COCOeval``.

    Args:
        detections: one entry per image; ``detections[i][c]`` is a ``(D, 5)`` float array of
            ``[x1, y1, x2, y2, score]`` rows (absolute pixels) for image ``i`` and class ``c``.
        annotations: one entry per image; ``annotations[i][c]`` is a dict with ``"bboxes"``, a
            ``(G, 4)`` float array of ``(x1, y1, x2, y2)`` boxes, and optionally
            ``"difficult"``, a ``(G,)`` bool array (difficult boxes are ignored, see the module
            docstring).
        image_sizes: ``(height, width)`` of each image, in the order of the lists.
        class_names: the ``K`` class names.
        verbose: True to let pycocotools print its progress and summary table.

    Returns:
        ``{name: value}`` for the names in :data:`COCO_METRIC_NAMES` (``AP``, ``AP50``, ``AP75``,
        ``APs``, ``APm``, ``APl``, ``AR1``, ``AR10``, ``AR100``, ``ARs``, ``ARm``, ``ARl``), each
        in ``[0, 1]``, or -1.0 where COCOeval has no ground truth to score (e.g. ``APs`` when
        no box is small). With no detections at all (``COCO.loadRes`` rejects an empty list)
        COCOeval still runs, on an empty result set, so every defined metric is 0.0 and every
        undefined one -1.0, exactly as pycocotools reports them.

    Raises:
        ValueError: if the inputs disagree in length or shape.
    """
    if len(detections) != len(annotations):
        raise ValueError(
            f"detections cover {len(detections)} images but annotations cover "
            f"{len(annotations)}; give both in the same image order"
        )
    ground_truth = coco_ground_truth(annotations, image_sizes, class_names)
    results = coco_results(detections, len(class_names))

    return evaluate_coco_results(ground_truth, results, verbose=verbose)


def evaluate_coco_results(
    ground_truth: COCO,
    results: list[dict],
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """``COCOeval`` (iouType ``bbox``) of a results list against a ground truth, as by hand.

    Args:
        ground_truth: e.g. ``COCO("instances_val2017.json")``.
        results: COCO results dicts (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
            ``score``), in the ground truth's ids.
        image_ids: the images to score (COCOeval's ``params.imgIds``); None for all of the
            ground truth's.
        verbose: let pycocotools print its progress and summary table.

    Returns:
        ``{name: value}`` for :data:`COCO_METRIC_NAMES`, -1.0 where undefined.
    """
    with _quiet(verbose):
        if results:
            detections_coco = ground_truth.loadRes(list(results))
        else:  # loadRes rejects an empty list; score an empty result set instead
            detections_coco = _in_memory_coco(
                {
                    "images": list(ground_truth.dataset["images"]),
                    "categories": list(ground_truth.dataset["categories"]),
                    "annotations": [],
                }
            )
        evaluator = COCOeval(ground_truth, detections_coco, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}


def dataset_results(generator: Any, image_indices: Sequence[int], detections: Sequence) -> list:
    """Detections as a COCO results list in a COCO dataset's own ids.

    Args:
        generator: a :class:`~keras_retinanet.preprocessing.coco.CocoGenerator`.
        image_indices: the generator's index of each image in ``detections``.
        detections: per image, an object with ``boxes`` ``(D, 4)`` ``(x1, y1, x2, y2)`` in
            original pixels, ``scores`` ``(D,)`` and ``labels`` ``(D,)`` (our labels).

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``, ready for
        ``json.dump`` or ``COCO.loadRes``.
    """
    results = []
    for index, found in zip(image_indices, detections):
        image_id = generator.coco_image_id(index)
        boxes = np.asarray(found.boxes, dtype=np.float64).reshape(-1, 4)
        for box, score, label in zip(_xywh(boxes), found.scores, found.labels):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": generator.label_to_coco_label(int(label)),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return results


def evaluate_on_dataset(
    generator: Any, image_indices: Sequence[int], detections: Sequence, verbose: bool = False
) -> dict[str, float]:
    """COCO metrics of detections on a COCO dataset, against its original annotation file.

    Crowd regions ignore the detections on them and the area buckets use the file's
    ``area``, exactly as ``COCOeval`` on :func:`dataset_results` does by hand.
    """
    results = dataset_results(generator, image_indices, detections)
    image_ids = [generator.coco_image_id(index) for index in image_indices]
    return evaluate_coco_results(generator.coco, results, image_ids, verbose)
