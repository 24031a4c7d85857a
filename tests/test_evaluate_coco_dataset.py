"""COCO data is scored against its own annotation file: crowd regions, areas and ids as given.

Checked against pycocotools' ``COCOeval`` run by hand on the same detections JSON, on the
review's case (a 40x40 person whose json area is 900, and a crowd box) and end to end through
``retinanet-evaluate coco``.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from shared_data import DATA, missing_reason

from keras_retinanet.evaluation.coco import COCO_METRIC_NAMES
from keras_retinanet.evaluation.reports import write_coco_results
from keras_retinanet.evaluation.runner import evaluate
from keras_retinanet.preprocessing.coco import CocoGenerator

VOC2007 = DATA / "voc2007_sample"


def write_coco(root, images, categories, annotations, set_name="val"):
    """A COCO-layout folder: annotations/instances_<set>.json and <set>/<file>."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / set_name).mkdir(exist_ok=True)
    for image in images:
        if "pixels" in image:
            cv2.imwrite(str(root / set_name / image["file_name"]), image.pop("pixels"))
    dataset = {"images": images, "categories": categories, "annotations": annotations}
    path = root / "annotations" / f"instances_{set_name}.json"
    path.write_text(json.dumps(dataset))
    return path


def cocoeval_by_hand(annotation_file, results_file, image_ids=None):
    ground_truth = COCO(str(annotation_file))
    detections = ground_truth.loadRes(str(results_file))
    evaluator = COCOeval(ground_truth, detections, iouType="bbox")
    if image_ids is not None:
        evaluator.params.imgIds = sorted(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return dict(zip(COCO_METRIC_NAMES, (float(v) for v in evaluator.stats)))


class FixedDetector:
    """An inference model that returns the same detections (network pixels) for any input."""

    def __init__(self, boxes, scores, labels):
        self.outputs = [np.asarray(v)[None] for v in (boxes, scores, labels)]

    def predict_on_batch(self, batch):
        assert len(batch) == 1
        return [v.astype(np.float32 if k < 2 else np.int32) for k, v in enumerate(self.outputs)]


def test_crowd_regions_and_json_areas_count_as_pycocotools_says(tmp_path):
    # One 100x100 image: a person at (10, 10) 40x40 whose json area is 900 (a segmentation
    # area, under 32^2: small), and a crowd box at (50, 50). A detection on each. pycocotools:
    # the person is found (AP 1), the crowd detection is ignored, APs 1 and APm -1 (no
    # medium object). Rebuilding the ground truth with area = w * h = 1600 (medium) and no
    # crowd box gave AP 0.5, APs -1, APm 0.5.
    annotation_file = write_coco(
        tmp_path,
        [{"id": 7, "file_name": "a.jpg", "height": 100, "width": 100,
          "pixels": np.full((100, 100, 3), 128, np.uint8)}],
        [{"id": 1, "name": "person"}],
        [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 900,
          "iscrowd": 0},
         {"id": 2, "image_id": 7, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600,
          "iscrowd": 1}],
    )  # fmt: skip
    generator = CocoGenerator(tmp_path, "val", image_min_side=100, image_max_side=100)
    model = FixedDetector([[10, 10, 50, 50], [50, 50, 90, 90]], [0.9, 0.8], [0, 0])
    result = evaluate(generator, model, metric="coco", verbose=0)
    metrics = result.coco_metrics
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["APs"] == pytest.approx(1.0)
    assert metrics["APm"] == -1.0
    # The per-class table ignores the detection on the crowd region too (it counted it as a
    # false positive: AP 0.5 beside COCO's AP50 of 1.0).
    assert metrics["AP50"] == pytest.approx(1.0)
    assert result.classes[0].average_precision == pytest.approx(1.0)
    assert result.classes[0].num_annotations == 1
    results_file = write_coco_results(generator, result, tmp_path / "detections.json")
    rows = json.loads(Path(results_file).read_text())
    assert {(r["image_id"], r["category_id"]) for r in rows} == {(7, 1)}  # the file's ids
    assert metrics == cocoeval_by_hand(annotation_file, results_file)


@pytest.mark.skipif(not VOC2007.is_dir(), reason=missing_reason())
def test_retinanet_evaluate_coco_equals_cocoeval_by_hand(tmp_path, capsys):
    # The five voc2007_sample images as a COCO set with sparse category ids. First run: any
    # ground truth, to get the model's (deterministic) detections. Then ground truth made of
    # some of those detections (json areas halved, some boxes crowds), so that the metrics are
    # far from 0, and the second run's report must equal COCOeval on its detections.json.
    from keras_retinanet import models
    from keras_retinanet.cli import evaluate as evaluate_cli

    names = sorted(p.stem for p in (VOC2007 / "JPEGImages").glob("*.jpg"))
    images = []
    for k, name in enumerate(names):
        pixels = cv2.imread(str(VOC2007 / "JPEGImages" / f"{name}.jpg"))
        images.append({"id": 100 + 3 * k, "file_name": f"{name}.jpg", "pixels": pixels,
                       "height": pixels.shape[0], "width": pixels.shape[1]})  # fmt: skip
    categories = [{"id": 2 * c + 5, "name": f"class{c}"} for c in range(3)]
    first = [{"id": 1, "image_id": 100, "category_id": 5, "bbox": [0, 0, 50, 50], "area": 2500,
              "iscrowd": 0}]  # fmt: skip
    annotation_file = write_coco(tmp_path / "coco", images, categories, first)
    model = models.retinanet_model(num_classes=3, weights=None)
    snapshot = tmp_path / "model.keras"
    classes = [c["name"] for c in categories]
    models.save_model(model, str(snapshot), {"num_classes": 3, "classes": classes})

    def run(out):
        argv = ["coco", str(tmp_path / "coco"), str(snapshot), "--set", "val",
                "--image-min-side", "96", "--image-max-side", "128", "--score-threshold", "0",
                "--max-detections", "20", "--quiet", "--save-path", str(out)]  # fmt: skip
        evaluate_cli.main(argv)
        report = json.loads((out / "report.json").read_text())
        return report, json.loads((out / "detections.json").read_text())

    _, detections = run(tmp_path / "first")
    assert len(detections) == 5 * 20
    truth = []
    for k, row in enumerate(sorted(detections, key=lambda r: -r["score"])[::3]):
        x, y, w, h = row["bbox"]
        truth.append({"id": k + 1, "image_id": row["image_id"],
                      "category_id": row["category_id"], "bbox": [x, y, w, h],
                      "area": w * h / 2, "iscrowd": int(k % 4 == 3)})  # fmt: skip
    annotation_file.write_text(
        json.dumps(
            {
                "images": [{k: v for k, v in i.items() if k != "pixels"} for i in images],
                "categories": categories,
                "annotations": truth,
            }
        )  # fmt: skip
    )
    report, detections_again = run(tmp_path / "second")
    assert detections_again == detections  # same model, same images
    expected = cocoeval_by_hand(annotation_file, tmp_path / "second" / "detections.json")
    assert report["coco"] == expected
    assert expected["AP50"] > 0.2  # the comparison is not between two zeros
    assert report["metric"] == "coco"
