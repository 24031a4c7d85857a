"""Focal loss and smooth L1 loss over anchor targets, in ``keras.ops``.

Both take the targets of :func:`~.anchors.anchor_targets_bbox`, whose last column
is the anchor state (-1 ignore, 0 negative, 1 positive), leave ignored anchors out, and
normalise the sum over the batch by ``max(1, number of positive anchors)`` (Lin et al. 2017,
sec. 3.3: normalising by the positives, not all anchors, because the easy negatives carry
almost no loss).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_PACKAGE = "keras_retinanet"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)``.

    Args:
        alpha: weight of the positive class (0.25 in Lin et al. 2017, table 1a, with gamma 2).
        gamma: focusing parameter; 0 gives alpha-weighted cross-entropy.

    Call: ``loss(y_true, y_pred)`` with ``y_true`` ``(B, N, K + 1)`` (one-hot labels, then the
    anchor state) and ``y_pred`` ``(B, N, K)`` sigmoid probabilities. Returns a scalar.
    """

    def __init__(
        self, alpha: float = 0.25, gamma: float = 2.0, name: str = "focal", **kwargs: Any
    ) -> None:
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        probabilities = ops.cast(y_pred, "float32")
        labels, state = y_true[..., :-1], y_true[..., -1]
        keep = ops.cast(ops.not_equal(state, -1.0), "float32")
        probabilities = ops.clip(probabilities, 1e-7, 1.0 - 1e-7)  # keep log() finite

        is_positive = ops.equal(labels, 1.0)
        alpha_factor = ops.where(is_positive, self.alpha, 1.0 - self.alpha)
        p_t = ops.where(is_positive, probabilities, 1.0 - probabilities)
        focal_weight = alpha_factor * ops.power(1.0 - p_t, self.gamma)
        cross_entropy = -ops.log(p_t)
        per_anchor = ops.sum(focal_weight * cross_entropy, axis=-1) * keep

        positives = ops.sum(ops.cast(ops.equal(state, 1.0), "float32"))
        return ops.sum(per_anchor) / ops.maximum(1.0, positives)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "gamma": self.gamma})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SmoothL1Loss(keras.losses.Loss):
    """Smooth L1 (Huber) loss on the regression deltas of positive anchors.

    ``0.5 * (sigma * x)^2`` for ``|x| < 1 / sigma^2``, else ``|x| - 0.5 / sigma^2``; sigma 3
    moves the quadratic zone to ``|x| < 1/9``, as in Faster R-CNN's RPN and fizyr's RetinaNet.

    Args:
        sigma: sharpness of the transition from quadratic to linear.

    Call: ``loss(y_true, y_pred)`` with ``y_true`` ``(B, N, 5)`` (4 target deltas, then the
    anchor state) and ``y_pred`` ``(B, N, 4)``. Returns a scalar.
    """

    def __init__(self, sigma: float = 3.0, name: str = "smooth_l1", **kwargs: Any) -> None:
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.sigma = float(sigma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        regression = ops.cast(y_pred, "float32")
        targets, state = y_true[..., :4], y_true[..., 4]
        positive = ops.cast(ops.equal(state, 1.0), "float32")

        sigma_squared = self.sigma**2
        difference = ops.abs(regression - targets)
        per_value = ops.where(
            difference < 1.0 / sigma_squared,
            0.5 * sigma_squared * ops.square(difference),
            difference - 0.5 / sigma_squared,
        )
        per_anchor = ops.sum(per_value, axis=-1) * positive
        return ops.sum(per_anchor) / ops.maximum(1.0, ops.sum(positive))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self.sigma})
        return config


def focal(alpha: float = 0.25, gamma: float = 2.0) -> FocalLoss:
    """The focal loss for the classification output (fizyr's name for it)."""
    return FocalLoss(alpha=alpha, gamma=gamma)


def smooth_l1(sigma: float = 3.0) -> SmoothL1Loss:
    """The smooth L1 loss for the regression output (fizyr's name for it)."""
    return SmoothL1Loss(sigma=sigma)
