"""Tiled inference for large photos: small objects found at the network's resolution.

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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from keras_retinanet.inference import Detections, batched
from keras_retinanet.model.boxes import compute_overlap

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
