"""The last layer of the inference model: score threshold, pre-NMS budget, (per-class) greedy
NMS (:mod:`keras_retinanet.model.nms`) and the top detections, padded with -1
(:class:`FilterDetections`).

Registered under the package name ``keras_retinanet`` like every layer of
:mod:`keras_retinanet.model.layers`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_retinanet.model.nms import tensorflow_nms_mask, tiled_nms_mask

_PACKAGE = "keras_retinanet"


def _gather_rows(values: Any, indices: Any) -> Any:
    """``values[b, indices[b, i]]`` for ``values`` ``(B, N, ...)`` and ``indices`` ``(B, C)``."""
    if len(values.shape) == 3:
        return ops.take_along_axis(values, ops.expand_dims(indices, -1), axis=1)
    return ops.take_along_axis(values, indices, axis=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FilterDetections(keras.layers.Layer):
    """Score threshold, (per-class) NMS and top-``max_detections`` selection.

    Candidates are the top-scoring (anchor, class) pairs (or, without ``class_specific_filter``,
    the anchors by their best class score): by default the best 1000 of each pyramid level,
    merged with no global cap (Lin et al. 2017, sec. 4.1; torchvision and detectron2 do the
    same), so a crowd of high scores on one level cannot push every other level's objects out.
    Candidates at or below ``score_threshold`` are dropped, the rest go through greedy NMS (a
    box is suppressed when its IoU with a kept, higher-scoring box of the same class is
    ``> nms_threshold``), and the best ``max_detections`` are returned. Every step is a
    fixed-shape tensor operation over all classes at once (no loop over classes); NMS runs in
    tiles of candidates, best first, and stops at the first tile with no candidate above the
    threshold or once ``max_detections`` are kept
    (:func:`keras_retinanet.model.nms.tiled_nms_mask`), so its cost follows the candidates that pass
    the threshold, not the budget.

    Args:
        nms: apply non-maximum suppression.
        class_specific_filter: score and suppress every class separately, so an anchor may yield
            several labels; otherwise each anchor keeps only its best class and NMS is
            class-agnostic.
        nms_threshold: IoU above which a lower-scoring box is suppressed.
        score_threshold: scores must be strictly greater to be kept.
        max_detections: D, the fixed number of output rows per image.
        pre_nms_top_k: a cap on the candidates considered per image before NMS, taken after
            the per-level selection (None, the default: no cap, up to
            ``L * pre_nms_top_k_per_level``). Without ``pre_nms_top_k_per_level`` it is one
            global selection over all levels (this package's default before the per-level
            budget; None then means every candidate, for tests and small inputs only). The
            global top ``pre_nms_top_k`` are always among the per-level tops when
            ``pre_nms_top_k <= pre_nms_top_k_per_level``, so such a cap gives the global
            selection's result.
        pre_nms_top_k_per_level: keep only this many candidates of each pyramid level (1000,
            the paper's budget); None for no per-level step. Called without level inputs, the
            whole image counts as one level.
        nms_implementation: ``"keras"`` (the tiled NMS above, every backend) or
            ``"tensorflow"``: TensorFlow's own NMS op, for batch-1 TFLite graphs that must not
            contain a loop (:func:`keras_retinanet.model.nms.tensorflow_nms_mask`; the int8 TFLite
            export uses it). Both keep the same boxes.

    Call: ``FilterDetections(...)([boxes, classification])`` with ``boxes`` ``(B, N, 4)`` and
    ``classification`` ``(B, N, K)``, optionally followed by one tensor per pyramid level
    whose axis 1 counts that level's anchors, in the order of ``N`` (``retinanet_box`` passes
    the per-level anchors ``(B, N_l, 4)``; the ``N_l`` must sum to ``N``). The level tensors
    are read for their shapes only. Returns ``boxes`` ``(B, D, 4)`` float32, ``scores``
    ``(B, D)`` float32 and ``labels`` ``(B, D)`` int32, sorted by score (highest first); rows
    past the last detection are -1.

    Raises:
        ValueError: a budget below 1; at call, level sizes that do not add up to ``N``.
    """

    def __init__(
        self,
        nms: bool = True,
        class_specific_filter: bool = True,
        nms_threshold: float = 0.5,  # Lin et al. 2017, sec. 5.1
        score_threshold: float = 0.05,  # Lin et al. 2017, sec. 5.1
        max_detections: int = 300,
        # Lin et al. 2017, sec. 4.1 ("Inference"), torchvision and detectron2: up to 1000 per
        # pyramid level, merged with no global cap.
        pre_nms_top_k: int | None = None,
        pre_nms_top_k_per_level: int | None = 1000,
        nms_implementation: str = "keras",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if nms_implementation not in ("keras", "tensorflow"):
            raise ValueError(
                f"nms_implementation must be 'keras' or 'tensorflow', got {nms_implementation!r}"
            )
        self.nms_implementation = nms_implementation
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
        if level_inputs:
            counts = [ops.shape(level)[1] for level in level_inputs]
        else:
            counts = [num_anchors]  # no levels given: all anchors are one level
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
            nms_mask = (
                tensorflow_nms_mask if self.nms_implementation == "tensorflow" else tiled_nms_mask
            )
            keep = nms_mask(
                candidate_boxes,
                valid,
                labels if self.class_specific_filter else None,
                self.nms_threshold,
                max_kept=self.max_detections,
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

    @classmethod
    def from_config(cls, config: dict) -> FilterDetections:
        config = dict(config)
        if "pre_nms_top_k_per_level" not in config:
            # Saved before the per-level budget: keep that file's one global selection.
            config["pre_nms_top_k_per_level"] = None
            config.setdefault("pre_nms_top_k", 1000)
        return cls(**config)

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
                "nms_implementation": self.nms_implementation,
            }
        )
        return config
