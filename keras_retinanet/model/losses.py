"""The RetinaNet losses over anchor targets, in ``keras.ops``: focal loss on the classes, and
smooth L1 (fizyr, ours), L1 (torchvision v1) or generalised IoU (torchvision v2) on the boxes.

All take the targets of :func:`~.targets.anchor_targets_bbox`, whose last column is the anchor
state (-1 ignore, 0 negative, 1 positive), and leave ignored anchors out (the box losses count
positives only). They normalise by the positive anchors (Lin et al. 2017, sec. 3.3: not by all
anchors, because the easy negatives carry almost no loss), in one of two ways
(``normalisation``): ``"batch"``, the sum over the batch over ``max(1, positives of the
batch)`` (fizyr, ours); or ``"image"``, each image's sum over ``max(1, its positives)``, then
the mean over the images (torchvision). :func:`losses_for` gives a model variant's pair.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_retinanet.model.boxes import CENTRE_SIZE_CLAMP
from keras_retinanet.model.variants import get_variant

_PACKAGE = "keras_retinanet"
NORMALISATIONS = ("batch", "image")


def normalised_sum(per_anchor: Any, positive: Any, normalisation: str) -> Any:
    """``(B, N)`` per-anchor losses summed and divided by the positives (see the module
    docstring); ``positive`` is ``(B, N)`` float 0/1."""
    if normalisation == "image":
        per_image = ops.sum(per_anchor, axis=1) / ops.maximum(1.0, ops.sum(positive, axis=1))
        return ops.mean(per_image)
    return ops.sum(per_anchor) / ops.maximum(1.0, ops.sum(positive))


def _check(normalisation: str) -> str:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    return normalisation


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)``.

    Args:
        alpha: weight of the positive class (0.25 in Lin et al. 2017, table 1a, with gamma 2).
        gamma: focusing parameter; 0 gives alpha-weighted cross-entropy.
        normalisation: ``"batch"`` or ``"image"`` (see the module docstring).

    Call: ``loss(y_true, y_pred)`` with ``y_true`` ``(B, N, K + 1)`` (one-hot labels, then the
    anchor state) and ``y_pred`` ``(B, N, K)`` sigmoid probabilities. Returns a scalar.
    """

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        normalisation: str = "batch",
        name: str = "focal",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.normalisation = _check(normalisation)

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
        positive = ops.cast(ops.equal(state, 1.0), "float32")
        return normalised_sum(per_anchor, positive, self.normalisation)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {"alpha": self.alpha, "gamma": self.gamma, "normalisation": self.normalisation}
        )
        return config


class _BoxLoss(keras.losses.Loss):
    """What the box losses share: ``y_true`` ``(B, N, 5)`` (4 target deltas, then the anchor
    state) and ``y_pred`` ``(B, N, 4)``; only positive anchors count, normalised as
    ``normalisation`` says. A subclass gives :meth:`per_anchor`."""

    def __init__(self, normalisation: str, name: str, **kwargs: Any) -> None:
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.normalisation = _check(normalisation)

    def per_anchor(self, targets: Any, predictions: Any) -> Any:
        """``(B, N)`` loss of each anchor from its ``(B, N, 4)`` target and predicted deltas."""
        raise NotImplementedError

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        positive = ops.cast(ops.equal(y_true[..., 4], 1.0), "float32")
        # Rows of other anchors hold finite deltas and are masked out here.
        per_anchor = self.per_anchor(y_true[..., :4], ops.cast(y_pred, "float32")) * positive
        return normalised_sum(per_anchor, positive, self.normalisation)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"normalisation": self.normalisation})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SmoothL1Loss(_BoxLoss):
    """Smooth L1 (Huber) loss on the regression deltas of positive anchors.

    ``0.5 * (sigma * x)^2`` for ``|x| < 1 / sigma^2``, else ``|x| - 0.5 / sigma^2``; sigma 3
    moves the quadratic zone to ``|x| < 1/9``, as in Faster R-CNN's RPN and fizyr's RetinaNet.

    Args:
        sigma: sharpness of the transition from quadratic to linear.
        normalisation: ``"batch"`` or ``"image"`` (see the module docstring).

    Call: ``loss(y_true, y_pred)`` with ``y_true`` ``(B, N, 5)`` (4 target deltas, then the
    anchor state) and ``y_pred`` ``(B, N, 4)``. Returns a scalar.
    """

    def __init__(
        self,
        sigma: float = 3.0,
        normalisation: str = "batch",
        name: str = "smooth_l1",
        **kwargs: Any,
    ) -> None:
        super().__init__(normalisation, name, **kwargs)
        self.sigma = float(sigma)

    def per_anchor(self, targets: Any, predictions: Any) -> Any:
        sigma_squared = self.sigma**2
        difference = ops.abs(predictions - targets)
        per_value = ops.where(
            difference < 1.0 / sigma_squared,
            0.5 * sigma_squared * ops.square(difference),
            difference - 0.5 / sigma_squared,
        )
        return ops.sum(per_value, axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self.sigma})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L1Loss(_BoxLoss):
    """L1 loss on the regression deltas of positive anchors (torchvision v1's box loss).

    Args:
        normalisation: ``"batch"`` or ``"image"`` (torchvision's, see the module docstring).

    Call: as :class:`SmoothL1Loss`. Returns a scalar.
    """

    def __init__(self, normalisation: str = "image", name: str = "l1", **kwargs: Any) -> None:
        super().__init__(normalisation, name, **kwargs)

    def per_anchor(self, targets: Any, predictions: Any) -> Any:
        return ops.sum(ops.abs(predictions - targets), axis=-1)


def _centre_size_box(deltas: Any, clamp: bool) -> tuple[Any, Any, Any, Any]:
    """``(x1, y1, x2, y2)`` of centre/size ``deltas`` decoded on a unit anchor centred at 0."""
    dw, dh = deltas[..., 2], deltas[..., 3]
    if clamp:  # as torchvision's decode: size deltas clamped at log(1000 / 16)
        dw, dh = ops.minimum(dw, CENTRE_SIZE_CLAMP), ops.minimum(dh, CENTRE_SIZE_CLAMP)
    half_w, half_h = 0.5 * ops.exp(dw), 0.5 * ops.exp(dh)
    x, y = deltas[..., 0], deltas[..., 1]
    return x - half_w, y - half_h, x + half_w, y + half_h


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GIoULoss(_BoxLoss):
    """``1 - GIoU`` of each positive anchor's decoded box with its target box (Rezatofighi et
    al. 2019; torchvision v2's box loss, ``generalized_box_iou_loss`` with eps 1e-7).

    The boxes are decoded from centre/size deltas onto a unit anchor: GIoU is unchanged by
    translating both boxes and by scaling each axis, so this equals the loss on the boxes in
    pixels without needing the anchors (up to where eps 1e-7 is added: areas here are in
    anchor units). Predicted size deltas are clamped at log(1000 / 16), as torchvision decodes.

    Args:
        normalisation: ``"batch"`` or ``"image"`` (torchvision's, see the module docstring).
        eps: added to the union and the enclosing area.

    Call: as :class:`SmoothL1Loss`, the targets centre/size deltas. Returns a scalar.
    """

    def __init__(
        self, normalisation: str = "image", eps: float = 1e-7, name: str = "giou", **kwargs: Any
    ) -> None:
        super().__init__(normalisation, name, **kwargs)
        self.eps = float(eps)

    def per_anchor(self, targets: Any, predictions: Any) -> Any:
        x1, y1, x2, y2 = _centre_size_box(predictions, clamp=True)
        gx1, gy1, gx2, gy2 = _centre_size_box(targets, clamp=False)
        inter_w = ops.maximum(ops.minimum(x2, gx2) - ops.maximum(x1, gx1), 0.0)
        inter_h = ops.maximum(ops.minimum(y2, gy2) - ops.maximum(y1, gy1), 0.0)
        intersection = inter_w * inter_h
        union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - intersection
        enclosing = (ops.maximum(x2, gx2) - ops.minimum(x1, gx1)) * (
            ops.maximum(y2, gy2) - ops.minimum(y1, gy1)
        )
        iou = intersection / (union + self.eps)
        return 1.0 - (iou - (enclosing - union) / (enclosing + self.eps))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"eps": self.eps})
        return config


def losses_for(variant: Any = None) -> dict[str, keras.losses.Loss]:
    """The ``{"regression": ..., "classification": ...}`` losses of a model variant (its
    ``box_loss`` and ``loss_normalisation``; a name, a
    :class:`~keras_retinanet.model.variants.ModelVariant` or None: ours)."""
    variant = get_variant(variant)
    normalisation = variant.loss_normalisation
    box_losses = {
        "smooth_l1": lambda: SmoothL1Loss(normalisation=normalisation),
        "l1": lambda: L1Loss(normalisation=normalisation),
        "giou": lambda: GIoULoss(normalisation=normalisation),
    }
    return {
        "regression": box_losses[variant.box_loss](),
        "classification": FocalLoss(normalisation=normalisation),
    }


def focal(alpha: float = 0.25, gamma: float = 2.0) -> FocalLoss:
    """The focal loss for the classification output (fizyr's name for it)."""
    return FocalLoss(alpha=alpha, gamma=gamma)


def smooth_l1(sigma: float = 3.0) -> SmoothL1Loss:
    """The smooth L1 loss for the regression output (fizyr's name for it)."""
    return SmoothL1Loss(sigma=sigma)
