"""Box operations: IoU, box <-> regression-delta transforms, clipping.

Conventions used throughout the package:

* ``boxes`` are ``(x1, y1, x2, y2)`` in absolute pixels, 0-based and half-open, so a box's
  width is ``x2 - x1`` with no ``+ 1``. Pascal VOC's 1-based inclusive ``[xmin, xmax]`` is
  converted by the loader to ``x1 = xmin - 1, x2 = xmax``; IoU here then equals the VOC
  devkit's IoU with its ``+ 1``.
* Regression deltas are corner offsets normalised by the anchor size (fizyr's parametrisation,
  not Faster R-CNN's centre/log-size one), then standardised with ``(t - mean) / std``.

The delta transforms take an ``xp`` argument (``numpy`` or ``keras.ops``) so that the one
implementation serves both the NumPy data loader and the inference graph.

Invariant (tested): ``bbox_transform_inv(a, bbox_transform(a, b)) == b`` for any anchors ``a``
with positive width and height.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Standardisation of regression targets. std 0.2 scales typical corner offsets (about +-0.2 of
# the anchor size for a positive anchor) to unit variance, as in fizyr's keras-retinanet.
DEFAULT_MEAN = 0.0
DEFAULT_STD = 0.2


_OVERLAP_BLOCK = 1 << 15  # (block, K) float64 elements per temporary: 256 KiB


def compute_overlap(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU between two sets of boxes.

    Args:
        boxes: ``(N, 4)`` float array of ``(x1, y1, x2, y2)`` boxes.
        query_boxes: ``(K, 4)`` float array of ``(x1, y1, x2, y2)`` boxes.

    Returns:
        ``(N, K)`` float64 array of IoU values in ``[0, 1]``. Pairs whose union is empty (two
        zero-area boxes) get IoU 0.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    query_boxes = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    query_area = (query_boxes[:, 2] - query_boxes[:, 0]) * (query_boxes[:, 3] - query_boxes[:, 1])
    iou = np.empty((len(boxes), len(query_boxes)), dtype=np.float64)
    # The loader calls this with ~150k anchors and tens of boxes per image. Two things keep
    # that fast: blocks of anchors with temporaries reused in place stay in cache, and a query
    # box that misses a block's extent has IoU exactly 0 with every box of it, so it is not
    # computed (anchors come level by level in row-major order: a block is a band of the
    # image). Results are bitwise those of the plain whole-array formula.
    step = max(1, _OVERLAP_BLOCK // max(1, len(query_boxes)))
    starts = np.arange(0, len(boxes), step)
    if len(starts) == 0 or len(query_boxes) == 0:
        return iou
    # Extent of every block at once, and which query boxes reach into it: (blocks, K).
    low_x, low_y = (np.minimum.reduceat(boxes[:, i], starts) for i in (0, 1))
    high_x, high_y = (np.maximum.reduceat(boxes[:, i], starts) for i in (2, 3))
    hits = (
        np.minimum(query_boxes[None, :, 2], high_x[:, None])
        > np.maximum(query_boxes[None, :, 0], low_x[:, None])
    ) & (
        np.minimum(query_boxes[None, :, 3], high_y[:, None])
        > np.maximum(query_boxes[None, :, 1], low_y[:, None])
    )
    # A NaN coordinate makes a block's extent NaN: compute that block in full.
    hits[np.isnan(low_x + low_y + high_x + high_y)] = True
    for block_index, start in enumerate(starts):
        stop = start + step
        block, out, block_hits = boxes[start:stop], iou[start:stop], hits[block_index]
        if block_hits.all():
            _overlap_block(block, area[start:stop], query_boxes, query_area, out)
            continue
        out[...] = 0.0
        if block_hits.any():
            columns = np.flatnonzero(block_hits)
            part = np.empty((len(block), len(columns)), dtype=np.float64)
            _overlap_block(block, area[start:stop], query_boxes[columns], query_area[columns], part)
            out[:, columns] = part
    return iou


def _overlap_block(
    boxes: np.ndarray,
    area: np.ndarray,
    query_boxes: np.ndarray,
    query_area: np.ndarray,
    out: np.ndarray,
) -> None:
    # The same operations in the same order as the textbook formula, so results are bitwise
    # those of the whole-array version.
    iw = np.minimum(boxes[:, None, 2], query_boxes[None, :, 2])
    tmp = np.maximum(boxes[:, None, 0], query_boxes[None, :, 0])
    iw -= tmp
    np.maximum(iw, 0.0, out=iw)
    ih = np.minimum(boxes[:, None, 3], query_boxes[None, :, 3], out=out)
    np.maximum(boxes[:, None, 1], query_boxes[None, :, 1], out=tmp)
    ih -= tmp
    np.maximum(ih, 0.0, out=ih)
    intersection = np.multiply(iw, ih, out=iw)
    union = np.add(area[:, None], query_area[None, :], out=tmp)
    union -= intersection
    out[...] = 0.0
    np.divide(intersection, union, out=out, where=union > 0)


def box_iou(boxes1: Any, boxes2: Any, xp: Any = np) -> Any:
    """Pairwise IoU for batched tensors, in NumPy or ``keras.ops``.

    Args:
        boxes1: ``(..., N, 4)`` float ``(x1, y1, x2, y2)`` boxes.
        boxes2: ``(..., M, 4)`` float ``(x1, y1, x2, y2)`` boxes, same leading dims.
        xp: ``numpy`` or ``keras.ops``.

    Returns:
        ``(..., N, M)`` IoU; 0 where the union is empty.
    """
    x1a, y1a, x2a, y2a = (boxes1[..., i][..., :, None] for i in range(4))
    x1b, y1b, x2b, y2b = (boxes2[..., i][..., None, :] for i in range(4))
    iw = xp.maximum(xp.minimum(x2a, x2b) - xp.maximum(x1a, x1b), 0.0)
    ih = xp.maximum(xp.minimum(y2a, y2b) - xp.maximum(y1a, y1b), 0.0)
    intersection = iw * ih
    union = (x2a - x1a) * (y2a - y1a) + (x2b - x1b) * (y2b - y1b) - intersection
    return xp.where(union > 0, intersection / xp.maximum(union, 1e-12), 0.0 * union)


def _mean_std(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float32), (4,))
    std = np.broadcast_to(np.asarray(std, dtype=np.float32), (4,))
    if np.any(std <= 0):
        raise ValueError(f"bbox std must be positive, got {std.tolist()}")
    return mean, std


def bbox_transform(
    anchors: Any, gt_boxes: Any, mean: Any = DEFAULT_MEAN, std: Any = DEFAULT_STD, xp: Any = np
) -> Any:
    """Regression targets that move ``anchors`` onto ``gt_boxes``.

    ``t_x1 = (gt_x1 - a_x1) / a_w``, likewise for y1 (by ``a_h``), x2, y2; then
    ``(t - mean) / std``.

    Args:
        anchors: ``(..., 4)`` float ``(x1, y1, x2, y2)`` anchors with positive size.
        gt_boxes: ``(..., 4)`` float ``(x1, y1, x2, y2)`` boxes, broadcastable to ``anchors``.
        mean: scalar or 4 values subtracted from the raw deltas.
        std: scalar or 4 positive values dividing the raw deltas.
        xp: ``numpy`` or ``keras.ops``.

    Returns:
        ``(..., 4)`` float32 deltas.
    """
    mean, std = _mean_std(mean, std)
    if xp is np:
        anchors = np.asarray(anchors, dtype=np.float32)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float32)
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    deltas = xp.stack(
        [
            (gt_boxes[..., 0] - anchors[..., 0]) / widths,
            (gt_boxes[..., 1] - anchors[..., 1]) / heights,
            (gt_boxes[..., 2] - anchors[..., 2]) / widths,
            (gt_boxes[..., 3] - anchors[..., 3]) / heights,
        ],
        axis=-1,
    )
    return (deltas - mean) / std


def bbox_transform_inv(
    anchors: Any, deltas: Any, mean: Any = DEFAULT_MEAN, std: Any = DEFAULT_STD, xp: Any = np
) -> Any:
    """Apply regression ``deltas`` to ``anchors``; the inverse of :func:`bbox_transform`.

    Args:
        anchors: ``(..., 4)`` float ``(x1, y1, x2, y2)`` anchors.
        deltas: ``(..., 4)`` standardised deltas, broadcastable to ``anchors``.
        mean: as given to :func:`bbox_transform`.
        std: as given to :func:`bbox_transform`.
        xp: ``numpy`` or ``keras.ops``.

    Returns:
        ``(..., 4)`` float ``(x1, y1, x2, y2)`` boxes.
    """
    mean, std = _mean_std(mean, std)
    if xp is np:
        anchors = np.asarray(anchors, dtype=np.float32)
        deltas = np.asarray(deltas, dtype=np.float32)
    deltas = deltas * std + mean
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    return xp.stack(
        [
            anchors[..., 0] + deltas[..., 0] * widths,
            anchors[..., 1] + deltas[..., 1] * heights,
            anchors[..., 2] + deltas[..., 2] * widths,
            anchors[..., 3] + deltas[..., 3] * heights,
        ],
        axis=-1,
    )


# torchvision's BoxCoder: size deltas are clamped so exp() cannot overflow on a 16-pixel
# anchor predicting a 1000-pixel box.
CENTRE_SIZE_CLAMP = math.log(1000.0 / 16)


def bbox_transform_centre_size(anchors: Any, gt_boxes: Any, xp: Any = np) -> Any:
    """Centre/size regression targets (Girshick 2015; torchvision's RetinaNet, weights 1):
    ``((gx - ax) / aw, (gy - ay) / ah, log(gw / aw), log(gh / ah))`` with centres ``x, y``.

    Args:
        anchors: ``(..., 4)`` float ``(x1, y1, x2, y2)`` anchors with positive size.
        gt_boxes: ``(..., 4)`` float ``(x1, y1, x2, y2)`` boxes with positive size.
        xp: ``numpy`` or ``keras.ops``.

    Returns:
        ``(..., 4)`` float32 deltas; :func:`bbox_transform_inv_centre_size` inverts them.
    """
    if xp is np:
        anchors = np.asarray(anchors, dtype=np.float32)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float32)
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    gw = gt_boxes[..., 2] - gt_boxes[..., 0]
    gh = gt_boxes[..., 3] - gt_boxes[..., 1]
    return xp.stack(
        [
            (gt_boxes[..., 0] + 0.5 * gw - (anchors[..., 0] + 0.5 * aw)) / aw,
            (gt_boxes[..., 1] + 0.5 * gh - (anchors[..., 1] + 0.5 * ah)) / ah,
            xp.log(gw / aw),
            xp.log(gh / ah),
        ],
        axis=-1,
    )


def bbox_transform_inv_centre_size(anchors: Any, deltas: Any, xp: Any = np) -> Any:
    """Apply centre/size ``deltas`` to ``anchors``, with the size deltas clamped at
    :data:`CENTRE_SIZE_CLAMP`, in torchvision's order of operations.

    Args:
        anchors: ``(..., 4)`` float ``(x1, y1, x2, y2)`` anchors.
        deltas: ``(..., 4)`` ``(dx, dy, dw, dh)``, broadcastable to ``anchors``.
        xp: ``numpy`` or ``keras.ops``.

    Returns:
        ``(..., 4)`` float ``(x1, y1, x2, y2)`` boxes.
    """
    if xp is np:
        anchors = np.asarray(anchors, dtype=np.float32)
        deltas = np.asarray(deltas, dtype=np.float32)
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    centre_x = anchors[..., 0] + 0.5 * widths
    centre_y = anchors[..., 1] + 0.5 * heights
    pred_x = deltas[..., 0] * widths + centre_x
    pred_y = deltas[..., 1] * heights + centre_y
    half_w = 0.5 * (xp.exp(xp.minimum(deltas[..., 2], CENTRE_SIZE_CLAMP)) * widths)
    half_h = 0.5 * (xp.exp(xp.minimum(deltas[..., 3], CENTRE_SIZE_CLAMP)) * heights)
    return xp.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h], axis=-1)


def decode_boxes(
    anchors: Any,
    deltas: Any,
    coder: str = "corners",
    mean: Any = DEFAULT_MEAN,
    std: Any = DEFAULT_STD,
    xp: Any = np,
) -> Any:
    """Boxes from ``anchors`` and regression ``deltas`` (both ``(..., 4)``) as a model
    variant's box coder decodes them: ``"corners"`` (:func:`bbox_transform_inv`, with
    ``mean``/``std``) or ``"centre_size"`` (:func:`bbox_transform_inv_centre_size`, which
    ignores them). Returns ``(..., 4)`` ``(x1, y1, x2, y2)``."""
    if coder == "centre_size":
        return bbox_transform_inv_centre_size(anchors, deltas, xp=xp)
    return bbox_transform_inv(anchors, deltas, mean, std, xp=xp)


def clip_boxes(boxes: Any, height: Any, width: Any, xp: Any = np) -> Any:
    """Clip boxes to the image ``[0, width] x [0, height]``.

    Args:
        boxes: ``(..., 4)`` float ``(x1, y1, x2, y2)`` boxes.
        height: image height in pixels (scalar or tensor).
        width: image width in pixels (scalar or tensor).
        xp: ``numpy`` or ``keras.ops``.

    Returns:
        ``(..., 4)`` clipped boxes, same dtype.
    """
    # maximum/minimum rather than clip: clip's bounds must be Python numbers on some backends,
    # while the image size is a tensor inside the inference graph.
    x1 = xp.minimum(xp.maximum(boxes[..., 0], 0.0), width)
    y1 = xp.minimum(xp.maximum(boxes[..., 1], 0.0), height)
    x2 = xp.minimum(xp.maximum(boxes[..., 2], 0.0), width)
    y2 = xp.minimum(xp.maximum(boxes[..., 3], 0.0), height)
    return xp.stack([x1, y1, x2, y2], axis=-1)
