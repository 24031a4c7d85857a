"""Running an inference model on images of any size, with results in original pixels.

Used by evaluation, ``retinanet-predict`` and the notebook, so that resizing, padding and
rescaling are written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_retinanet.preprocessing.image import preprocess_image, resize_image

# Pad inputs up to a multiple of 128 (the coarsest stride, P7): every pyramid level then has
# an exact size, and a compiled graph is reused for all images that round to the same size,
# instead of being retraced for every new image shape.
DEFAULT_PAD_MULTIPLE = 128


@dataclass
class Detections:
    """Detections of one image in its original pixels.

    Attributes:
        boxes: ``(D, 4)`` float32 ``(x1, y1, x2, y2)``.
        scores: ``(D,)`` float32, descending.
        labels: ``(D,)`` int32.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def pad_to_multiple(size: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= size``."""
    return -(-int(size) // multiple) * multiple


def prepare_batch(
    images: Sequence[np.ndarray],
    min_side: float = 800,
    max_side: float = 1333,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> tuple[np.ndarray, list[float]]:
    """Resize, normalise and zero-pad BGR images into one network input.

    Padding goes at the bottom and right, so box coordinates are unchanged by it.

    Args:
        images: BGR uint8 images ``(H_i, W_i, 3)``.
        min_side: see :func:`keras_retinanet.preprocessing.image.resize_image`.
        max_side: see :func:`keras_retinanet.preprocessing.image.resize_image`.
        pad_multiple: pad height and width up to a multiple of this.

    Returns:
        ``(batch, scales)``: float32 ``(B, H, W, 3)`` and each image's resize scale.
    """
    resized, scales = [], []
    for image in images:
        image, scale = resize_image(image, min_side=min_side, max_side=max_side)
        resized.append(preprocess_image(image))
        scales.append(scale)
    height = pad_to_multiple(max(i.shape[0] for i in resized), pad_multiple)
    width = pad_to_multiple(max(i.shape[1] for i in resized), pad_multiple)
    batch = np.zeros((len(resized), height, width, 3), dtype=np.float32)
    for index, image in enumerate(resized):
        batch[index, : image.shape[0], : image.shape[1]] = image
    return batch, scales


def detect(
    model: Any,
    images: Sequence[np.ndarray],
    min_side: float = 800,
    max_side: float = 1333,
    score_threshold: float = 0.0,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> list[Detections]:
    """Run an inference model (from ``retinanet_box``) on one batch of BGR images.

    Args:
        model: the inference model.
        images: BGR uint8 images of any sizes.
        min_side: resize target of the shorter side.
        max_side: bound on the longer side.
        score_threshold: drop detections at or below this (on top of the model's own).
        pad_multiple: see :func:`prepare_batch`.

    Returns:
        One :class:`Detections` per image, boxes in that image's original pixels and clipped
        to it, padding rows removed.
    """
    batch, scales = prepare_batch(images, min_side, max_side, pad_multiple)
    boxes, scores, labels = model.predict_on_batch(batch)
    boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
    results = []
    for index, (image, scale) in enumerate(zip(images, scales)):
        keep = (labels[index] >= 0) & (scores[index] > score_threshold)
        image_boxes = boxes[index][keep] / scale
        height, width = image.shape[:2]
        image_boxes[:, [0, 2]] = np.clip(image_boxes[:, [0, 2]], 0, width)
        image_boxes[:, [1, 3]] = np.clip(image_boxes[:, [1, 3]], 0, height)
        results.append(
            Detections(
                boxes=image_boxes.astype(np.float32),
                scores=scores[index][keep].astype(np.float32),
                labels=labels[index][keep].astype(np.int32),
            )
        )
    return results


def batched(items: Iterable[Any], batch_size: int) -> Iterable[list[Any]]:
    """Consecutive lists of ``batch_size`` items (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
