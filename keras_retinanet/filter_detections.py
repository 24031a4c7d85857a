"""The last layer of the inference model: score threshold, pre-NMS budget, (per-class) greedy
NMS and the top detections, padded with -1 (:class:`FilterDetections`).

Registered under the package name ``keras_retinanet`` like every layer of
:mod:`keras_retinanet.layers`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_retinanet import boxes as boxes_lib

_PACKAGE = "keras_retinanet"


def _gather_rows(values: Any, indices: Any) -> Any:
    """``values[b, indices[b, i]]`` for ``values`` ``(B, N, ...)`` and ``indices`` ``(B, C)``."""
    if len(values.shape) == 3:
        return ops.take_along_axis(values, ops.expand_dims(indices, -1), axis=1)
    return ops.take_along_axis(values, indices, axis=1)


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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FilterDetections(keras.layers.Layer):
    """Score threshold, (per-class) NMS and top-``max_detections`` selection.

    Candidates are the top-scoring (anchor, class) pairs (or, without ``class_specific_filter``,
    the anchors by their best class score): the best ``pre_nms_top_k`` over the whole image, or,
    with ``pre_nms_top_k_per_level``, the best of each pyramid level first and then at most
    ``pre_nms_top_k`` of those. Candidates at or below ``score_threshold`` are dropped, the rest
    go through greedy NMS (a box is suppressed when its IoU with a kept, higher-scoring box of
    the same class is ``> nms_threshold``), and the best ``max_detections`` are returned. Every
    step is a fixed-shape tensor operation over all classes at once (no loop over classes), so
    the cost is set by the candidate budget, not by how many scores pass the threshold.

    Args:
        nms: apply non-maximum suppression.
        class_specific_filter: score and suppress every class separately, so an anchor may yield
            several labels; otherwise each anchor keeps only its best class and NMS is
            class-agnostic.
        nms_threshold: IoU above which a lower-scoring box is suppressed.
        score_threshold: scores must be strictly greater to be kept.
        max_detections: D, the fixed number of output rows per image.
        pre_nms_top_k: candidates considered per image before NMS. Lin et al. 2017 (sec. 5.1)
            decode at most 1000 per pyramid level; one global budget of 1000 keeps the
            candidate-pair IoU matrix at 1000 x 1000 per image. None considers every candidate
            (exhaustive; memory grows with (N * K)^2, for tests and small inputs only). With
            ``pre_nms_top_k_per_level`` it caps the union of the per-level selections (None:
            no cap, up to ``L * pre_nms_top_k_per_level`` candidates).
        pre_nms_top_k_per_level: if set, first keep only this many candidates of each pyramid
            level, as Lin et al. 2017 do with 1000 (needs the level inputs, see below). The
            global top ``pre_nms_top_k`` are always among the per-level tops when
            ``pre_nms_top_k <= pre_nms_top_k_per_level``, so the per-level step changes the
            result only with a larger (or no) global budget. None (default): one global
            selection.

    Call: ``FilterDetections(...)([boxes, classification])`` with ``boxes`` ``(B, N, 4)`` and
    ``classification`` ``(B, N, K)``, optionally followed by one tensor per pyramid level
    whose axis 1 counts that level's anchors, in the order of ``N`` (``retinanet_box`` passes
    the per-level anchors ``(B, N_l, 4)``; the ``N_l`` must sum to ``N``). The level tensors
    are read for their shapes only and are required by ``pre_nms_top_k_per_level``. Returns
    ``boxes`` ``(B, D, 4)`` float32, ``scores`` ``(B, D)`` float32 and ``labels`` ``(B, D)``
    int32, sorted by score (highest first); rows past the last detection are -1.

    Raises:
        ValueError: a budget below 1; at call, ``pre_nms_top_k_per_level`` without level inputs
            or level sizes that do not add up to ``N``.
    """

    def __init__(
        self,
        nms: bool = True,
        class_specific_filter: bool = True,
        nms_threshold: float = 0.5,  # Lin et al. 2017, sec. 5.1
        score_threshold: float = 0.05,  # Lin et al. 2017, sec. 5.1
        max_detections: int = 300,
        pre_nms_top_k: int | None = 1000,
        pre_nms_top_k_per_level: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        if pre_nms_top_k is not None and pre_nms_top_k < 1:
            raise ValueError(f"pre_nms_top_k must be >= 1 or None, got {pre_nms_top_k}")
        if pre_nms_top_k_per_level is not None and pre_nms_top_k_per_level < 1:
            raise ValueError(
                f"pre_nms_top_k_per_level must be >= 1 or None, got {pre_nms_top_k_per_level}"
            )
        self.nms = bool(nms)
        self.class_specific_filter = bool(class_specific_filter)
        self.nms_threshold = float(nms_threshold)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.pre_nms_top_k = None if pre_nms_top_k is None else int(pre_nms_top_k)
        self.pre_nms_top_k_per_level = (
            None if pre_nms_top_k_per_level is None else int(pre_nms_top_k_per_level)
        )

    def _per_level_candidates(
        self, flat_scores: Any, level_inputs: Sequence[Any], num_anchors: Any, per_anchor: Any
    ) -> tuple[Any, Any]:
        """Top ``pre_nms_top_k_per_level`` of each level's slice of ``flat_scores``.

        Args:
            flat_scores: ``(B, N * per_anchor)`` float32, anchor-major.
            level_inputs: one tensor per level, axis 1 the level's anchor count.
            num_anchors: N.
            per_anchor: scores per anchor (K, or 1 without ``class_specific_filter``).

        Returns:
            ``(scores, flat_index)``, both ``(B, L * k)``: per level, its best ``k`` scores
            and their columns in ``flat_scores``; -1 scores where a level has fewer than ``k``.
        """
        if not level_inputs:
            raise ValueError(
                "pre_nms_top_k_per_level needs the pyramid levels: call "
                "FilterDetections(...)([boxes, classification, *level_anchors]) with one "
                "(B, N_l, ...) tensor per level, as retinanet_box does"
            )
        counts = [ops.shape(level)[1] for level in level_inputs]
        if all(isinstance(c, int) for c in counts) and isinstance(num_anchors, int):
            if sum(counts) != num_anchors:
                raise ValueError(
                    f"the level inputs have {counts} anchors, {sum(counts)} in all, but boxes "
                    f"and classification have {num_anchors}; pass one tensor per level, in order"
                )
        batch = ops.shape(flat_scores)[0]
        k = self.pre_nms_top_k_per_level
        padding = -ops.ones((batch, k), dtype="float32")
        level_scores, level_index = [], []
        start = 0
        for count in counts:
            columns = count * per_anchor
            # Slices by offset, so the cost is one pass over the scores for all levels.
            scores = ops.slice(flat_scores, (0, start), (batch, columns))
            # Padding gives top_k k entries even for a level with fewer (a small image's P7);
            # padded entries score -1 and are never kept.
            scores, index = ops.top_k(ops.concatenate([scores, padding], axis=1), k, sorted=False)
            level_scores.append(scores)
            level_index.append(ops.minimum(index, columns - 1) + start)
            start = start + columns
        flat_index = ops.cast(ops.concatenate(level_index, axis=1), "int32")
        return ops.concatenate(level_scores, axis=1), flat_index

    def call(self, inputs: Sequence[Any]) -> tuple[Any, Any, Any]:
        boxes, classification = inputs[0], inputs[1]
        level_inputs = list(inputs[2:])
        boxes = ops.cast(boxes, "float32")
        classification = ops.cast(classification, "float32")
        shape = ops.shape(classification)
        batch, num_anchors, num_classes = shape[0], shape[1], shape[2]

        if self.class_specific_filter:
            flat_scores = ops.reshape(classification, (batch, -1))  # (B, N*K), class fastest
        else:
            flat_scores = ops.max(classification, axis=-1)  # (B, N)
            best_labels = ops.cast(ops.argmax(classification, axis=-1), "int32")

        source_index = None  # column of flat_scores for each entry of source_scores
        source_scores = flat_scores
        if self.pre_nms_top_k_per_level is not None:
            per_anchor = num_classes if self.class_specific_filter else 1
            source_scores, source_index = self._per_level_candidates(
                flat_scores, level_inputs, num_anchors, per_anchor
            )

        # Pad with -1 scores so that top_k always has enough entries, whatever N is: padded
        # candidates are below any threshold and never kept.
        budget = max(self.pre_nms_top_k or 0, self.max_detections)
        source_scores = ops.concatenate(
            [source_scores, -ops.ones((batch, budget), dtype="float32")], axis=1
        )
        if self.pre_nms_top_k is None:
            candidates = ops.shape(source_scores)[1]
        else:
            candidates = budget
        # Sorted: greedy_nms_mask needs the candidates best first.
        scores, flat_index = ops.top_k(source_scores, candidates, sorted=True)
        if source_index is not None:
            source_index = ops.concatenate(
                [source_index, ops.zeros((batch, budget), dtype="int32")], axis=1
            )
            flat_index = ops.take_along_axis(source_index, flat_index, axis=1)

        if self.class_specific_filter:
            anchor_index = flat_index // num_classes
            labels = ops.cast(flat_index % num_classes, "int32")
        else:
            anchor_index = flat_index
        anchor_index = ops.minimum(anchor_index, num_anchors - 1)  # padded slots
        candidate_boxes = _gather_rows(boxes, anchor_index)
        if not self.class_specific_filter:
            labels = _gather_rows(best_labels, anchor_index)

        valid = scores > self.score_threshold
        if self.pre_nms_top_k is not None and self.pre_nms_top_k < budget:
            # top_k took max_detections rows so that the final top_k has enough of them; only
            # the first pre_nms_top_k are candidates.
            valid = ops.logical_and(valid, ops.arange(budget) < self.pre_nms_top_k)
        if self.nms:
            keep = greedy_nms_mask(
                candidate_boxes,
                valid,
                labels if self.class_specific_filter else None,
                self.nms_threshold,
            )
        else:
            keep = valid

        kept_scores = ops.where(keep, scores, -ops.ones_like(scores))
        top_scores, top_index = ops.top_k(kept_scores, self.max_detections, sorted=True)
        top_boxes = _gather_rows(candidate_boxes, top_index)
        top_labels = _gather_rows(labels, top_index)
        found = top_scores > -1.0
        top_boxes = ops.where(ops.expand_dims(found, -1), top_boxes, -ops.ones_like(top_boxes))
        top_labels = ops.where(found, top_labels, -ops.ones_like(top_labels))
        return top_boxes, top_scores, ops.cast(top_labels, "int32")

    def compute_output_shape(self, input_shape: Sequence[Sequence[int | None]]) -> tuple:
        batch = input_shape[0][0]
        return (
            (batch, self.max_detections, 4),
            (batch, self.max_detections),
            (batch, self.max_detections),
        )

    def compute_output_spec(self, inputs: Sequence[Any]) -> tuple:
        batch = inputs[0].shape[0]
        return (
            keras.KerasTensor((batch, self.max_detections, 4), dtype="float32"),
            keras.KerasTensor((batch, self.max_detections), dtype="float32"),
            keras.KerasTensor((batch, self.max_detections), dtype="int32"),
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "nms": self.nms,
                "class_specific_filter": self.class_specific_filter,
                "nms_threshold": self.nms_threshold,
                "score_threshold": self.score_threshold,
                "max_detections": self.max_detections,
                "pre_nms_top_k": self.pre_nms_top_k,
                "pre_nms_top_k_per_level": self.pre_nms_top_k_per_level,
            }
        )
        return config
