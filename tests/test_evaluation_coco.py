"""Tests for keras_retinanet.evaluation.coco against pycocotools run by hand."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retinanet.evaluation.coco import (
    COCO_METRIC_NAMES,
    coco_ground_truth,
    coco_results,
    evaluate_coco,
)

CLASS_NAMES = ["cat", "dog", "bird"]


def random_dataset(seed=0, num_images=5):
    """Ground truth and noisy detections for 3 classes over a few 480 x 640 images.

    Box sides are drawn from 12 to 200 px so that small (< 32^2), medium and large
    (> 96^2) areas all occur. Each box is found with probability 0.8, with jitter, and each
    image/class gets up to 2 random false positives. The last box of image 0, class 0, is
    difficult.
    """
    rng = np.random.default_rng(seed)
    detections, annotations, sizes = [], [], []
    for _ in range(num_images):
        dets_image, anns_image = [], []
        for _ in CLASS_NAMES:
            count = int(rng.integers(1, 4))
            wh = rng.choice([12.0, 25.0, 45.0, 80.0, 130.0, 200.0], size=(count, 2))
            xy = rng.uniform(0, 400, size=(count, 2))
            boxes = np.concatenate([xy, xy + wh], axis=1)
            found = rng.random(count) < 0.8
            jitter = rng.uniform(-0.25, 0.25, size=(count, 4)) * np.tile(wh, 2)
            hits = (boxes + jitter)[found]
            false_pos_xy = rng.uniform(0, 400, size=(int(rng.integers(0, 3)), 2))
            false_pos = np.concatenate([false_pos_xy, false_pos_xy + 50.0], axis=1)
            det_boxes = np.concatenate([hits, false_pos])
            scores = rng.uniform(0.05, 1.0, size=(len(det_boxes), 1))
            dets_image.append(np.concatenate([det_boxes, scores], axis=1))
            anns_image.append({"bboxes": boxes, "difficult": np.zeros(count, dtype=bool)})
        detections.append(dets_image)
        annotations.append(anns_image)
        sizes.append((480, 640))
    annotations[0][0]["difficult"][-1] = True
    return detections, annotations, sizes


def pycocotools_by_hand(detections, annotations, sizes, tmp_path):
    """Writes COCO JSON files with a loop independent of the module and runs COCOeval."""
    gt_json = {
        "images": [{"id": i + 1, "height": h, "width": w} for i, (h, w) in enumerate(sizes)],
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate(CLASS_NAMES)],
        "annotations": [],
    }
    results = []
    for i in range(len(sizes)):
        for c in range(len(CLASS_NAMES)):
            entry = annotations[i][c]
            for (x1, y1, x2, y2), difficult in zip(entry["bboxes"], entry["difficult"]):
                gt_json["annotations"].append(
                    {
                        "id": len(gt_json["annotations"]) + 1,
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": int(difficult),
                    }
                )
            for x1, y1, x2, y2, score in detections[i][c]:
                results.append(
                    {
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score,
                    }
                )
    gt_path = tmp_path / "gt.json"
    results_path = tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt_json))
    results_path.write_text(json.dumps(results))
    coco_gt = COCO(str(gt_path))
    coco_dt = coco_gt.loadRes(str(results_path))
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def test_matches_pycocotools_run_directly(tmp_path):
    detections, annotations, sizes = random_dataset()
    expected = pycocotools_by_hand(detections, annotations, sizes, tmp_path)
    metrics = evaluate_coco(detections, annotations, sizes, CLASS_NAMES)
    assert list(metrics) == list(COCO_METRIC_NAMES)
    np.testing.assert_allclose([metrics[k] for k in COCO_METRIC_NAMES], expected, atol=1e-12)
    # The data must make the comparison meaningful: a middling AP and every area range used.
    assert 0.1 < metrics["AP"] < 0.9
    assert all(metrics[k] >= 0 for k in ("APs", "APm", "APl"))


def test_perfect_detections_give_ap_one():
    _, annotations, sizes = random_dataset(seed=1)
    detections = [
        [
            np.concatenate([entry["bboxes"], np.linspace(1, 0.5, len(entry["bboxes"]))[:, None]], 1)
            for entry in image
        ]
        for image in annotations
    ]
    metrics = evaluate_coco(detections, annotations, sizes, CLASS_NAMES)
    # Every non-difficult box is found at IoU 1 with no false positive: precision 1 at every
    # recall and IoU threshold, so AP = AP50 = AP75 = 1 and AR100 = 1.
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert metrics[name] == pytest.approx(1.0), name


def test_no_detections_gives_zero_where_defined_and_minus_one_elsewhere():
    # Two 50 x 50 boxes: area 2500 is "medium" (32^2 .. 96^2); no small or large box exists.
    annotations = [[{"bboxes": np.array([[10, 10, 60, 60], [100, 100, 150, 150.0]])}]]
    detections = [[np.zeros((0, 5))]]
    metrics = evaluate_coco(detections, annotations, [(200, 200)], ["cat"])
    for name in ("AP", "AP50", "AP75", "APm", "AR1", "AR10", "AR100", "ARm"):
        assert metrics[name] == 0.0, name
    # COCOeval reports -1 for an area range with no ground truth.
    for name in ("APs", "APl", "ARs", "ARl"):
        assert metrics[name] == -1.0, name


def test_detection_on_difficult_box_is_ignored():
    # Box 0 normal, box 1 difficult. One detection on each; the difficult hit scores higher.
    annotations = [
        [{"bboxes": np.array([[0, 0, 50, 50], [100, 0, 150, 50.0]]), "difficult": [False, True]}]
    ]
    with_difficult = [[np.array([[100, 0, 150, 50, 0.9], [0, 0, 50, 50, 0.8]])]]
    without = [[np.array([[0, 0, 50, 50, 0.8]])]]
    a = evaluate_coco(with_difficult, annotations, [(100, 200)], ["cat"])
    b = evaluate_coco(without, annotations, [(100, 200)], ["cat"])
    # Had the difficult hit been a false positive ranked first, AP would be about 0.5.
    assert a["AP"] == pytest.approx(1.0)
    # COCOeval still lets an ignored detection fill one of the maxDets slots: with one slot,
    # the difficult hit (score 0.9) takes it and the normal box is not recalled.
    assert (a["AR1"], b["AR1"]) == (0.0, 1.0)
    del a["AR1"], b["AR1"]
    assert a == b


def test_ground_truth_conversion():
    annotations = [
        [{"bboxes": np.array([[10, 20, 40, 60.0]]), "difficult": np.array([True])}, {"bboxes": []}],
        [{"bboxes": np.zeros((0, 4))}, {"bboxes": np.array([[0, 0, 5, 5.0], [1, 1, 3, 4.0]])}],
    ]
    coco = coco_ground_truth(annotations, [(100, 200), (50, 60)], ["cat", "dog"])
    assert [(img["id"], img["height"], img["width"]) for img in coco.dataset["images"]] == [
        (1, 100, 200),
        (2, 50, 60),
    ]
    assert [cat["id"] for cat in coco.dataset["categories"]] == [1, 2]
    anns = coco.dataset["annotations"]
    # [10, 20, 40, 60] -> x, y, w = 40 - 10, h = 60 - 20; area 30 * 40 = 1200.
    assert anns[0]["bbox"] == [10.0, 20.0, 30.0, 40.0]
    assert anns[0]["area"] == 1200.0
    assert [a["iscrowd"] for a in anns] == [1, 0, 0]
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert [(a["image_id"], a["category_id"]) for a in anns] == [(1, 1), (2, 2), (2, 2)]
    # [1, 1, 3, 4] -> w 2, h 3, area 6.
    assert anns[2]["area"] == 6.0
    json.dumps(coco.dataset)  # serialisable as is


def test_results_conversion():
    detections = [[np.array([[10, 20, 40, 60, 0.7]]), np.zeros((0, 5))]]
    results = coco_results(detections, 2)
    assert results == [
        {"image_id": 1, "category_id": 1, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.7}
    ]
    assert all(type(v) is float for v in results[0]["bbox"])


def test_mismatched_lengths_raise():
    annotations = [[{"bboxes": np.zeros((0, 4))}]]
    with pytest.raises(ValueError, match="image_sizes has 2 entries"):
        coco_ground_truth(annotations, [(10, 10), (10, 10)], ["cat"])
    with pytest.raises(ValueError, match="detections cover 2 images"):
        evaluate_coco([[np.zeros((0, 5))]] * 2, annotations, [(10, 10)], ["cat"])


def test_quiet_unless_verbose(capsys):
    detections, annotations, sizes = random_dataset(num_images=2)
    evaluate_coco(detections, annotations, sizes, CLASS_NAMES)
    assert capsys.readouterr().out == ""
    evaluate_coco(detections, annotations, sizes, CLASS_NAMES, verbose=True)
    assert "Average Precision" in capsys.readouterr().out
