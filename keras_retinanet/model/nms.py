"""Greedy non-maximum suppression as fixed-shape tensor operations (``keras.ops``).

:func:`greedy_nms_mask` decides a set of sorted candidates at once (a fixed-point iteration
over their IoU matrix); :func:`tiled_nms_mask` takes the candidates a tile at a time against a
buffer of the boxes kept so far, and stops once enough are kept, which is what
:class:`~keras_retinanet.model.filter_detections.FilterDetections` runs.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_retinanet.model import boxes as boxes_lib


def greedy_nms_mask(boxes: Any, valid: Any, labels: Any | None, iou_threshold: float) -> Any:
    """Which candidates survive greedy NMS, for candidates already sorted by score.

    Greedy NMS keeps candidate ``j`` iff no kept candidate ``i < j`` (of the same label, when
    ``labels`` is given) overlaps it with IoU ``> iou_threshold``. That rule defines the kept set
    uniquely, so it is computed as the fixed point of ``keep = valid & ~any_i(keep_i & O_ij)``
    starting from ``keep = valid``: each sweep is one matrix reduction, and the number of sweeps
    is the length of the longest chain of suppressions (a few in practice) rather than the
    number of candidates.

    Args:
        boxes: ``(B, C, 4)`` float ``(x1, y1, x2, y2)`` candidates, highest score first.
        valid: ``(B, C)`` bool, candidates that may be kept (above the score threshold).
        labels: ``(B, C)`` int labels, or None for class-agnostic suppression.
        iou_threshold: suppress at IoU strictly above this.

    Returns:
        ``(B, C)`` bool mask of kept candidates.
    """
    iou = boxes_lib.box_iou(boxes, boxes, xp=ops)  # (B, C, C)
    count = ops.shape(boxes)[1]
    index = ops.arange(count)
    earlier = ops.expand_dims(index, 1) < ops.expand_dims(index, 0)  # i < j
    suppresses = ops.logical_and(iou > iou_threshold, ops.expand_dims(earlier, 0))
    if labels is not None:
        same_label = ops.equal(ops.expand_dims(labels, 2), ops.expand_dims(labels, 1))
        suppresses = ops.logical_and(suppresses, same_label)
    both_valid = ops.logical_and(ops.expand_dims(valid, 2), ops.expand_dims(valid, 1))
    suppresses = ops.cast(ops.logical_and(suppresses, both_valid), "float32")

    def sweep(keep: Any) -> Any:
        suppressed = ops.einsum("bi,bij->bj", ops.cast(keep, "float32"), suppresses) > 0
        return ops.logical_and(valid, ops.logical_not(suppressed))

    def cond(keep: Any, previous: Any) -> Any:
        return ops.any(ops.not_equal(keep, previous))

    def body(keep: Any, previous: Any) -> tuple[Any, Any]:
        return sweep(keep), keep

    keep, _ = ops.while_loop(cond, body, (sweep(valid), valid))
    return keep


# Candidates are taken in tiles of this many, best first: the cost of NMS is set by how many
# tiles it takes to keep max_detections (or to run out of candidates above the threshold), not
# by the candidate budget (5 levels x 1000 by default).
NMS_TILE = 256


def tiled_nms_mask(
    boxes: Any,
    valid: Any,
    labels: Any | None,
    iou_threshold: float,
    max_kept: int,
    tile: int = NMS_TILE,
) -> Any:
    """:func:`greedy_nms_mask`'s decisions on the first ``max_kept`` kept candidates, computed
    tile by tile and stopped early.

    Greedy NMS decides candidate ``j`` from the kept candidates before it only, so the
    candidates (sorted best first) are taken ``tile`` at a time: a tile's candidates are first
    checked against the candidates kept in earlier tiles (decisions that are final, held in a
    buffer of ``max_kept`` boxes), then :func:`greedy_nms_mask` settles the tile itself, and
    its kept boxes join the buffer. The loop stops at the first tile with no valid candidate
    (``valid`` is a prefix when the candidates are sorted by score and thresholded) or once
    every image has ``max_kept`` kept, since no later candidate can rank among the first
    ``max_kept``. A tile costs ``O(tile * (tile + max_kept))`` instead of the ``O(C^2)`` of the
    whole candidate matrix.

    Args:
        boxes: ``(B, C, 4)`` float ``(x1, y1, x2, y2)`` candidates, highest score first.
        valid: ``(B, C)`` bool, candidates that may be kept.
        labels: ``(B, C)`` int labels, or None for class-agnostic suppression.
        iou_threshold: suppress at IoU strictly above this.
        max_kept: how many kept candidates matter (the layer's ``max_detections``).
        tile: candidates per tile.

    Returns:
        ``(B, C)`` bool mask of kept candidates; its first ``max_kept`` kept candidates of
        each image are exactly ``greedy_nms_mask``'s (later ones are not decided).
    """
    shape = ops.shape(boxes)
    batch, count = shape[0], shape[1]
    padding = -count % tile if isinstance(count, int) else ops.mod(-count, tile)
    boxes = ops.concatenate([boxes, ops.zeros((batch, padding, 4), dtype=boxes.dtype)], axis=1)
    valid = ops.concatenate([valid, ops.zeros((batch, padding), dtype="bool")], axis=1)
    if labels is not None:
        labels = ops.concatenate([labels, ops.zeros((batch, padding), dtype=labels.dtype)], 1)
    total = count + padding
    tiles = total // tile
    position = ops.arange(total)
    slots = ops.arange(max_kept)

    def cond(t: Any, keep: Any, kept_boxes: Any, kept_labels: Any, kept: Any) -> Any:
        start = ops.minimum(t * tile, total - 1)
        more = ops.any(ops.slice(valid, (0, start), (batch, 1)))
        return ops.logical_and(ops.logical_and(t < tiles, more), ops.any(kept < max_kept))

    def body(t: Any, keep: Any, kept_boxes: Any, kept_labels: Any, kept: Any) -> tuple:
        start = t * tile
        tile_boxes = ops.slice(boxes, (0, start, 0), (batch, tile, 4))
        tile_valid = ops.slice(valid, (0, start), (batch, tile))
        filled = ops.expand_dims(ops.expand_dims(slots, 0) < ops.expand_dims(kept, 1), 1)
        hit = ops.logical_and(
            boxes_lib.box_iou(tile_boxes, kept_boxes, xp=ops) > iou_threshold, filled
        )  # (B, tile, max_kept): suppressed by a candidate kept in an earlier tile
        tile_labels = None
        if labels is not None:
            tile_labels = ops.slice(labels, (0, start), (batch, tile))
            same = ops.equal(
                ops.expand_dims(ops.cast(tile_labels, "float32"), 2),
                ops.expand_dims(kept_labels, 1),
            )
            hit = ops.logical_and(hit, same)
        tile_valid = ops.logical_and(tile_valid, ops.logical_not(ops.any(hit, axis=2)))
        tile_keep = greedy_nms_mask(tile_boxes, tile_valid, tile_labels, iou_threshold)
        # The tile's kept boxes fill the next free slots of the buffer, in order: a one-hot
        # (B, tile, max_kept) placement and a matrix product, which every backend and
        # exporter has.
        new = ops.cast(tile_keep, "int32")
        slot = ops.expand_dims(kept, 1) + ops.cumsum(new, axis=1) - 1
        place = ops.logical_and(
            ops.equal(ops.expand_dims(slot, 2), ops.reshape(slots, (1, 1, -1))),
            ops.expand_dims(tile_keep, 2),
        )
        place = ops.cast(place, "float32")
        kept_boxes = kept_boxes + ops.einsum("btk,btc->bkc", place, tile_boxes)
        if labels is not None:
            placed_labels = ops.einsum("btk,bt->bk", place, ops.cast(tile_labels, "float32"))
            kept_labels = kept_labels + placed_labels
        kept = ops.minimum(kept + ops.sum(new, axis=1), max_kept)
        # Write the tile's decisions into keep (a gather, so every backend and exporter has it).
        offset = ops.clip(position - start, 0, tile - 1)
        in_tile = ops.logical_and(position >= start, position < start + tile)
        placed = ops.take(tile_keep, offset, axis=1)
        keep = ops.where(ops.expand_dims(in_tile, 0), placed, keep)
        return t + 1, keep, kept_boxes, kept_labels, kept

    loop_vars = (
        ops.convert_to_tensor(0, "int32"),
        ops.zeros((batch, total), dtype="bool"),
        ops.zeros((batch, max_kept, 4), dtype=boxes.dtype),
        ops.zeros((batch, max_kept), dtype="float32"),
        ops.zeros((batch,), dtype="int32"),
    )
    _, keep, _, _, _ = ops.while_loop(cond, body, loop_vars)
    return ops.slice(keep, (0, 0), (batch, count))


def tensorflow_nms_mask(
    boxes: Any, valid: Any, labels: Any | None, iou_threshold: float, max_kept: int
) -> Any:
    """:func:`tiled_nms_mask`'s decisions from TensorFlow's NMS op, with no loop in the graph.

    For batch-1 TFLite graphs: TFLite runs ``NON_MAX_SUPPRESSION_V4`` as a builtin, while the
    tiled NMS is a ``WHILE`` loop, which TFLite's int8 calibrator cannot log (it reads a
    tensor the loop has freed and crashes, tensorflow/tensorflow#75140). Per-class NMS is one
    class-agnostic NMS over boxes shifted apart by label (``label * (max coordinate + 1)``),
    so boxes of different classes never overlap; the candidates, sorted best first, get
    decreasing scores so that the op takes them in order. TensorFlow suppresses at IoU
    ``> iou_threshold``, as :func:`greedy_nms_mask` does.

    Args:
        boxes: ``(1, C, 4)`` float ``(x1, y1, x2, y2)`` candidates, highest score first.
        valid, labels, iou_threshold, max_kept: as for :func:`tiled_nms_mask`.

    Returns:
        ``(1, C)`` bool mask; its kept candidates are the first ``max_kept`` of greedy NMS.

    Raises:
        ValueError: a batch other than 1.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    if boxes.shape[0] != 1:
        raise ValueError(f"the TensorFlow NMS takes batch 1 (TFLite), got {boxes.shape[0]}")
    candidates = boxes[0]
    if labels is not None:
        shift = tf.reduce_max(tf.abs(candidates)) + 1.0
        candidates = candidates + tf.cast(labels[0], candidates.dtype)[:, None] * shift
    count = tf.shape(candidates)[0]
    rank = tf.cast(count - tf.range(count), tf.float32)  # best first: C, C - 1, ..., 1
    scores = tf.where(valid[0], rank, tf.zeros_like(rank))  # 0: below the score threshold
    selected, kept = tf.raw_ops.NonMaxSuppressionV4(  # TFLite's NON_MAX_SUPPRESSION_V4
        boxes=candidates,
        scores=scores,
        max_output_size=max_kept,
        iou_threshold=iou_threshold,
        score_threshold=0.5,
        pad_to_max_output_size=True,
    )
    selected = selected[:kept]
    keep = tf.scatter_nd(selected[:, None], tf.ones_like(selected, tf.int32), [count]) > 0
    return keep[None]
