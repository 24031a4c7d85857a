"""Tests for keras_retinanet.model.boxes: IoU of known pairs, the delta transforms and clipping."""

import numpy as np
import pytest
from keras import ops

from keras_retinanet.model.boxes import (
    DEFAULT_STD,
    bbox_transform,
    bbox_transform_inv,
    box_iou,
    clip_boxes,
    compute_overlap,
)

SQUARE = [0.0, 0.0, 10.0, 10.0]  # area 100

# (box, expected IoU with SQUARE, why)
KNOWN_PAIRS = [
    (SQUARE, 1.0, "identical"),
    ([20.0, 20.0, 30.0, 30.0], 0.0, "disjoint"),
    ([10.0, 0.0, 20.0, 10.0], 0.0, "touching along x = 10: intersection width 0"),
    ([10.0, 10.0, 20.0, 20.0], 0.0, "touching at the corner (10, 10)"),
    ([2.0, 2.0, 7.0, 7.0], 0.25, "contained: 25 / 100"),
    ([-5.0, -5.0, 15.0, 15.0], 0.25, "containing: 100 / 400"),
    ([5.0, 0.0, 15.0, 10.0], 1.0 / 3.0, "half shifted: 50 / (100 + 100 - 50)"),
    ([0.0, 0.0, 10.0, 5.0], 0.5, "lower half: 50 / 100, exact in floating point"),
    ([5.0, 5.0, 5.0, 5.0], 0.0, "zero-area point inside: intersection 0"),
    ([0.0, 4.0, 10.0, 4.0], 0.0, "zero-height line through the square"),
]


def random_boxes(rng, count, max_xy=200.0, min_size=1.0, max_size=80.0):
    """(count, 4) float32 boxes with positive width and height."""
    xy = rng.uniform(0, max_xy, size=(count, 2))
    wh = rng.uniform(min_size, max_size, size=(count, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("box, expected, why", KNOWN_PAIRS, ids=[p[2] for p in KNOWN_PAIRS])
def test_compute_overlap_known_pairs(box, expected, why):
    iou = compute_overlap(np.array([box]), np.array([SQUARE]))
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(expected, abs=1e-12), why
    # IoU is symmetric.
    assert compute_overlap(np.array([SQUARE]), np.array([box]))[0, 0] == pytest.approx(iou[0, 0])


@pytest.mark.parametrize("xp_name", ["numpy", "keras.ops"])
@pytest.mark.parametrize("box, expected, why", KNOWN_PAIRS, ids=[p[2] for p in KNOWN_PAIRS])
def test_box_iou_known_pairs(box, expected, why, xp_name):
    xp = np if xp_name == "numpy" else ops
    boxes1 = np.array([[box]], dtype=np.float32)  # (1, 1, 4)
    boxes2 = np.array([[SQUARE]], dtype=np.float32)
    if xp is ops:
        boxes1, boxes2 = ops.convert_to_tensor(boxes1), ops.convert_to_tensor(boxes2)
    iou = np.asarray(ops.convert_to_numpy(box_iou(boxes1, boxes2, xp=xp)))
    assert iou.shape == (1, 1, 1)
    assert iou[0, 0, 0] == pytest.approx(expected, abs=1e-6), why


def test_two_zero_area_boxes_have_iou_zero_not_nan():
    # Union 0: the documented value is 0 rather than 0 / 0.
    point = np.array([[3.0, 3.0, 3.0, 3.0]])
    assert compute_overlap(point, point)[0, 0] == 0.0
    iou = ops.convert_to_numpy(box_iou(point[None].astype("float32"), point[None], xp=ops))
    assert np.isfinite(iou).all() and iou[0, 0, 0] == 0.0
    assert box_iou(point[None], point[None], xp=np)[0, 0, 0] == 0.0


def test_box_iou_matches_compute_overlap_on_random_batches():
    rng = np.random.default_rng(0)
    boxes1 = np.stack([random_boxes(rng, 7), random_boxes(rng, 7)])  # (2, 7, 4)
    boxes2 = np.stack([random_boxes(rng, 5), random_boxes(rng, 5)])  # (2, 5, 4)
    for xp in (np, ops):
        iou = np.asarray(ops.convert_to_numpy(box_iou(boxes1, boxes2, xp=xp)))
        assert iou.shape == (2, 7, 5)
        for b in range(2):
            np.testing.assert_allclose(iou[b], compute_overlap(boxes1[b], boxes2[b]), atol=1e-5)
    # The random boxes overlap often enough for the comparison to mean something.
    assert (compute_overlap(boxes1[0], boxes2[0]) > 0).any()


def test_compute_overlap_shape_and_empty_inputs():
    rng = np.random.default_rng(1)
    assert compute_overlap(random_boxes(rng, 4), random_boxes(rng, 3)).shape == (4, 3)
    assert compute_overlap(np.zeros((0, 4)), random_boxes(rng, 3)).shape == (0, 3)
    assert compute_overlap(random_boxes(rng, 2), np.zeros((0, 4))).shape == (2, 0)


def test_bbox_transform_known_deltas():
    # Anchor 10 wide, 20 high; ground truth [1, 2, 12, 18]:
    #   x1: (1 - 0) / 10 = 0.1, y1: (2 - 0) / 20 = 0.1,
    #   x2: (12 - 10) / 10 = 0.2, y2: (18 - 20) / 20 = -0.1;
    # divided by std 0.2: (0.5, 0.5, 1.0, -0.5).
    anchors = np.array([[0.0, 0.0, 10.0, 20.0]])
    gt = np.array([[1.0, 2.0, 12.0, 18.0]])
    assert DEFAULT_STD == 0.2
    deltas = bbox_transform(anchors, gt)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[0.5, 0.5, 1.0, -0.5]], atol=1e-6)
    # Per-coordinate mean and std: ((0.1, 0.1, 0.2, -0.1) - (0.1, 0, 0, 0)) / (1, 0.1, 0.2, 0.5)
    #   = (0, 1, 1, -0.2).
    deltas = bbox_transform(anchors, gt, mean=[0.1, 0, 0, 0], std=[1.0, 0.1, 0.2, 0.5])
    np.testing.assert_allclose(deltas, [[0.0, 1.0, 1.0, -0.2]], atol=1e-6)


def test_bbox_transform_inv_known_boxes():
    # Deltas (0.5, 0.5, 1.0, -0.5) * std 0.2 = (0.1, 0.1, 0.2, -0.1) of the anchor's 10 x 20:
    #   x1 = 0 + 1 = 1, y1 = 0 + 2 = 2, x2 = 10 + 2 = 12, y2 = 20 - 2 = 18.
    anchors = np.array([[0.0, 0.0, 10.0, 20.0]])
    boxes = bbox_transform_inv(anchors, np.array([[0.5, 0.5, 1.0, -0.5]]))
    np.testing.assert_allclose(boxes, [[1.0, 2.0, 12.0, 18.0]], atol=1e-5)
    # Zero deltas leave the anchor where it is.
    np.testing.assert_allclose(bbox_transform_inv(anchors, np.zeros((1, 4))), anchors)


@pytest.mark.parametrize("xp_name", ["numpy", "keras.ops"])
def test_bbox_transform_round_trip_random(xp_name):
    xp = np if xp_name == "numpy" else ops
    rng = np.random.default_rng(2)
    anchors = random_boxes(rng, 500).reshape(5, 100, 4)  # batched (B, N, 4)
    gt = random_boxes(rng, 500).reshape(5, 100, 4)
    mean, std = [0.01, -0.02, 0.0, 0.03], [0.1, 0.2, 0.3, 0.4]
    if xp is ops:
        anchors_in, gt_in = ops.convert_to_tensor(anchors), ops.convert_to_tensor(gt)
    else:
        anchors_in, gt_in = anchors, gt
    deltas = bbox_transform(anchors_in, gt_in, mean=mean, std=std, xp=xp)
    back = bbox_transform_inv(anchors_in, deltas, mean=mean, std=std, xp=xp)
    back = np.asarray(ops.convert_to_numpy(back))
    assert back.shape == (5, 100, 4)
    np.testing.assert_allclose(back, gt, rtol=1e-4, atol=1e-3)


def test_numpy_and_keras_ops_transforms_agree():
    rng = np.random.default_rng(3)
    anchors, gt = random_boxes(rng, 50), random_boxes(rng, 50)
    np.testing.assert_allclose(
        ops.convert_to_numpy(bbox_transform(ops.convert_to_tensor(anchors), gt, xp=ops)),
        bbox_transform(anchors, gt),
        rtol=1e-5,
        atol=1e-5,
    )


def test_non_positive_std_raises():
    anchors = np.array([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match="std must be positive"):
        bbox_transform(anchors, anchors, std=0.0)
    with pytest.raises(ValueError, match="std must be positive"):
        bbox_transform_inv(anchors, np.zeros((1, 4)), std=[0.1, 0.1, -0.1, 0.1])


def test_transforms_do_not_mutate_inputs():
    anchors = np.array([[0.0, 0.0, 10.0, 20.0]], dtype=np.float32)
    deltas = np.array([[0.5, 0.5, 1.0, -0.5]], dtype=np.float32)
    anchors_copy, deltas_copy = anchors.copy(), deltas.copy()
    bbox_transform_inv(anchors, deltas)
    bbox_transform(anchors, deltas)
    np.testing.assert_array_equal(anchors, anchors_copy)
    np.testing.assert_array_equal(deltas, deltas_copy)


@pytest.mark.parametrize("xp_name", ["numpy", "keras.ops"])
def test_clip_boxes(xp_name):
    xp = np if xp_name == "numpy" else ops
    boxes = np.array(
        [
            [-5.0, -3.0, 20.0, 10.0],  # sticks out left/top -> (0, 0, 20, 10)
            [50.0, 30.0, 120.0, 90.0],  # sticks out right/bottom of 100 x 60 -> (50, 30, 100, 60)
            [10.0, 10.0, 20.0, 20.0],  # inside: unchanged
            [150.0, 70.0, 160.0, 80.0],  # fully outside -> collapses to (100, 60, 100, 60)
        ],
        dtype=np.float32,
    )
    if xp is ops:
        boxes = ops.convert_to_tensor(boxes)
    clipped = np.asarray(ops.convert_to_numpy(clip_boxes(boxes, 60.0, 100.0, xp=xp)))
    np.testing.assert_array_equal(
        clipped,
        [[0, 0, 20, 10], [50, 30, 100, 60], [10, 10, 20, 20], [100, 60, 100, 60]],
    )


def plain_iou(boxes, query_boxes):
    """Textbook whole-array IoU, the reference for compute_overlap's blocked version."""
    boxes, query_boxes = np.asarray(boxes, np.float64), np.asarray(query_boxes, np.float64)
    iw = np.minimum(boxes[:, None, 2], query_boxes[None, :, 2]) - np.maximum(
        boxes[:, None, 0], query_boxes[None, :, 0]
    )
    ih = np.minimum(boxes[:, None, 3], query_boxes[None, :, 3]) - np.maximum(
        boxes[:, None, 1], query_boxes[None, :, 1]
    )
    intersection = np.maximum(iw, 0) * np.maximum(ih, 0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    query_area = (query_boxes[:, 2] - query_boxes[:, 0]) * (query_boxes[:, 3] - query_boxes[:, 1])
    union = area[:, None] + query_area[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


@pytest.mark.parametrize("num_queries", [1, 4, 40])
def test_compute_overlap_on_many_anchors_matches_the_plain_formula(num_queries):
    # Enough anchors for several blocks, so that the skipping of blocks a box cannot reach is
    # exercised: the anchors of a 512 x 512 image (49104), boxes in one corner and a few
    # zero-area and border boxes among them.
    from keras_retinanet.model.anchors import anchors_for_shape

    anchors = anchors_for_shape((512, 512))
    rng = np.random.default_rng(num_queries)
    queries = random_boxes(rng, num_queries, max_xy=150.0)
    queries[0] = [0.0, 0.0, 40.0, 40.0]
    if num_queries > 2:
        queries[1] = [500.0, 500.0, 512.0, 512.0]  # the far corner, last blocks only
        queries[2] = [100.0, 100.0, 100.0, 130.0]  # zero width
    iou = compute_overlap(anchors, queries)
    np.testing.assert_array_equal(iou, plain_iou(anchors, queries))
    assert (iou[:, 0] > 0.5).any()
