"""Tests for model/losses.py: hand-computed focal and smooth L1 values, ignored anchors,
normalisation by the number of positives, config round trips."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_retinanet.model.boxes import bbox_transform_centre_size, bbox_transform_inv_centre_size
from keras_retinanet.model.losses import (
    FocalLoss,
    GIoULoss,
    L1Loss,
    SmoothL1Loss,
    focal,
    losses_for,
    smooth_l1,
)


def value(loss, y_true, y_pred):
    return float(
        ops.convert_to_numpy(loss(np.asarray(y_true, "float32"), np.asarray(y_pred, "float32")))
    )


def focal_term(p, positive, alpha=0.25, gamma=2.0):
    """-alpha_t (1 - p_t)^gamma log(p_t) for one probability, written out for the comments."""
    p_t = p if positive else 1 - p
    alpha_t = alpha if positive else 1 - alpha
    return -alpha_t * (1 - p_t) ** gamma * math.log(p_t)


# Two classes; last column of y_true is the anchor state (1 positive, 0 negative, -1 ignore).
FOCAL_TRUE = [
    [
        [1, 0, 1],  # positive, class 0
        [0, 0, 0],  # negative
        [0, 0, -1],  # ignored
    ]
]
FOCAL_PRED = [
    [
        [0.9, 0.2],
        [0.5, 0.1],
        [0.99, 0.99],  # would cost a lot if it were not ignored
    ]
]


def test_focal_hand_computed():
    # Positive anchor, class 0 (p = 0.9): 0.25 * 0.1^2 * -log(0.9) = 0.25 * 0.01 * 0.1053605
    #   = 0.000263401; class 1 negative (p = 0.2, p_t = 0.8): 0.75 * 0.2^2 * -log(0.8)
    #   = 0.75 * 0.04 * 0.2231436 = 0.006694307.
    # Negative anchor: p = 0.5 -> 0.75 * 0.25 * 0.6931472 = 0.129965; p = 0.1 -> 0.75 * 0.01 *
    #   0.1053605 = 0.000790204.
    # Ignored anchor: left out. One positive: divide by 1.
    # Total 0.000263401 + 0.006694307 + 0.129965 + 0.000790204 = 0.137712912.
    expected = 0.000263401 + 0.006694307 + 0.129965 + 0.000790204
    assert value(focal(), FOCAL_TRUE, FOCAL_PRED) == pytest.approx(expected, rel=1e-5)
    # Same number from the formula, as a check on the hand arithmetic above.
    formula = (
        focal_term(0.9, True)
        + focal_term(0.2, False)
        + focal_term(0.5, False)
        + focal_term(0.1, False)
    )
    assert expected == pytest.approx(formula, rel=1e-5)


def test_focal_ignored_anchor_has_no_effect():
    changed = np.array(FOCAL_PRED)
    changed[0, 2] = [0.01, 0.5]  # the ignored anchor's prediction changes
    assert value(focal(), FOCAL_TRUE, changed) == pytest.approx(
        value(focal(), FOCAL_TRUE, FOCAL_PRED)
    )
    # ...while the same prediction on a negative anchor would change the loss.
    as_negative = np.array(FOCAL_TRUE, dtype=float)
    as_negative[0, 2, -1] = 0
    assert value(focal(), as_negative, FOCAL_PRED) > value(focal(), FOCAL_TRUE, FOCAL_PRED) + 1


def test_focal_zero_positives_divides_by_one():
    # Only the negative anchor: 0.129965 + 0.000790204 = 0.130755, divided by max(1, 0) = 1.
    y_true = [[[0, 0, 0], [0, 0, -1]]]
    y_pred = [[[0.5, 0.1], [0.9, 0.9]]]
    assert value(focal(), y_true, y_pred) == pytest.approx(0.129965 + 0.000790204, rel=1e-5)


def test_focal_divides_by_positives_over_the_batch():
    # Two images, one positive each, identical: the sum doubles and is divided by 2.
    y_true = np.array(FOCAL_TRUE * 2, dtype="float32")
    y_pred = np.array(FOCAL_PRED * 2, dtype="float32")
    single = value(focal(), FOCAL_TRUE, FOCAL_PRED)
    assert value(focal(), y_true, y_pred) == pytest.approx(single, rel=1e-6)
    # Two positives in one image:
    #   anchor 0 (class 0): p = 0.9 positive 0.000263401, p = 0.2 negative 0.006694307;
    #   anchor 1 (class 1): p = 0.9 negative 0.75 * 0.9^2 * -log(0.1) = 0.75 * 0.81 * 2.302585
    #   = 1.398820, p = 0.9 positive 0.000263401.
    # Sum 1.405041, divided by 2 positives = 0.702521.
    y_true = [[[1, 0, 1], [0, 1, 1]]]
    y_pred = [[[0.9, 0.2], [0.9, 0.9]]]
    total = 0.000263401 + 0.006694307 + 1.398820 + 0.000263401
    assert total == pytest.approx(
        2 * focal_term(0.9, True) + focal_term(0.2, False) + focal_term(0.9, False), rel=1e-5
    )
    assert value(focal(), y_true, y_pred) == pytest.approx(total / 2, rel=1e-5)


def test_focal_gamma_zero_is_weighted_cross_entropy():
    # gamma 0, alpha 0.5: 0.5 * binary cross-entropy. p = 0.8 positive: 0.5 * -log(0.8)
    # = 0.111572; p = 0.3 negative: 0.5 * -log(0.7) = 0.178337. One positive.
    loss = FocalLoss(alpha=0.5, gamma=0.0)
    result = value(loss, [[[1, 0, 1]]], [[[0.8, 0.3]]])
    assert result == pytest.approx(0.5 * -math.log(0.8) + 0.5 * -math.log(0.7), rel=1e-5)


def test_focal_saturated_predictions_stay_finite():
    result = value(focal(), [[[1, 0, 1]]], [[[0.0, 1.0]]])
    assert math.isfinite(result) and result > 1  # clipped to 1e-7, large but finite


def test_smooth_l1_hand_computed():
    # sigma 3: quadratic 0.5 * 9 * x^2 for |x| < 1/9, else |x| - 0.5/9.
    #   x = 0.05: 0.5 * 9 * 0.0025 = 0.01125
    #   x = 0.5:  0.5 - 0.0555556 = 0.4444444
    #   x = -1:   1 - 0.0555556 = 0.9444444
    #   x = 0:    0
    # Sum 1.4001389 for the one positive anchor; the negative and the ignored anchor with large
    # errors are left out; divided by 1 positive.
    y_true = [[[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, -1]]]
    y_pred = [[[0.05, 0.5, -1.0, 0.0], [5, 5, 5, 5], [7, 7, 7, 7]]]
    expected = 0.01125 + 0.4444444 + 0.9444444
    assert value(smooth_l1(), y_true, y_pred) == pytest.approx(expected, rel=1e-5)


def test_smooth_l1_uses_the_target_and_normalises_by_positives():
    # Two positives, each off its target by 2 in one coordinate: 2 - 0.5/9 = 1.9444444 each,
    # sum 3.8888889, divided by 2 positives = 1.9444444.
    y_true = [[[1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]]
    y_pred = [[[1, 1, 1, 3, 1], [-2, 0, 0, 0, 0]]]  # the 5th prediction column is not used
    assert value(smooth_l1(), np.array(y_true), np.array(y_pred)[..., :4]) == pytest.approx(
        2 - 0.5 / 9, rel=1e-5
    )


def test_smooth_l1_zero_positives_is_zero():
    y_true = [[[0, 0, 0, 0, 0], [0, 0, 0, 0, -1]]]
    assert value(smooth_l1(), y_true, [[[3, 3, 3, 3], [4, 4, 4, 4]]]) == 0.0


def test_smooth_l1_sigma_one():
    # sigma 1: 0.5 x^2 below |x| < 1, |x| - 0.5 above. x = 0.5 -> 0.125, x = 3 -> 2.5.
    y_true = [[[0, 0, 0, 0, 1]]]
    assert value(SmoothL1Loss(sigma=1.0), y_true, [[[0.5, 3, 0, 0]]]) == pytest.approx(2.625)


@pytest.mark.parametrize(
    "loss",
    [
        FocalLoss(alpha=0.3, gamma=1.5, name="cls"),
        SmoothL1Loss(sigma=2.0, name="reg"),
        L1Loss(normalisation="batch", name="l1b"),
        GIoULoss(eps=1e-6, name="g"),
    ],
    ids=["focal", "smooth_l1", "l1", "giou"],
)
def test_loss_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(loss)
    assert serialized["registered_name"] == f"keras_retinanet>{type(loss).__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(loss) and restored.get_config() == config
    if isinstance(loss, FocalLoss):
        assert (restored.alpha, restored.gamma) == (0.3, 1.5)
        args = (FOCAL_TRUE, FOCAL_PRED)
    else:
        if isinstance(loss, SmoothL1Loss):
            assert restored.sigma == 2.0
        args = ([[[0, 0, 0, 0, 1]]], [[[0.5, 3, 0, 0]]])
    assert value(restored, *args) == pytest.approx(value(loss, *args))


def giou_loss_in_pixels(predicted, target):
    """1 - GIoU of (x1, y1, x2, y2) pixel boxes, as torchvision's generalized_box_iou_loss."""
    ix = max(0.0, min(predicted[2], target[2]) - max(predicted[0], target[0]))
    iy = max(0.0, min(predicted[3], target[3]) - max(predicted[1], target[1]))
    inter = ix * iy
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    union = area(predicted) + area(target) - inter
    hull = (max(predicted[2], target[2]) - min(predicted[0], target[0])) * (
        max(predicted[3], target[3]) - min(predicted[1], target[1])
    )
    return 1 - (inter / union - (hull - union) / hull)


def test_giou_on_deltas_equals_giou_of_the_decoded_boxes_in_pixels():
    # GIoU is unchanged by a translation and by scaling each axis, so the loss computed on a
    # unit anchor from the deltas alone equals the loss on the boxes in pixels.
    # The fourth predicts a width delta of 5, past the clamp at log(1000 / 16) = 4.14, which
    # torchvision's decode (and bbox_transform_inv_centre_size) applies.
    anchors = np.array(
        [[10, 20, 42, 36], [100, 50, 164, 178], [0, 0, 50, 25], [0, 0, 8, 8]], np.float32
    )
    targets = np.array(
        [[12, 18, 40, 40], [90, 60, 150, 200], [60, 30, 90, 40], [0, 0, 400, 8]], np.float32
    )
    deltas = np.array(
        [[0.1, -0.2, 0.05, 0.3], [-0.3, 0.1, 0.2, -0.1], [0.0, 0.0, 0.0, 0.0], [0, 0, 5.0, 0]]
    )
    y_true = np.concatenate([bbox_transform_centre_size(anchors, targets), np.ones((4, 1))], 1)
    decoded = bbox_transform_inv_centre_size(anchors, deltas.astype(np.float32))
    expected = [giou_loss_in_pixels(p, t) for p, t in zip(decoded, targets)]
    assert decoded[3, 2] - decoded[3, 0] == pytest.approx(1000 / 16 * 8, rel=1e-5)
    # One image: the mean of the four (each image over its own positives).
    assert value(GIoULoss(), y_true[None], deltas[None]) == pytest.approx(
        np.mean(expected), rel=1e-5
    )
    # The third pair does not overlap: GIoU below 0, the loss above 1.
    assert expected[2] > 1


def test_per_image_normalisation_averages_each_images_own_mean():
    # Image 0: one positive with |error| 4; image 1: three positives with |error| 1 each.
    # Per image (torchvision): (4 / 1 + 3 / 3) / 2 = 2.5; over the batch: 7 / 4 = 1.75.
    y_true = np.zeros((2, 3, 5), np.float32)
    y_true[0, 0, 4] = 1
    y_true[1, :, 4] = 1
    y_pred = np.zeros((2, 3, 4), np.float32)
    y_pred[0, 0, 0] = 4
    y_pred[1, :, 1] = 1
    assert value(L1Loss(normalisation="image"), y_true, y_pred) == pytest.approx(2.5)
    assert value(L1Loss(normalisation="batch"), y_true, y_pred) == pytest.approx(1.75)


def test_each_variant_compiles_its_sources_losses():
    kinds = {
        name: (type(pair["regression"]).__name__, pair["regression"].normalisation)
        for name in ("retinanet", "fizyr", "torchvision_v1", "torchvision_v2")
        for pair in [losses_for(name)]
    }
    assert kinds == {
        "retinanet": ("SmoothL1Loss", "batch"),
        "fizyr": ("SmoothL1Loss", "batch"),
        "torchvision_v1": ("L1Loss", "image"),
        "torchvision_v2": ("GIoULoss", "image"),
    }
    assert losses_for("torchvision_v2")["classification"].normalisation == "image"
