"""Running an inference model on images of any size, with results in original pixels.

Used by evaluation, ``retinanet-predict`` and the notebook, so that resizing, padding and
rescaling are written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_retinanet.model.image_sizes import predict_sized
from keras_retinanet.model.settings import (
    DetectionSettings,
    check_threshold,
    graph_settings,
    settings_of_model,
)
from keras_retinanet.model.variants import get_variant
from keras_retinanet.preprocessing.image import (  # noqa: F401  (pad_to_multiple re-exported)
    pad_batch,
    pad_to_multiple,
    resize_image,
)


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


def prepare_batch(
    images: Sequence[np.ndarray],
    min_side: float = 800,
    max_side: float = 1333,
    pad_multiple: int | None = None,
    variant: Any = None,
) -> tuple[np.ndarray, list[Any]]:
    """Resize, normalise and zero-pad BGR images into one network input.

    Padding goes at the bottom and right, so box coordinates are unchanged by it.

    Args:
        images: BGR uint8 images ``(H_i, W_i, 3)``.
        min_side: see :func:`keras_retinanet.preprocessing.image.resize_image`.
        max_side: see :func:`keras_retinanet.preprocessing.image.resize_image`.
        pad_multiple: pad height and width up to a multiple of this; None: the variant's
            (:data:`DEFAULT_PAD_MULTIPLE` for ours, 1 for fizyr's, which pads a batch to
            its largest image only).
        variant: the model variant (its resize rule, padding and padding value); None: ours.

    Returns:
        ``(batch, scales)``: float32 ``(B, H, W, 3)`` and each image's resize scale (see
        :func:`keras_retinanet.preprocessing.image.resize_image`).
    """
    batch, scales, _ = _prepare(images, min_side, max_side, pad_multiple, variant)
    return batch, scales


def _prepare(
    images: Sequence[np.ndarray],
    min_side: float,
    max_side: float,
    pad_multiple: int | None,
    variant: Any,
) -> tuple[np.ndarray, list[Any], list[tuple[int, int]]]:
    """:func:`prepare_batch`, and each resized image's ``(height, width)`` in the batch."""
    variant = get_variant(variant)
    if pad_multiple is None:
        pad_multiple = variant.pad_multiple
    resized, scales = [], []
    for image in images:
        image, scale = resize_image(image, min_side, max_side, rule=variant.resize)
        resized.append(image)
        scales.append(scale)
    sizes = [(int(image.shape[0]), int(image.shape[1])) for image in resized]
    return pad_batch(resized, pad_multiple, variant.pad_value()), scales, sizes


def detect(
    model: Any,
    images: Sequence[np.ndarray],
    min_side: float = 800,
    max_side: float = 1333,
    score_threshold: float | None = None,
    pad_multiple: int | None = None,
    settings: DetectionSettings | None = None,
    tile: Sequence[int] | None = None,
    tile_overlap: float = 0.2,
    tile_whole: bool = False,
    progress: bool = False,
) -> list[Detections]:
    """Run an inference model (from ``retinanet_box``) on one batch of BGR images.

    Args:
        model: the inference model.
        images: BGR uint8 images of any sizes.
        min_side: resize target of the shorter side.
        max_side: bound on the longer side.
        score_threshold: keep detections scoring above this; None: the settings'.
        pad_multiple: see :func:`prepare_batch`; None: the settings'.
        settings: the detection settings; None: the model's own (``detection_settings``, which
            ``retinanet_box`` and ``load_model`` set, else its graph's), else the defaults.
        tile: ``(height, width)``: detect each image tile by tile (photo pixels), merged as
            :func:`keras_retinanet.tiles.detect_tiled` does; None: the whole image at once.
        tile_overlap: share of a tile side that neighbouring tiles share.
        tile_whole: with ``tile``, also detect on the whole image (the large objects).
        progress: with ``tile``, a progress bar over each image's tiles.

    The images are resized and padded by the rule of the model's variant (its ``variant``
    attribute, which :func:`keras_retinanet.model.retinanet.retinanet_box` and
    :func:`keras_retinanet.model.retinanet.load_model` set; this package's own when absent).

    Returns:
        One :class:`Detections` per image, boxes in that image's original pixels and clipped
        to it, padding rows removed. A box that lies wholly outside the image (in the
        padding) has no area left after clipping and is dropped, never returned.

    Raises:
        ThresholdError: a score threshold below the one the model's graph applied.
    """
    variant = getattr(model, "variant", None)  # set by retinanet_box / load_model
    settings = (settings or settings_of_model(model) or DetectionSettings()).with_options(
        score_threshold=score_threshold, pad_multiple=pad_multiple
    )
    baked = graph_settings(model)
    if baked is not None:
        check_threshold(settings.score_threshold, baked.score_threshold)
    if tile is not None:
        from keras_retinanet.tiles import detect_tiled  # here: tiles imports this module

        def whole_images(crops: list[np.ndarray]) -> list[Detections]:
            return detect(model, crops, min_side, max_side, settings=settings)

        results = []
        for image in images:
            found = detect_tiled(
                whole_images, image, tile, tile_overlap, tile_whole, settings.nms_threshold,
                progress=progress,
            )  # fmt: skip
            cap = int(settings.max_detections)
            results.append(Detections(found.boxes[:cap], found.scores[:cap], found.labels[:cap]))
        return results
    pad = settings.padding_for(get_variant(variant))
    batch, scales, sizes = _prepare(images, min_side, max_side, pad, variant)
    # Boxes are clipped to their image before NMS, so the padding a batch adds changes nothing.
    boxes, scores, labels = predict_sized(model, batch, sizes)
    boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
    results = []
    for index, (image, scale) in enumerate(zip(images, scales)):
        keep = settings.keep(scores[index], labels[index])
        image_boxes = boxes[index][keep] / scale
        height, width = image.shape[:2]
        image_boxes[:, [0, 2]] = np.clip(image_boxes[:, [0, 2]], 0, width)
        image_boxes[:, [1, 3]] = np.clip(image_boxes[:, [1, 3]], 0, height)
        area = (image_boxes[:, 2] > image_boxes[:, 0]) & (image_boxes[:, 3] > image_boxes[:, 1])
        results.append(
            Detections(
                boxes=image_boxes[area].astype(np.float32),
                scores=scores[index][keep][area].astype(np.float32),
                labels=labels[index][keep][area].astype(np.int32),
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
