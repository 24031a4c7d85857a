"""Running an inference model on images of any size, with results in original pixels.

Used by evaluation, ``retinanet-predict`` and the notebook, so that resizing, padding and
rescaling are written once.

**Tiled inference for large photos**: small objects found at the network's resolution.

A 4000x3000 photo resized to an 800-pixel side shrinks a 20-pixel object to 5 pixels, below
anything the anchors cover. :func:`detect_tiled` cuts the photo into overlapping tiles, runs
the detector on each (each tile resized as any photo is, so a tile of the training size is
seen at its own pixels), and merges the detections in the photo's pixels:

1. a detection within :data:`SEAM_MARGIN` pixels of a tile edge that lies inside the photo is
   a cut object, dropped: with an overlap wider than the object (plus twice the margin) the
   neighbouring tile holds it whole, away from its own edges;
2. optionally, the detections of one pass over the whole photo are added (the objects larger
   than the overlap, which every tile cuts);
3. class-wise greedy NMS at the settings' IoU removes the objects found whole in two tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from keras_retinanet.model.boxes import compute_overlap
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
            :func:`keras_retinanet.inference.detect_tiled` does; None: the whole image at once.
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


# ---------------------------------------------------------------------------- tiles

# How close (photo pixels) to an inner tile edge a box may end before it counts as cut: a
# regressed box of a cut object ends at the edge or a pixel or two inside it.
SEAM_MARGIN = 2.0
DEFAULT_TILE_OVERLAP = 0.2  # of the tile side: 102 px of a 512 tile, wider than most objects


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets along one axis: the fewest tiles whose steps are at most
    ``tile * (1 - overlap)``, spread evenly from 0 to flush with the end (so neighbours share
    at least ``overlap`` of a tile); one tile when the photo is no longer than it."""
    if length <= tile:
        return [0]
    step = max(1.0, tile * (1 - overlap))
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_windows(
    height: int, width: int, tile: tuple[int, int], overlap: float
) -> list[tuple[int, int, int, int]]:
    """``(x1, y1, x2, y2)`` of every tile of an ``height x width`` photo, row by row."""
    tile_h, tile_w = min(int(tile[0]), height), min(int(tile[1]), width)
    return [
        (x, y, x + tile_w, y + tile_h)
        for y in tile_origins(height, tile_h, overlap)
        for x in tile_origins(width, tile_w, overlap)
    ]


def class_nms(detections: Detections, iou_threshold: float) -> Detections:
    """Greedy NMS per class: a box is dropped when a higher-scoring box of its class overlaps
    it with IoU above ``iou_threshold``. The result is sorted by descending score."""
    order = np.argsort(-detections.scores, kind="stable")
    boxes, scores = detections.boxes[order], detections.scores[order]
    labels = detections.labels[order]
    keep = np.ones(len(order), dtype=bool)
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        iou = compute_overlap(boxes[index], boxes[index])
        alive = np.ones(len(index), dtype=bool)
        for i in range(len(index)):
            if alive[i]:
                later = np.arange(len(index)) > i
                alive &= ~(later & (iou[i] > iou_threshold))
        keep[index] = alive
    return Detections(boxes[keep], scores[keep], labels[keep])


def _on_inner_edge(boxes: np.ndarray, window: tuple, height: int, width: int) -> np.ndarray:
    """``(D,)`` bool: boxes (photo pixels) ending at an edge of ``window`` inside the photo."""
    x1, y1, x2, y2 = window
    m = SEAM_MARGIN
    cut = np.zeros(len(boxes), dtype=bool)
    if x1 > 0:
        cut |= boxes[:, 0] <= x1 + m
    if y1 > 0:
        cut |= boxes[:, 1] <= y1 + m
    if x2 < width:
        cut |= boxes[:, 2] >= x2 - m
    if y2 < height:
        cut |= boxes[:, 3] >= y2 - m
    return cut


def detect_tiled(
    detect_images: Callable[[list[np.ndarray]], list[Detections]],
    image: np.ndarray,
    tile: Sequence[int],
    overlap: float = DEFAULT_TILE_OVERLAP,
    whole: bool = False,
    nms_threshold: float = 0.5,
    batch_size: int = 1,
    progress: bool = False,
) -> Detections:
    """Detections of one large photo, tile by tile, in the photo's pixels.

    Args:
        detect_images: runs the detector on a list of BGR crops and returns one
            :class:`~keras_retinanet.inference.Detections` per crop in its pixels (e.g.
            ``lambda crops: detect(model, crops, min_side, max_side)``).
        image: ``(H, W, 3)`` BGR photo.
        tile: ``(height, width)`` of a tile in photo pixels (clamped to the photo).
        overlap: share of a tile side that neighbouring tiles share, in ``[0, 0.9]``; it should
            exceed the side of the largest object to be found by the tiles.
        whole: also detect on the whole photo (the large objects).
        nms_threshold: IoU of the merging NMS (the detection settings').
        batch_size: tiles per detector call.
        progress: show a progress bar over the tiles.

    Returns:
        The merged :class:`~keras_retinanet.inference.Detections`, by descending score.

    Raises:
        ValueError: a tile side below 1 or an overlap outside ``[0, 0.9]``.
    """
    if len(tile) != 2 or min(int(t) for t in tile) < 1:
        raise ValueError(f"tile must be (height, width) of positive sizes, got {tuple(tile)}")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"tile overlap must be in [0, 0.9], got {overlap}")
    height, width = image.shape[:2]
    windows = tile_windows(height, width, (int(tile[0]), int(tile[1])), overlap)
    parts: list[Detections] = []
    bar: Any = tqdm(total=len(windows), unit="tile", desc="tiles") if progress else None
    try:
        for group in batched(windows, batch_size):
            crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in group]
            for window, found in zip(group, detect_images(crops)):
                boxes = found.boxes + np.asarray(window[:2] * 2, dtype=np.float32)
                keep = ~_on_inner_edge(boxes, window, height, width)
                parts.append(Detections(boxes[keep], found.scores[keep], found.labels[keep]))
            if bar is not None:
                bar.update(len(group))
    finally:
        if bar is not None:
            bar.close()
    if whole and len(windows) > 1:
        parts.extend(detect_images([image]))
    merged = Detections(
        np.concatenate([p.boxes for p in parts]).astype(np.float32).reshape(-1, 4),
        np.concatenate([p.scores for p in parts]).astype(np.float32),
        np.concatenate([p.labels for p in parts]).astype(np.int32),
    )
    return class_nms(merged, nms_threshold)


def tiled(
    detect_images: Callable[[list[np.ndarray]], list[Detections]],
    tile: Sequence[int] | None,
    overlap: float = DEFAULT_TILE_OVERLAP,
    whole: bool = False,
    nms_threshold: float = 0.5,
    progress: bool = False,
) -> Callable[[list[np.ndarray]], list[Detections]]:
    """``detect_images`` made to run each image tile by tile (:func:`detect_tiled`); itself
    when ``tile`` is None. For detectors other than a Keras model (an exported artifact's
    ``detect_images``)."""
    if tile is None:
        return detect_images

    def run(images: list[np.ndarray]) -> list[Detections]:
        return [
            detect_tiled(
                detect_images, image, tile, overlap, whole, nms_threshold, progress=progress
            )
            for image in images
        ]

    return run
