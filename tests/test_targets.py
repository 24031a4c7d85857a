"""The matchers of model/targets.py: where ours differs from torchvision's and fizyr's on
purpose, and the order of the annotations deciding nothing."""

from __future__ import annotations

import numpy as np
import pytest

from keras_retinanet.model.anchors import IGNORE, NEGATIVE, POSITIVE
from keras_retinanet.model.boxes import compute_overlap
from keras_retinanet.model.targets import anchor_targets_bbox, match_anchors

FAR = [200.0, 200.0, 210.0, 210.0]  # an anchor that overlaps nothing


def annotation(boxes, labels):
    return {"bboxes": np.array(boxes, np.float32), "labels": np.array(labels)}


@pytest.mark.parametrize("matcher", ["retinanet", "torchvision"])
def test_a_tie_in_the_low_quality_match_is_not_decided_by_the_annotation_order(matcher):
    # One anchor is the best of both boxes: IoU 3/7 with box 0 (class 0) and 1/3 with box 1
    # (class 1), both below 0.5. It learns box 0, whichever box is listed first (the old code
    # gave it to the last box listed: class 1 for order [0, 1]).
    anchors = np.array([[0, 0, 10, 10], FAR], np.float32)
    box0, box1 = [0, 0, 6, 50 / 7], [0, 0, 5, 20 / 3]
    overlaps = compute_overlap(anchors, np.array([box0, box1], np.float32))
    np.testing.assert_allclose(overlaps[0], [3 / 7, 1 / 3], rtol=1e-5)
    for boxes, labels in (([box0, box1], [0, 1]), ([box1, box0], [1, 0])):
        _, targets = anchor_targets_bbox(
            anchors, [(64, 64)], [annotation(boxes, labels)], 2, matcher=matcher
        )
        assert targets[0, 0].tolist() == [1, 0, POSITIVE]


def test_ours_gives_a_low_quality_anchor_to_the_box_that_needs_it_torchvision_to_its_best():
    # Box A has a good anchor (IoU 0.81). Anchor 1 overlaps A by 0.45 and is the best anchor
    # of box B (IoU 0.04). torchvision's Matcher promotes anchor 1 for its own best box, A, so
    # B has no positive anchor; ours gives it to B.
    box_a, box_b = [0, 0, 10, 10], [8, 0, 28, 10]
    anchors = np.array([[0, 0, 9, 9], [0, 0, 10, 4.5], FAR], np.float32)
    overlaps = compute_overlap(anchors, np.array([box_a, box_b], np.float32))
    np.testing.assert_allclose(overlaps[:2], [[0.81, 9 / 272], [0.45, 9 / 236]], rtol=1e-5)
    assert overlaps[:, 1].argmax() == 1 and overlaps[1, 0] > overlaps[1, 1]
    ours, ours_state = match_anchors(overlaps, "retinanet")
    theirs, theirs_state = match_anchors(overlaps, "torchvision")
    assert ours_state[:2].tolist() == theirs_state[:2].tolist() == [POSITIVE, POSITIVE]
    assert ours[1] == 1 and theirs[1] == 0
    assert set(ours[ours_state == POSITIVE]) == {0, 1}
    assert set(theirs[theirs_state == POSITIVE]) == {0}


def test_ours_supervises_the_padding_as_background_fizyr_ignores_it():
    # A 64x64 image in a 64x128 batch: anchors centred right of x = 64 lie in the padding.
    anchors = np.array([[0, 0, 32, 32], [80, 0, 112, 32], [100, 40, 120, 60]], np.float32)
    targets = {
        matcher: anchor_targets_bbox(
            anchors, [(64, 64)], [annotation([[0, 0, 30, 30]], [0])], 1, matcher=matcher
        )[0][0, :, 4]
        for matcher in ("retinanet", "torchvision", "fizyr")
    }
    assert targets["retinanet"].tolist() == [POSITIVE, NEGATIVE, NEGATIVE]
    assert targets["torchvision"].tolist() == [POSITIVE, NEGATIVE, NEGATIVE]
    assert targets["fizyr"].tolist() == [POSITIVE, IGNORE, IGNORE]


def test_fizyr_ignores_only_strictly_above_the_negative_threshold():
    # IoU exactly 0.4: ignored by ours and torchvision's (>= 0.4), a negative for fizyr (> 0.4).
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 4], FAR], np.float32)
    overlaps = compute_overlap(anchors, np.array([[0, 0, 10, 10]], np.float32))
    assert overlaps[1, 0] == pytest.approx(0.4)
    states = {m: match_anchors(overlaps, m)[1][1] for m in ("retinanet", "torchvision", "fizyr")}
    assert states == {"retinanet": IGNORE, "torchvision": IGNORE, "fizyr": NEGATIVE}


def test_the_old_import_path_of_the_targets_still_works():
    from keras_retinanet.model import anchors, targets

    assert anchors.anchor_targets_bbox is targets.anchor_targets_bbox


def test_fizyr_trains_difficult_boxes_as_any_other():
    # fizyr's PascalVocGenerator(skip_difficult=False) keeps difficult boxes as ordinary ones;
    # ours ignores the anchors on them.
    anchors = np.array([[0, 0, 10, 10], FAR], np.float32)
    difficult = {**annotation([[0, 0, 10, 10]], [0]), "difficult": np.array([True])}
    states = {
        m: anchor_targets_bbox(anchors, [(64, 64)], [difficult], 1, matcher=m)[0][0, 0, 4]
        for m in ("retinanet", "fizyr")
    }
    assert states == {"retinanet": IGNORE, "fizyr": POSITIVE}
