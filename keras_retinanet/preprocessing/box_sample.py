"""Ground-truth boxes of a dataset as training sees them (network pixels, with the shapes of
their images): what the anchor statistics of :mod:`keras_retinanet.preprocessing.anchor_fit`
are computed over."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from tqdm import tqdm

from keras_retinanet.preprocessing.image import pad_to_multiple, resized_shape
from keras_retinanet.preprocessing.transform import filter_boxes


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


def subset(sample: BoxSample, mask: np.ndarray) -> BoxSample:
    """The boxes where ``mask`` is True."""
    return dataclasses.replace(
        sample,
        bboxes=sample.bboxes[mask],
        labels=sample.labels[mask],
        image_shapes=sample.image_shapes[mask],
        padded_shapes=sample.padded_shapes[mask],
    )
