"""Tests for keras_retinanet.evaluation.voc: hand-computed VOC AP values and matching rules."""

import numpy as np
import pytest

from keras_retinanet.evaluation.voc import (
    VOC07_RECALL_THRESHOLDS,
    average_precision,
    evaluate_detections,
    mean_average_precision,
    plot_precision_recall,
    precision_recall,
)
from keras_retinanet.model.boxes import compute_overlap


def dets(*rows):
    """(D, 5) detections [x1, y1, x2, y2, score]."""
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def gt(*boxes, difficult=None):
    """Annotation dict of (G, 4) boxes; difficult omitted unless given."""
    entry = {"bboxes": np.array(boxes, dtype=np.float64).reshape(-1, 4)}
    if difficult is not None:
        entry["difficult"] = np.array(difficult, dtype=bool)
    return entry


# Three disjoint ground-truth boxes of one class in one image, 10 x 10 each.
BOX_A = [0, 0, 10, 10]
BOX_B = [20, 0, 30, 10]
BOX_C = [40, 0, 50, 10]
NOWHERE = [100, 100, 110, 110]  # overlaps no box: always a false positive


def test_iou_exactly_half_in_floating_point():
    # [0,0,10,10] vs [0,0,10,5]: intersection 50, union 100 + 50 - 50 = 100, IoU 50/100 = 0.5,
    # and every step is exact in binary floating point.
    iou = compute_overlap(np.array([[0, 0, 10, 5.0]]), np.array([BOX_A], dtype=float))
    assert iou[0, 0] == 0.5
    # [0,0,10,5.01]: intersection 50.1, union 100, IoU 0.501.
    iou = compute_overlap(np.array([[0, 0, 10, 5.01]]), np.array([BOX_A], dtype=float))
    assert iou[0, 0] > 0.5


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_all_true_positives_give_ap_one(use_07_metric):
    # Three boxes, three perfect detections: recall 1/3, 2/3, 1 at precision 1.
    detections = [[dets(BOX_A + [0.9], BOX_B + [0.8], BOX_C + [0.7])]]
    annotations = [[gt(BOX_A, BOX_B, BOX_C)]]
    results = evaluate_detections(detections, annotations, 1, use_07_metric=use_07_metric)
    assert results == {0: (pytest.approx(1.0), 3)}


def test_known_sequence_average_precision_directly():
    # TP, FP, TP, FP, FP with 3 ground-truth boxes:
    #   cumulative tp 1 1 2 2 2, fp 0 1 1 2 3
    #   recall    1/3 1/3 2/3 2/3 2/3
    #   precision 1   1/2 2/3 2/4 2/5
    recall = np.array([1, 1, 2, 2, 2]) / 3
    precision = np.array([1 / 1, 1 / 2, 2 / 3, 2 / 4, 2 / 5])
    # 11-point: t = 0, .1, .2, .3 reach recall 1/3 with max precision 1 (4 points);
    # t = .4, .5, .6 reach only recall 2/3, max precision 2/3 (3 points); t >= .7 give 0.
    # AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    assert average_precision(recall, precision, use_07_metric=True) == pytest.approx(6 / 11)
    # All-point: interpolated precision is 1 on (0, 1/3] and 2/3 on (1/3, 2/3], 0 after.
    # AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert average_precision(recall, precision, use_07_metric=False) == pytest.approx(5 / 9)


def test_known_sequence_through_matching():
    # Same TP, FP, TP, FP, FP sequence, produced by the matcher over two images: the ranking
    # is global, so the detections interleave across images by score.
    detections = [
        [dets(BOX_A + [0.9], NOWHERE + [0.5])],  # TP (rank 1), FP (rank 4)
        [dets(NOWHERE + [0.8], BOX_B + [0.7], BOX_A + [0.4])],  # FP, TP, FP (A not in image 1)
    ]
    annotations = [[gt(BOX_A, BOX_C)], [gt(BOX_B)]]
    recall, precision, num = precision_recall(detections, annotations, 0)
    assert num == 3
    np.testing.assert_allclose(recall, np.array([1, 1, 2, 2, 2]) / 3)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4, 2 / 5])
    assert evaluate_detections(detections, annotations, 1)[0] == (pytest.approx(6 / 11), 3)
    all_point = evaluate_detections(detections, annotations, 1, use_07_metric=False)
    assert all_point[0] == (pytest.approx(5 / 9), 3)


def test_eleven_point_levels_are_matlabs_zero_to_one_by_a_tenth():
    # MATLAB builds 0:0.1:1 forwards (k * 0.1) up to the middle and backwards from 1
    # (1 - (10 - k) * 0.1) after it: 3 * 0.1 == 0.30000000000000004, every other level is
    # exactly k / 10 (e.g. 1 - 4 * 0.1 == 0.6 but 6 * 0.1 == 0.6000000000000001).
    assert VOC07_RECALL_THRESHOLDS[3] == 0.30000000000000004 == 3 * 0.1
    others = [t for k, t in enumerate(VOC07_RECALL_THRESHOLDS) if k != 3]
    assert others == [k / 10 for k in range(11) if k != 3]
    # np.arange (py-faster-rcnn, detectron2) differs at 0.6 and 0.7 too.
    differs = np.flatnonzero(np.arange(0, 1.1, 0.1) != np.array(VOC07_RECALL_THRESHOLDS))
    assert differs.tolist() == [6, 7]


def test_recall_exactly_three_tenths_misses_the_devkits_point_three_level():
    # 10 boxes, 3 found without error: recall 0.1, 0.2, 0.3 at precision 1. The devkit's 0.3
    # level is 0.30000000000000004 > 3/10, so only t = 0, .1, .2 count: 11-point AP = 3/11.
    recall = np.array([1, 2, 3]) / 10
    assert average_precision(recall, np.ones(3)) == 3 / 11
    # Recall exactly 6/10 does reach the devkit's 0.6 (1 - 4 * 0.1 == 0.6): t = 0 .. .6.
    recall = np.arange(1, 7) / 10
    assert average_precision(recall, np.ones(6)) == pytest.approx(7 / 11)


def test_empty_curve_has_zero_ap():
    assert average_precision([], []) == 0.0
    assert average_precision([], [], use_07_metric=False) == 0.0


def test_mismatched_curve_lengths_raise():
    with pytest.raises(ValueError, match="recall has 2 points"):
        average_precision([0.5, 1.0], [1.0])


def test_detection_on_difficult_box_changes_nothing():
    # One normal box A and one difficult box B.
    annotations = [[gt(BOX_A, BOX_B, difficult=[False, True])]]
    without = [[dets(BOX_A + [0.5], NOWHERE + [0.4])]]
    # The same plus the highest-scoring detection, on the difficult box: ignored.
    with_difficult = [[dets(BOX_B + [0.9], BOX_A + [0.5], NOWHERE + [0.4])]]

    r0, p0, n0 = precision_recall(without, annotations, 0)
    r1, p1, n1 = precision_recall(with_difficult, annotations, 0)
    # The difficult box is not in the denominator: 1 annotation, not 2.
    assert n0 == n1 == 1
    # TP then FP: recall 1, 1 and precision 1, 1/2 in both cases (no extra point).
    np.testing.assert_array_equal(r1, r0)
    np.testing.assert_array_equal(p1, p0)
    np.testing.assert_allclose(p1, [1.0, 0.5])
    for metric in (True, False):
        a = evaluate_detections(without, annotations, 1, use_07_metric=metric)
        b = evaluate_detections(with_difficult, annotations, 1, use_07_metric=metric)
        # Recall reaches 1 at precision 1, so AP is 1; had B been a FP it would be lower.
        assert a == b == {0: (pytest.approx(1.0), 1)}


def test_difficult_boxes_not_in_recall_denominator():
    # Box A found, difficult B missed: recall 1/1, AP 1. Counting B would give recall 1/2.
    annotations = [[gt(BOX_A, BOX_B, difficult=[False, True])]]
    detections = [[dets(BOX_A + [0.9])]]
    assert evaluate_detections(detections, annotations, 1) == {0: (pytest.approx(1.0), 1)}


def test_several_detections_on_one_difficult_box_all_ignored():
    # Difficult boxes are never claimed, so repeated hits stay ignored rather than FP.
    annotations = [[gt(BOX_A, BOX_B, difficult=[False, True])]]
    detections = [[dets(BOX_B + [0.9], BOX_B + [0.8], BOX_A + [0.7])]]
    recall, precision, num = precision_recall(detections, annotations, 0)
    assert num == 1
    np.testing.assert_array_equal(recall, [1.0])
    np.testing.assert_array_equal(precision, [1.0])


def test_low_overlap_with_difficult_box_is_false_positive():
    # Best box is difficult but IoU is 0.4 (below the threshold): a false positive, as in
    # the devkit, which checks the threshold before the difficult flag.
    annotations = [[gt(BOX_A, BOX_B, difficult=[False, True])]]
    detections = [[dets([20, 0, 30, 4, 0.9], BOX_A + [0.8])]]
    recall, precision, _ = precision_recall(detections, annotations, 0)
    np.testing.assert_allclose(recall, [0.0, 1.0])
    np.testing.assert_allclose(precision, [0.0, 0.5])


def test_missing_difficult_key_means_not_difficult():
    # No "difficult" key: both boxes count, so one hit gives recall 1/2.
    annotations = [[gt(BOX_A, BOX_B)]]
    detections = [[dets(BOX_A + [0.9])]]
    recall, precision, num = precision_recall(detections, annotations, 0)
    assert num == 2
    np.testing.assert_allclose(recall, [0.5])


def test_duplicate_detection_is_false_positive():
    # Two boxes; ranked: A (TP), A again (duplicate -> FP), B (TP).
    #   recall 1/2 1/2 1, precision 1 1/2 2/3.
    annotations = [[gt(BOX_A, BOX_B)]]
    detections = [[dets(BOX_A + [0.9], [0, 0, 10, 9, 0.8], BOX_B + [0.7])]]
    recall, precision, num = precision_recall(detections, annotations, 0)
    assert num == 2
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    # 11-point: t = 0 .. 0.5 (6 points) precision 1, t = 0.6 .. 1 (5 points) 2/3:
    # (6 + 5 * 2/3) / 11 = 28/33. A duplicate counted as TP would give recall > 1 or AP 1.
    ap07 = evaluate_detections(detections, annotations, 1)[0][0]
    assert ap07 == pytest.approx(28 / 33)
    # All-point: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    ap = evaluate_detections(detections, annotations, 1, use_07_metric=False)[0][0]
    assert ap == pytest.approx(5 / 6)


def test_best_box_already_claimed_is_false_positive_even_if_another_box_is_free():
    # A = [0,0,10,10], A' = [0,0,10,9] (IoU with A 0.9). Two detections equal to A: both have
    # A as best box (IoU 1 vs 0.9). The devkit does not fall back to A' for the second: FP.
    annotations = [[gt(BOX_A, [0, 0, 10, 9])]]
    detections = [[dets(BOX_A + [0.9], BOX_A + [0.8])]]
    recall, precision, _ = precision_recall(detections, annotations, 0)
    np.testing.assert_allclose(recall, [0.5, 0.5])
    np.testing.assert_allclose(precision, [1.0, 0.5])


def test_iou_exactly_half_is_a_match_as_in_the_devkit():
    # VOCevaldet.m: "if ovmax>=VOCopts.minoverlap".
    annotations = [[gt(BOX_A)]]
    at_half = [[dets([0, 0, 10, 5, 0.9])]]  # IoU == 0.5 exactly (see the IoU test)
    below = [[dets([0, 0, 10, 4.99, 0.9])]]  # IoU 0.499
    assert evaluate_detections(at_half, annotations, 1) == {0: (pytest.approx(1.0), 1)}
    assert evaluate_detections(below, annotations, 1) == {0: (0.0, 1)}
    # The threshold is a parameter: at 0.6 the 0.5 overlap does not match.
    assert evaluate_detections(at_half, annotations, 1, iou_threshold=0.6)[0][0] == 0.0


def test_detections_only_match_boxes_of_their_own_image_and_class():
    # Box A is in image 0 for class 0. A detection of A in image 1, and a class-1 detection
    # of A in image 0, must both miss.
    annotations = [[gt(BOX_A), gt()], [gt(), gt()]]
    detections = [
        [dets(), dets(BOX_A + [0.9])],
        [dets(BOX_A + [0.8]), dets()],
    ]
    results = evaluate_detections(detections, annotations, 2)
    assert results[0] == (0.0, 1)
    # Class 1 has no ground truth: AP 0.0 and count 0 by convention.
    assert results[1] == (0.0, 0)


def test_equal_scores_keep_input_order():
    # Stable ranking: with equal scores the first row is ranked first.
    annotations = [[gt(BOX_A)]]
    tp_first = [[dets(BOX_A + [0.5], NOWHERE + [0.5])]]
    fp_first = [[dets(NOWHERE + [0.5], BOX_A + [0.5])]]
    _, precision, _ = precision_recall(tp_first, annotations, 0)
    np.testing.assert_allclose(precision, [1.0, 0.5])
    _, precision, _ = precision_recall(fp_first, annotations, 0)
    np.testing.assert_allclose(precision, [0.0, 0.5])


def test_no_detections_gives_zero_ap():
    annotations = [[gt(BOX_A)]]
    detections = [[np.zeros((0, 5))]]
    recall, precision, num = precision_recall(detections, annotations, 0)
    assert (recall.size, precision.size, num) == (0, 0, 1)
    assert evaluate_detections(detections, annotations, 1) == {0: (0.0, 1)}


def test_mismatched_image_counts_raise():
    with pytest.raises(ValueError, match="detections cover 2 images"):
        evaluate_detections([[dets()], [dets()]], [[gt()]], 1)


def test_bad_detection_shape_raises():
    with pytest.raises(ValueError, match=r"detections\[0\]\[0\] has shape \(1, 4\)"):
        evaluate_detections([[np.zeros((1, 4))]], [[gt(BOX_A)]], 1)


def test_mean_average_precision_ignores_empty_classes():
    results = {0: (1.0, 2), 1: (0.5, 3), 2: (0.0, 0)}
    # (1.0 + 0.5) / 2 = 0.75 over the two annotated classes.
    assert mean_average_precision(results) == pytest.approx(0.75)
    # (1.0 + 0.5 + 0.0) / 3 = 0.5 over all classes.
    assert mean_average_precision(results, ignore_empty=False) == pytest.approx(0.5)
    assert mean_average_precision({0: (0.0, 0)}) == 0.0


def test_plot_precision_recall_writes_png(tmp_path):
    path = tmp_path / "plots" / "dog.png"
    written = plot_precision_recall(
        np.array([1, 1, 2, 2, 2]) / 3,
        np.array([1, 1 / 2, 2 / 3, 2 / 4, 2 / 5]),
        6 / 11,
        "dog",
        path,
    )
    assert written == str(path)
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
