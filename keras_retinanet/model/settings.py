"""Detection settings: the one owner of every number that decides which detections come out.

:class:`DetectionSettings` holds the score threshold, the NMS IoU, the candidate budgets, the
number of detections and the input padding. Every consumer takes one (``retinanet_box``,
``inference.detect``, evaluation and its callback, ``retinanet-predict``, ``retinanet-convert``,
``retinanet-export``, the drawings), and the defaults below are written nowhere else.

An inference model keeps its settings: the graph's ``FilterDetections`` layer holds the
filtering part (read back by :func:`settings_of_model`), and converted snapshots and exported
artifacts record the whole object in their metadata (``"detection_settings"``).

The rule for a score is one everywhere: a detection is kept when ``score > threshold``
(:func:`keep_scores`), in the graph, in NumPy and in the drawings. A threshold asked of a model
whose graph already dropped more (a converted file baked with a higher one) cannot be honoured:
:func:`check_threshold` raises and says how to get it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# The padding of network input, bottom and right, up to a multiple of 32, the stride of C5:
# every backbone level divides the input exactly and FPN's upsampled maps line up, and the model
# never meets more padding at inference than in training (a multiple of 128 would add up to 127
# never-seen rows and columns, and 17 % more pixels at 800x1333).
DEFAULT_PAD_MULTIPLE = 32

# The fields FilterDetections holds (the rest is applied around the graph).
GRAPH_FIELDS = (
    "nms",
    "class_specific_filter",
    "nms_threshold",
    "score_threshold",
    "max_detections",
    "pre_nms_top_k",
    "pre_nms_top_k_per_level",
)


class ThresholdError(ValueError):
    """A score threshold was asked of a model that cannot apply it (the message says why)."""


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """What inference keeps, and how it pads its input.

    Attributes:
        score_threshold: keep detections scoring strictly above this. 0.05: Lin et al. 2017,
            sec. 5.1 (what evaluation needs: AP integrates over every score).
        nms_threshold: greedy NMS drops a box overlapping a better one of its class at an IoU
            above this. 0.5: Lin et al. 2017, sec. 5.1.
        max_detections: detections per image after NMS. 300: room for COCO's 100 after a
            per-class selection, as fizyr's graph kept.
        pre_nms_top_k: a cap on the candidates of all levels together; None: no cap (Lin et al.
            2017 and torchvision have none after the per-level budget).
        pre_nms_top_k_per_level: candidates kept per pyramid level before NMS. ``"auto"``: the
            model variant's (1000, Lin et al. 2017, sec. 4.1; none for fizyr's graph).
        class_specific_filter: NMS per class (True) or across classes (False).
        nms: run NMS at all (False keeps every candidate above the threshold).
        pad_multiple: pad network input up to a multiple of this; ``"auto"``: the model
            variant's (:data:`DEFAULT_PAD_MULTIPLE` for ours and torchvision's, 1 for fizyr's).
        display_threshold: the score a person looks at: the default of ``retinanet-predict``
            and of the drawings. 0.5: half the detections a calibrated model draws are right.
        class_score_thresholds: per-class thresholds by label (each class's best-F1 threshold
            from ``retinanet-evaluate``'s report), applied after the graph on top of
            ``score_threshold``; where set, ``retinanet-predict`` uses them instead of
            ``display_threshold``. None: one threshold for every class.
    """

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 300
    pre_nms_top_k: int | None = None
    pre_nms_top_k_per_level: int | None | str = "auto"
    class_specific_filter: bool = True
    nms: bool = True
    pad_multiple: int | str = "auto"
    display_threshold: float = 0.5
    class_score_thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.class_score_thresholds is not None:
            values = tuple(float(v) for v in self.class_score_thresholds)
            if not values or not all(0.0 <= v <= 1.0 for v in values):
                raise ValueError(
                    f"class_score_thresholds must be values in [0, 1], one per class, got "
                    f"{self.class_score_thresholds}"
                )
            object.__setattr__(self, "class_score_thresholds", values)
        for name in ("score_threshold", "nms_threshold", "display_threshold"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if int(self.max_detections) < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")
        for name in ("pre_nms_top_k", "pre_nms_top_k_per_level"):
            value = getattr(self, name)
            if value not in (None, "auto") and int(value) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.pad_multiple != "auto" and int(self.pad_multiple) < 1:
            raise ValueError(f"pad_multiple must be >= 1 or 'auto', got {self.pad_multiple}")

    def padding_for(self, variant: Any) -> int:
        """The pad multiple for a model variant (a
        :class:`~keras_retinanet.model.variants.ModelVariant`, or None: ours)."""
        if self.pad_multiple != "auto":
            return int(self.pad_multiple)
        return int(getattr(variant, "pad_multiple", DEFAULT_PAD_MULTIPLE))

    def replace(self, **changes: Any) -> DetectionSettings:
        """A copy with ``changes`` (field names; None is a value: "no cap" for the budgets).

        Raises:
            TypeError: a name that is not a field (the message lists them).
        """
        known = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise TypeError(f"unknown detection settings {unknown}; the settings are {known}")
        return dataclasses.replace(self, **changes)

    def with_options(self, **options: Any) -> DetectionSettings:
        """A copy with the options a user set: None means "not given" and changes nothing."""
        return self.replace(**{k: v for k, v in options.items() if v is not None})

    def keep(self, scores: Any, labels: Any, threshold: float | None = None) -> np.ndarray:
        """Which detections to keep: a real label, a score above ``threshold`` (the settings'
        ``score_threshold`` if None) and above its class's threshold where there are some.

        Args:
            scores: ``(D,)`` scores.
            labels: ``(D,)`` int labels, -1 for padding.
            threshold: the one threshold for every class.

        Returns:
            ``(D,)`` bool.
        """
        scores, labels = np.asarray(scores), np.asarray(labels)
        keep = keep_scores(scores, self.score_threshold if threshold is None else threshold)
        keep &= labels >= 0
        if self.class_score_thresholds is not None:
            per_class = np.asarray(self.class_score_thresholds, np.float64)
            known = labels < len(per_class)
            limit = per_class[np.clip(labels, 0, len(per_class) - 1)]
            keep &= ~known | (scores > limit)
        return keep

    def graph_kwargs(self) -> dict[str, Any]:
        """The fields :class:`~keras_retinanet.model.layers.FilterDetections` takes."""
        return {name: getattr(self, name) for name in GRAPH_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any] | None) -> DetectionSettings:
        """Inverse of :meth:`to_dict`; unknown keys (from a newer version) are ignored, missing
        ones take the defaults, so every file written since settings existed reads back."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (record or {}).items() if k in known})


def keep_scores(scores: Any, threshold: float) -> np.ndarray:
    """The one rule for a score: kept when strictly above ``threshold`` (and not padding)."""
    scores = np.asarray(scores)
    return (scores > threshold) & (scores >= 0)


def settings_of_model(model: Any) -> DetectionSettings | None:
    """The settings an inference model carries (``detection_settings``, which ``retinanet_box``
    and ``load_model`` set), else its graph's (:func:`graph_settings`)."""
    recorded = getattr(model, "detection_settings", None)
    if isinstance(recorded, DetectionSettings):
        return recorded
    return graph_settings(model)


def graph_settings(model: Any) -> DetectionSettings | None:
    """The settings an inference model's graph applies (its ``FilterDetections`` layer), the
    rest at their defaults; None for a training model or any object without that layer."""
    layers = getattr(model, "layers", None) or []
    for layer in layers:
        if type(layer).__name__ == "FilterDetections":
            config = layer.get_config()
            return DetectionSettings(**{k: config[k] for k in GRAPH_FIELDS if k in config})
    return None


def check_threshold(requested: float, baked: float | None, source: str = "the model") -> None:
    """Raise when ``requested`` asks for detections that ``baked`` already dropped.

    Args:
        requested: the score threshold asked for.
        baked: the threshold the model's graph applied (None: none, e.g. a training model that
            will be converted with ``requested``).
        source: how to name the model in the message (its file).

    Raises:
        ThresholdError: ``requested < baked``.
    """
    if baked is not None and float(requested) < float(baked):
        raise ThresholdError(
            f"{source} was converted with score threshold {baked:g}, so it has no detections "
            f"scoring between {requested:g} and {baked:g}; convert its training snapshot again "
            f"with retinanet-convert --score-threshold {requested:g}, or ask for >= {baked:g}"
        )


def inference_settings(
    model: Any, wanted: DetectionSettings, baked: DetectionSettings, source: str
) -> DetectionSettings:
    """``wanted`` if an inference model whose graph applies ``baked`` can honour it: a higher
    score threshold is applied after the graph, any other graph setting must be the graph's.

    Raises:
        ThresholdError: a lower score threshold than the graph's.
        ValueError: another graph setting that differs (the message names them).
    """
    check_threshold(wanted.score_threshold, baked.score_threshold, source)
    if wanted.pre_nms_top_k_per_level == "auto":  # "the variant's": what the graph was built with
        wanted = wanted.replace(pre_nms_top_k_per_level=baked.pre_nms_top_k_per_level)
    different = {
        k: (getattr(baked, k), getattr(wanted, k))
        for k in GRAPH_FIELDS
        if k != "score_threshold" and getattr(baked, k) != getattr(wanted, k)
    }
    if different:
        listed = ", ".join(f"{k} {old} (asked: {new})" for k, (old, new) in different.items())
        raise ValueError(
            f"{source} is an inference model built with {listed}; these are part of its graph: "
            "convert its training snapshot again with the settings you want"
        )
    return wanted
