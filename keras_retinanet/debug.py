"""Anchor coverage over a dataset: the work behind ``retinanet-debug``.

:func:`analyze_coverage` runs :func:`keras_retinanet.coverage.image_coverage` on every image
of a generator, sums the result into a :class:`CoverageReport`, and writes one picture per
image plus ``coverage.json``. What "covered" means is explained in
:mod:`keras_retinanet.coverage`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from keras_retinanet.coverage import (  # noqa: F401  (re-exported: retinanet-debug's names)
    UNCOVERED_COLOR,
    ImageCoverage,
    anchor_color,
    draw_coverage,
    image_coverage,
    preprocessed_images,
)
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.preprocessing.anchor_fit import BoxSample, coverage_of, size_advice

COVERAGE_FILE = "coverage.json"


@dataclass
class CoverageReport:
    """Anchor coverage over a dataset.

    Attributes:
        class_names: names by label.
        anchor_parameters: the anchors analysed.
        positive_overlap: the IoU a box needs to count as covered.
        images: images analysed.
        boxes: per class, boxes counted (difficult ones excluded).
        uncovered: per class, boxes without an anchor of IoU >= ``positive_overlap``.
        difficult: difficult boxes left out.
        positive_anchors: positive anchors over all images.
        uncovered_sizes: ``(U, 2)`` width and height (network pixels) of the uncovered boxes.
        best_ious: best anchor IoU of every counted box.
        uncovered_images: ``{image path: number of uncovered boxes}``, images with any.
        pictures: paths of the pictures written.
        skipped: images that could not be read.
        image_min_side: the image size analysed (for the advice on uncovered boxes).
        pad_multiple: the network input's padding multiple.
        rule: the model variant's anchor rule.
        uncovered_boxes: ``(x1, y1, x2, y2, rows, cols, padded_rows, padded_cols, label)``
            of every uncovered box: the box in network pixels and its image's shapes.
    """

    class_names: list[str]
    anchor_parameters: AnchorParameters
    positive_overlap: float = 0.5
    images: int = 0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    uncovered: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    difficult: int = 0
    positive_anchors: int = 0
    uncovered_sizes: list[tuple[float, float]] = field(default_factory=list)
    best_ious: list[float] = field(default_factory=list)
    uncovered_images: dict[str, int] = field(default_factory=dict)
    pictures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    image_min_side: int = 800
    pad_multiple: int = 32
    rule: str = "centred"
    uncovered_boxes: list[tuple] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.boxes) == 0:
            self.boxes = np.zeros(len(self.class_names), dtype=np.int64)
            self.uncovered = np.zeros(len(self.class_names), dtype=np.int64)

    @property
    def total_boxes(self) -> int:
        """Boxes counted, all classes."""
        return int(self.boxes.sum())

    @property
    def total_uncovered(self) -> int:
        """Uncovered boxes, all classes."""
        return int(self.uncovered.sum())

    @property
    def uncovered_share(self) -> float:
        """Share of the counted boxes that no anchor covers (0 when there are no boxes)."""
        return self.total_uncovered / self.total_boxes if self.total_boxes else 0.0

    def add(
        self, path: str, coverage: ImageCoverage, padded_shape: tuple[int, int] | None = None
    ) -> None:
        """Count one image (``padded_shape``: of its network input; the image's own if None)."""
        self.images += 1
        counted, uncovered = coverage.counted, coverage.uncovered
        labels = np.asarray(coverage.annotations["labels"], dtype=np.int64).reshape(-1)
        bboxes = np.asarray(coverage.annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
        np.add.at(self.boxes, labels[counted], 1)
        np.add.at(self.uncovered, labels[uncovered], 1)
        self.difficult += int((~counted).sum())
        self.positive_anchors += len(coverage.positive_anchors)
        self.best_ious.extend(float(v) for v in coverage.best_iou[counted])
        shape = tuple(int(v) for v in coverage.image.shape[:2])
        padded = tuple(padded_shape) if padded_shape is not None else shape
        for (x1, y1, x2, y2), label in zip(bboxes[uncovered], labels[uncovered]):
            self.uncovered_sizes.append((float(x2 - x1), float(y2 - y1)))
            self.uncovered_boxes.append((x1, y1, x2, y2, *shape, *padded, int(label)))
        if uncovered.any():
            self.uncovered_images[path] = int(uncovered.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "images": self.images,
            "boxes": self.total_boxes,
            "uncovered": self.total_uncovered,
            "uncovered_share": self.uncovered_share,
            "difficult": self.difficult,
            "positive_overlap": self.positive_overlap,
            "positive_anchors_per_image": self.positive_anchors / max(self.images, 1),
            "anchor_parameters": self.anchor_parameters.to_dict(),
            "classes": {
                name: {
                    "boxes": int(self.boxes[label]),
                    "uncovered": int(self.uncovered[label]),
                    "uncovered_share": float(self.uncovered[label] / self.boxes[label])
                    if self.boxes[label]
                    else 0.0,
                }
                for label, name in enumerate(self.class_names)
            },
            "uncovered_images": self.uncovered_images,
            "skipped": self.skipped,
        }

    def size_advice(self) -> list[str]:
        """Per class, the ``--image-min-side`` at which the uncovered boxes would be covered,
        or the pyramid level they would need (:func:`~keras_retinanet.preprocessing.
        anchor_fit.size_advice`)."""
        if not self.uncovered_boxes:
            return []
        rows = np.asarray(self.uncovered_boxes, dtype=np.float64)
        sample = BoxSample(
            bboxes=rows[:, :4],
            labels=rows[:, 8].astype(np.int64),
            image_shapes=rows[:, 4:6].astype(np.int64),
            padded_shapes=rows[:, 6:8].astype(np.int64),
            class_names=self.class_names,
        )
        coverage = coverage_of(sample, self.anchor_parameters, self.rule, self.positive_overlap)
        return size_advice(
            sample, coverage, self.image_min_side, self.pad_multiple, self.rule,
            self.positive_overlap,
        )  # fmt: skip

    def format(self) -> str:
        """The statistics as a table for the console."""
        lines = [
            f"anchor coverage of {self.images} image(s), {self.total_boxes} box(es)"
            + (f" ({self.difficult} difficult box(es) not counted)" if self.difficult else ""),
            f"boxes with no positive anchor (no anchor with IoU >= {self.positive_overlap:g}): "
            f"{self.total_uncovered} / {self.total_boxes} = {100 * self.uncovered_share:.1f}%",
        ]
        width = max([len("class")] + [len(n) for n in self.class_names])
        lines.append(f"  {'class':<{width}}  {'boxes':>7}  {'uncovered':>9}  {'share':>6}")
        for label, name in enumerate(self.class_names):
            boxes, uncovered = int(self.boxes[label]), int(self.uncovered[label])
            if boxes == 0:
                continue
            lines.append(
                f"  {name:<{width}}  {boxes:>7}  {uncovered:>9}  {100 * uncovered / boxes:>5.1f}%"
            )
        if self.best_ious:
            ious = np.asarray(self.best_ious)
            lines.append(
                f"best anchor IoU per box: median {np.median(ious):.2f}, "
                f"10th percentile {np.percentile(ious, 10):.2f}"
            )
        if self.uncovered_sizes:
            sizes = np.asarray(self.uncovered_sizes)
            params = self.anchor_parameters
            smallest = min(params.sizes) * min(params.scales)
            largest = max(params.sizes) * max(params.scales)
            lines.append(
                f"uncovered boxes (network pixels): median {np.median(sizes[:, 0]):.0f}x"
                f"{np.median(sizes[:, 1]):.0f}, smallest {sizes[:, 0].min():.0f}x"
                f"{sizes[:, 1].min():.0f}, largest {sizes[:, 0].max():.0f}x{sizes[:, 1].max():.0f};"
                f" anchors span {smallest:.0f}..{largest:.0f} px (square side), ratios "
                f"{', '.join(f'{r:g}' for r in params.ratios)}"
            )
            lines.extend("  " + line for line in self.size_advice())
        if self.skipped:
            lines.append(f"{len(self.skipped)} unreadable image(s) skipped")
        if self.pictures:
            lines.append(f"{len(self.pictures)} picture(s) written")
        return "\n".join(lines)


def analyze_coverage(
    generator: Any,
    output_dir: str | os.PathLike | None = None,
    draw_anchors: bool = True,
    draw_ground_truth: bool = True,
    limit: int | None = None,
    progress: bool = True,
    negative_overlap: float = 0.4,
    positive_overlap: float = 0.5,
) -> CoverageReport:
    """Anchor coverage of every image of a generator, optionally drawn to PNG files.

    Each image goes through ``generator.preprocess_group`` (the generator's transform and
    resizing, as in training), and the anchors are those of ``generator.anchor_parameters``
    for the padded shape of that image.

    Args:
        generator: a :class:`keras_retinanet.preprocessing.generator.Generator`.
        output_dir: write ``<stem>.png`` per image (see :func:`draw_coverage`) and
            ``coverage.json`` here; None only computes the statistics.
        draw_anchors: draw positive anchors in the pictures.
        draw_ground_truth: draw the ground truth in the pictures.
        limit: analyse only the first ``limit`` images.
        progress: show a progress bar.
        negative_overlap: IoU below which an anchor is background (training's value).
        positive_overlap: IoU at or above which an anchor is positive (training's value).

    Returns:
        A :class:`CoverageReport`.
    """

    count = generator.size() if limit is None else min(int(limit), generator.size())
    report = CoverageReport(
        class_names=list(generator.classes),
        anchor_parameters=generator.anchor_parameters,
        positive_overlap=positive_overlap,
        image_min_side=generator.image_min_side,
        pad_multiple=generator.pad_multiple,
        rule=generator.variant.anchor_rule,
    )
    if output_dir is not None:
        output_dir = os.fspath(output_dir)
        os.makedirs(output_dir, exist_ok=True)
    used: set[str] = set()
    for path, image, image_annotations in preprocessed_images(
        generator, count, progress, "anchors", report.skipped
    ):
        padded_shape = generator.padded_shape([image])
        coverage = image_coverage(
            image,
            image_annotations,
            generator.num_classes(),
            generator.anchor_parameters,
            padded_shape=padded_shape,
            negative_overlap=negative_overlap,
            positive_overlap=positive_overlap,
            rule=generator.variant.anchor_rule,
        )
        report.add(path, coverage, padded_shape)
        if output_dir is not None and (draw_anchors or draw_ground_truth):
            picture = draw_coverage(coverage, report.class_names, draw_anchors, draw_ground_truth)
            stem = os.path.splitext(os.path.basename(path))[0]
            name, counter = f"{stem}.png", 1
            while name in used:
                name, counter = f"{stem}_{counter}.png", counter + 1
            used.add(name)
            picture_path = os.path.join(output_dir, name)
            if not cv2.imwrite(picture_path, picture):
                raise OSError(f"could not write {picture_path}; is the folder writable?")
            report.pictures.append(picture_path)
    if output_dir is not None:
        with open(os.path.join(output_dir, COVERAGE_FILE), "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=1)
    return report
