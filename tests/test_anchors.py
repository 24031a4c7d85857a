"""Tests for model/anchors.py: base anchors, the grid, counts, the Anchors layer agreeing
with anchors_for_shape, parameter files and anchor target assignment."""

import json
import math

import numpy as np
import pytest
from keras import ops

from keras_retinanet.model.anchor_config import read_anchor_parameters
from keras_retinanet.model.anchors import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    AnchorParameters,
    anchors_for_shape,
    feature_shape,
    generate_anchors,
    num_anchors_for_shape,
    shift,
)
from keras_retinanet.model.boxes import bbox_transform_inv, compute_overlap
from keras_retinanet.model.layers import Anchors
from keras_retinanet.model.targets import anchor_targets_bbox

# sqrt(2048) and sqrt(512): the sides of a 32^2-area anchor with h / w = 0.5 or 2.
S2048 = math.sqrt(2048.0)  # 45.2548
S512 = math.sqrt(512.0)  # 22.6274


# --------------------------------------------------------------------------- base anchors


def test_generate_anchors_size_32_known_values():
    base = generate_anchors(32)
    assert base.shape == (9, 4) and base.dtype == np.float32
    # Ratio-major, scale-minor: row = 3 * ratio_index + scale_index.
    # Row 0, ratio 0.5 scale 1: area 32^2 = 1024, h = w / 2 -> w = sqrt(2048), h = sqrt(512).
    np.testing.assert_allclose(base[0], [-S2048 / 2, -S512 / 2, S2048 / 2, S512 / 2], rtol=1e-6)
    # Row 3, ratio 1 scale 1: the 32 x 32 square centred on 0.
    np.testing.assert_allclose(base[3], [-16, -16, 16, 16], rtol=1e-6)
    # Row 4, ratio 1 scale 2^(1/3): side 32 * 1.259921 = 40.3175, half 20.1587.
    np.testing.assert_allclose(base[4], [-20.158737, -20.158737, 20.158737, 20.158737], rtol=1e-6)
    # Row 5, ratio 1 scale 2^(2/3): side 32 * 1.587401 = 50.7968, half 25.3984.
    np.testing.assert_allclose(base[5], [-25.398417, -25.398417, 25.398417, 25.398417], rtol=1e-6)
    # Row 6, ratio 2 scale 1: w = sqrt(512), h = sqrt(2048).
    np.testing.assert_allclose(base[6], [-S512 / 2, -S2048 / 2, S512 / 2, S2048 / 2], rtol=1e-6)


def test_generate_anchors_properties():
    ratios, scales = AnchorParameters.ratios, AnchorParameters.scales
    base = generate_anchors(32).astype(np.float64)
    widths, heights = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    # Centred on the origin.
    np.testing.assert_allclose(base[:, 0] + base[:, 2], 0, atol=1e-5)
    np.testing.assert_allclose(base[:, 1] + base[:, 3], 0, atol=1e-5)
    # Ratio h / w and area (32 * scale)^2, in ratio-major, scale-minor order.
    np.testing.assert_allclose(heights / widths, np.repeat(ratios, 3), rtol=1e-5)
    np.testing.assert_allclose(widths * heights, (32 * np.tile(scales, 3)) ** 2, rtol=1e-5)


# --------------------------------------------------------------------------- grid


BASE_2 = np.array([[-16, -16, 16, 16], [-8, -4, 8, 4]], dtype=np.float32)
# Cell centres of a (2, 3) map with stride 8, x fastest: 4 == (0 + 0.5) * 8, 12 == (1 + 0.5) * 8,
# 20 == (2 + 0.5) * 8.
CENTRES_2x3 = [(4, 4), (12, 4), (20, 4), (4, 12), (12, 12), (20, 12)]


@pytest.mark.parametrize("xp_name", ["numpy", "keras.ops"])
def test_shift_small_grid(xp_name):
    xp = np if xp_name == "numpy" else ops
    shifted = np.asarray(ops.convert_to_numpy(shift((2, 3), 8, BASE_2, xp=xp)))
    assert shifted.shape == (2 * 3 * 2, 4)
    expected = [
        [cx + a[0], cy + a[1], cx + a[2], cy + a[3]] for cx, cy in CENTRES_2x3 for a in BASE_2
    ]
    np.testing.assert_array_equal(shifted, expected)
    # First rows spelled out: the 32-square at (4, 4), then the 16 x 8 box at (4, 4), then the
    # 32-square at (12, 4).
    np.testing.assert_array_equal(
        shifted[:3], [[-12, -12, 20, 20], [-4, 0, 12, 8], [-4, -12, 28, 20]]
    )


def test_feature_shape_rounds_up():
    # ceil(100 / 8) = 13, ceil(150 / 8) = 19; ceil(100 / 128) = 1, ceil(150 / 128) = 2.
    assert feature_shape((100, 150), 8) == (13, 19)
    assert feature_shape((100, 150), 128) == (1, 2)
    assert feature_shape((96, 128), 32) == (3, 4)


def test_num_anchors_512():
    # (64*64 + 32*32 + 16*16 + 8*8 + 4*4) * 9 = (4096 + 1024 + 256 + 64 + 16) * 9 = 49104.
    assert num_anchors_for_shape((512, 512)) == 49104
    assert anchors_for_shape((512, 512)).shape == (49104, 4)


def test_num_anchors_800x1333():
    # ceil divisions: 100*167 + 50*84 + 25*42 + 13*21 + 7*11
    #   = 16700 + 4200 + 1050 + 273 + 77 = 22300 locations, * 9 = 200700.
    assert num_anchors_for_shape((800, 1333)) == 200700
    assert anchors_for_shape((800, 1333, 3)).shape == (200700, 4)


def test_anchors_for_shape_order_and_first_level():
    anchors = anchors_for_shape((64, 64))
    # The first 8 * 8 * 9 rows are level 3 (stride 8, size 32), location-major.
    first_level = shift((8, 8), 8, generate_anchors(32))
    np.testing.assert_array_equal(anchors[: 8 * 8 * 9], first_level)
    # The 32 x 32 anchor of cell (row 1, col 2) is centred at (20, 12): row (1 * 8 + 2) * 9 + 3.
    np.testing.assert_allclose(anchors[(1 * 8 + 2) * 9 + 3], [4, -4, 36, 28], atol=1e-5)
    # The last level (stride 128) has one cell for 64 x 64, centred at (64, 64).
    last = anchors[-9:]
    np.testing.assert_allclose((last[:, 0] + last[:, 2]) / 2, 64, atol=1e-4)


def test_anchors_for_shape_returns_a_copy():
    first = anchors_for_shape((64, 96))
    first[:] = -7  # must not poison the cache
    second = anchors_for_shape((64, 96))
    assert not (second == -7).all()
    np.testing.assert_array_equal(second[:9], shift((8, 12), 8, generate_anchors(32))[:9])


def test_custom_parameters_counts():
    params = AnchorParameters(sizes=(32, 64), strides=(8, 16), ratios=(1.0,), scales=(1.0, 2.0))
    # (ceil(100/8) * ceil(150/8) + ceil(100/16) * ceil(150/16)) * 2 = (13*19 + 7*10) * 2 = 634.
    assert num_anchors_for_shape((100, 150), params) == 634
    assert anchors_for_shape((100, 150), params).shape == (634, 4)


@pytest.mark.parametrize("shape", [(100, 150), (64, 64), (97, 131)])
def test_anchors_layer_matches_anchors_for_shape(shape):
    """The inference graph's anchors (Anchors layer, keras.ops) equal the loader's (NumPy)."""
    params = AnchorParameters()
    level_outputs = []
    for i, (size, stride) in enumerate(zip(params.sizes, params.strides)):
        height, width = feature_shape(shape, stride)
        features = np.zeros((2, height, width, 1), dtype=np.float32)  # a batch of 2
        layer = Anchors(size, stride, params.ratios, params.scales, name=f"anchors_{i}")
        level = np.asarray(ops.convert_to_numpy(layer(features)))
        assert level.shape == (2, height * width * 9, 4)
        level_outputs.append(level)
    from_layers = np.concatenate(level_outputs, axis=1)
    expected = anchors_for_shape(shape, params)
    np.testing.assert_allclose(from_layers[0], expected, atol=1e-4)
    np.testing.assert_allclose(from_layers[1], expected, atol=1e-4)


# --------------------------------------------------------------------------- parameters


def test_anchor_parameters_defaults_and_round_trip():
    params = AnchorParameters()
    assert params.num_anchors == 9
    assert params.pyramid_levels == (3, 4, 5, 6, 7)
    as_dict = params.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict  # JSON-serialisable as it is
    assert AnchorParameters.from_dict(as_dict) == params
    assert hash(AnchorParameters.from_dict(as_dict)) == hash(params)
    custom = AnchorParameters(sizes=(16, 32), strides=(4, 8), ratios=(1,), scales=(1, 2))
    assert custom.pyramid_levels == (2, 3) and custom.num_anchors == 2
    assert AnchorParameters.from_dict(custom.to_dict()) == custom


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sizes": (32, 64), "strides": (8,)}, "one entry per level"),
        ({"sizes": (32,), "strides": (12,)}, "powers of two"),
        ({"ratios": ()}, "must not be empty"),
    ],
)
def test_anchor_parameters_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnchorParameters(**kwargs)


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match="unknown anchor parameter.*'size'"):
        AnchorParameters.from_dict({"size": [32]})


def test_read_anchor_parameters_json(tmp_path):
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps({"ratios": [0.5, 1, 2, 3], "scales": [1, 1.5]}))
    params = read_anchor_parameters(str(path))
    assert params.ratios == (0.5, 1.0, 2.0, 3.0) and params.scales == (1.0, 1.5)
    assert params.sizes == AnchorParameters().sizes  # missing keys take the defaults
    assert params.num_anchors == 8
    # Also accepted nested under "anchor_parameters" (a snapshot metadata record).
    nested = tmp_path / "metadata.json"
    nested.write_text(json.dumps({"anchor_parameters": params.to_dict()}))
    assert read_anchor_parameters(str(nested)) == params


def test_read_anchor_parameters_ini(tmp_path):
    path = tmp_path / "config.ini"
    path.write_text(
        "[anchor_parameters]\n"
        "sizes   = 32 64 128 256 512\n"
        "strides = 8 16 32 64 128\n"
        "ratios  = 0.5 1 2 3\n"
        "scales  = 1 1.2 1.6\n"
    )
    params = read_anchor_parameters(str(path))
    assert params.ratios == (0.5, 1.0, 2.0, 3.0)
    assert params.scales == (1.0, 1.2, 1.6)
    assert params.strides == (8, 16, 32, 64, 128)
    assert params.num_anchors == 12


@pytest.mark.parametrize(
    "name, text",
    [
        ("broken.json", '{"ratios": [0.5, 1,'),
        ("bad_stride.json", '{"sizes": [32], "strides": [12]}'),
        ("unknown_key.json", '{"sizez": [32]}'),
        ("no_section.ini", "[anchors]\nratios = 1 2\n"),
        ("no_header.ini", "ratios = 1 2\n"),
        ("not_numbers.ini", "[anchor_parameters]\nratios = one two\n"),
    ],
)
def test_read_anchor_parameters_bad_file_names_the_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_anchor_parameters(str(path))
    assert str(path) in str(info.value)


def test_read_anchor_parameters_missing_file(tmp_path):
    path = tmp_path / "nope.ini"
    with pytest.raises(FileNotFoundError, match="nope.ini"):
        read_anchor_parameters(str(path))


# --------------------------------------------------------------------------- targets


def state_of(regression, labels, image=0):
    """The anchor states of one image; both outputs must carry the same ones."""
    np.testing.assert_array_equal(regression[image, :, -1], labels[image, :, -1])
    return regression[image, :, -1]


def annotation(boxes, labels, difficult=None):
    entry = {
        "bboxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.array(labels, dtype=np.int64),
    }
    if difficult is not None:
        entry["difficult"] = np.array(difficult, dtype=bool)
    return entry


def test_no_boxes_gives_all_negative_padding_included():
    # Anchors for a 96 x 96 padded batch, the image itself is 64 x 64: with no box, every
    # anchor is background, those over the padding too (the model learns that padding holds
    # nothing; ignoring them let a trained model fire there).
    anchors = anchors_for_shape((96, 96))
    regression, labels = anchor_targets_bbox(
        anchors, [(64, 64, 3)], [annotation(np.zeros((0, 4)), [])], num_classes=3
    )
    assert regression.shape == (1, len(anchors), 5) and labels.shape == (1, len(anchors), 4)
    assert regression.dtype == np.float32 and labels.dtype == np.float32
    state = state_of(regression, labels)
    centre_x = (anchors[:, 0] + anchors[:, 2]) / 2
    in_padding = centre_x >= 64
    assert in_padding.any()
    np.testing.assert_array_equal(state, NEGATIVE)
    assert (labels[0, :, :3] == 0).all()
    assert (regression[0, :, :4] == 0).all()


# Hand-made anchors against one ground-truth box GT = [0, 0, 10, 10] (area 100) in a 100 x 100
# image; IoU of each anchor with GT in the comment.
GT = [0.0, 0.0, 10.0, 10.0]
HAND_ANCHORS = np.array(
    [
        [0, 0, 10, 10],  # 0: IoU 1 -> positive, zero regression
        [0, 0, 10, 4.5],  # 1: IoU 45 / 100 = 0.45 -> ignored
        [0, 0, 10, 3],  # 2: IoU 0.3 -> negative
        [0, 0, 10, 5],  # 3: IoU 0.5 exactly -> positive (>= 0.5)
        [0, 0, 10, 4],  # 4: IoU 0.4 exactly -> ignored (only < 0.4 is background)
        [50, 50, 60, 60],  # 5: IoU 0 -> negative
        [195, 0, 205, 10],  # 6: IoU 0, centre x 200 in the padding -> negative like any other
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("allow_low_quality_matches", [True, False])
def test_hand_made_anchors_states_and_targets(allow_low_quality_matches):
    regression, labels = anchor_targets_bbox(
        HAND_ANCHORS,
        [(100, 100)],
        [annotation([GT], [1])],
        num_classes=3,
        allow_low_quality_matches=allow_low_quality_matches,
    )
    state = state_of(regression, labels)
    expected = [POSITIVE, IGNORE, NEGATIVE, POSITIVE, IGNORE, NEGATIVE, NEGATIVE]
    np.testing.assert_array_equal(state, expected)
    # One-hot class 1 on the positives only.
    np.testing.assert_array_equal(
        labels[0, :, :3], [[0, 1, 0] if s == 1 else [0, 0, 0] for s in expected]
    )
    # The exactly matching anchor needs no regression.
    np.testing.assert_allclose(regression[0, 0, :4], 0, atol=1e-7)
    # Anchor 3 [0, 0, 10, 5] -> GT: y2 moves by (10 - 5) / 5 = 1 anchor height, / std 0.2 = 5.
    np.testing.assert_allclose(regression[0, 3, :4], [0, 0, 0, 5], atol=1e-6)
    # And the deltas decode back onto the box.
    np.testing.assert_allclose(
        bbox_transform_inv(HAND_ANCHORS[3], regression[0, 3, :4]), GT, atol=1e-5
    )


def test_low_quality_match_makes_best_anchor_positive():
    # A box whose best anchor has IoU 0.3 only: with low-quality matches that anchor becomes
    # positive for it; without, everything is background.
    anchors = np.array([[0, 0, 10, 3], [0, 0, 10, 2], [40, 40, 50, 50]], dtype=np.float32)
    for allow, expected in [(True, [1, 0, 0]), (False, [0, 0, 0])]:
        regression, labels = anchor_targets_bbox(
            anchors, [(100, 100)], [annotation([GT], [2])], 3, allow_low_quality_matches=allow
        )
        np.testing.assert_array_equal(state_of(regression, labels), expected)
        assert labels[0, 0, 2] == expected[0]


def test_low_quality_match_never_takes_a_positive_anchor_from_its_box():
    # One anchor (0, 0, 100, 100). Box A (0, 0, 100, 120): IoU 10000 / 12000 = 0.83, the
    # anchor is positive for A. Box B (0, 0, 30, 30): IoU 900 / 10000 = 0.09, and the anchor is
    # also B's best one. The forced match for B must not take it from A: the anchor stays A's
    # (class 0, regression onto A), B gets nothing here.
    anchors = np.array([[0, 0, 100, 100], [300, 300, 400, 400]], dtype=np.float32)
    boxes = [[0, 0, 100, 120], [0, 0, 30, 30]]
    regression, labels = anchor_targets_bbox(
        anchors, [(500, 500)], [annotation(boxes, [0, 1])], num_classes=2
    )
    np.testing.assert_array_equal(state_of(regression, labels), [POSITIVE, NEGATIVE])
    np.testing.assert_array_equal(labels[0, 0, :2], [1, 0])
    np.testing.assert_allclose(
        bbox_transform_inv(anchors[0], regression[0, 0, :4]), boxes[0], atol=1e-4
    )


def test_low_quality_match_still_promotes_an_anchor_positive_for_no_box():
    # Anchor 0 has IoU 0.09 with B only (B's best); anchor 1 is A's exact match. The forced
    # match turns anchor 0 into B's positive, and anchor 1 stays A's.
    anchors = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], dtype=np.float32)
    boxes = [[200, 200, 300, 300], [0, 0, 30, 30]]
    regression, labels = anchor_targets_bbox(
        anchors, [(500, 500)], [annotation(boxes, [0, 1])], num_classes=2
    )
    np.testing.assert_array_equal(state_of(regression, labels), [POSITIVE, POSITIVE])
    np.testing.assert_array_equal(labels[0, :, :2], [[0, 1], [1, 0]])


def test_intermediate_iou_ignored_on_a_real_grid():
    # A single-level grid of 32 x 32 anchors every 8 pixels (64 anchors for 64 x 64) and a box
    # [12, 12, 44, 26.4]: it covers 14.4 / 32 = 0.45 of the anchors [12, y, 44, y + 32] that
    # contain it vertically, so those are ignored and, without low-quality matches, nothing is
    # positive. Every anchor's state follows the IoU rule.
    params = AnchorParameters(sizes=(32,), strides=(8,), ratios=(1.0,), scales=(1.0,))
    anchors = anchors_for_shape((64, 64), params)
    box = [12.0, 12.0, 44.0, 26.4]
    regression, labels = anchor_targets_bbox(
        anchors, [(64, 64)], [annotation([box], [0])], 1, allow_low_quality_matches=False
    )
    state = state_of(regression, labels)
    iou = compute_overlap(anchors, np.array([box]))[:, 0]
    assert iou.max() == pytest.approx(0.45, abs=1e-6)
    np.testing.assert_array_equal(state[iou < 0.4], NEGATIVE)
    np.testing.assert_array_equal(state[iou >= 0.4], IGNORE)
    assert (state == IGNORE).sum() >= 3 and (state == POSITIVE).sum() == 0


def test_anchor_centred_in_padding_is_matched_like_any_other():
    # The anchor matches a box at the image border exactly but is centred at x = 70 >= image
    # width 64 (in the padding): it is that box's positive, the far anchor a negative.
    anchors = np.array([[60, 0, 80, 20], [0, 40, 20, 60]], dtype=np.float32)
    regression, labels = anchor_targets_bbox(
        anchors, [(64, 64)], [annotation([[60, 0, 80, 20]], [0])], 1
    )
    np.testing.assert_array_equal(state_of(regression, labels), [POSITIVE, NEGATIVE])
    assert labels[0, 0, 0] == 1


def test_difficult_box_overlaps_are_ignored_not_negative():
    anchors = np.array(
        [
            [0, 0, 10, 10],  # IoU 1 with the difficult box -> ignored
            [0, 0, 10, 4.5],  # IoU 0.45 with it -> ignored
            [0, 0, 10, 3],  # IoU 0.3 with it -> still background
            [50, 50, 60, 60],  # matches the easy box exactly -> positive
            [80, 80, 90, 90],  # overlaps nothing -> background
        ],
        dtype=np.float32,
    )
    ann = annotation([GT, [50, 50, 60, 60]], [0, 1], difficult=[True, False])
    regression, labels = anchor_targets_bbox(anchors, [(100, 100)], [ann], 2)
    np.testing.assert_array_equal(
        state_of(regression, labels), [IGNORE, IGNORE, NEGATIVE, POSITIVE, NEGATIVE]
    )
    np.testing.assert_array_equal(labels[0, 3, :2], [0, 1])
    assert labels[0, :3, :2].sum() == 0  # the difficult box's label is never assigned
    # A difficult box alone: same ignores, no positives.
    only = annotation([GT], [0], difficult=[True])
    regression, labels = anchor_targets_bbox(anchors, [(100, 100)], [only], 2)
    np.testing.assert_array_equal(
        state_of(regression, labels), [IGNORE, IGNORE, NEGATIVE, NEGATIVE, NEGATIVE]
    )


def test_batch_images_are_independent():
    anchors = HAND_ANCHORS[:6]
    anns = [annotation([GT], [0]), annotation(np.zeros((0, 4)), [])]
    regression, labels = anchor_targets_bbox(anchors, [(100, 100), (100, 100)], anns, 2)
    np.testing.assert_array_equal(state_of(regression, labels, 0), [1, -1, 0, 1, -1, 0])
    np.testing.assert_array_equal(state_of(regression, labels, 1), [0, 0, 0, 0, 0, 0])
    single_r, single_l = anchor_targets_bbox(anchors, [(100, 100)], anns[:1], 2)
    np.testing.assert_array_equal(regression[:1], single_r)
    np.testing.assert_array_equal(labels[:1], single_l)


@pytest.mark.parametrize("bad_label", [3, -1])
def test_labels_out_of_range_raise(bad_label):
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        anchor_targets_bbox(HAND_ANCHORS, [(100, 100)], [annotation([GT], [bad_label])], 3)


def test_mismatched_group_lengths_raise():
    with pytest.raises(ValueError, match="2 images but 1 annotation"):
        anchor_targets_bbox(HAND_ANCHORS, [(100, 100)] * 2, [annotation([GT], [0])], 3)


def test_inputs_not_mutated():
    anchors = HAND_ANCHORS.copy()
    ann = annotation([GT], [1])
    boxes_before = ann["bboxes"].copy()
    anchor_targets_bbox(anchors, [(100, 100)], [ann], 3)
    np.testing.assert_array_equal(anchors, HAND_ANCHORS)
    np.testing.assert_array_equal(ann["bboxes"], boxes_before)
