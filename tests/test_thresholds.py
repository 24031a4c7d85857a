"""Thresholds that mean something (issue #26): precision, recall and F1 at a score threshold
and the best-F1 threshold per class, checked against filtering the detections and matching
again; the report ``retinanet-evaluate`` writes, and its per-class thresholds in
``retinanet-predict`` and ``retinanet-convert`` (``--score-threshold best:REPORT.json``)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from heads import small_snapshot

from keras_retinanet import models
from keras_retinanet.cli import convert as convert_cli
from keras_retinanet.cli import evaluate as evaluate_cli
from keras_retinanet.cli import predict as predict_cli
from keras_retinanet.evaluation.results import ClassResult
from keras_retinanet.evaluation.thresholds import (
    best_f1,
    class_thresholds_from_report,
    operating_point,
)
from keras_retinanet.evaluation.voc import precision_recall
from keras_retinanet.inference import detect


def synthetic(seed: int):
    """Detections of one class over 8 images: boxes near the ground truth (some), duplicates
    and misses, with tied scores, and one difficult box."""
    rng = np.random.default_rng(seed)
    detections, annotations = [], []
    for _ in range(8):
        boxes = rng.uniform(0, 200, (5, 2))
        boxes = np.concatenate([boxes, boxes + rng.uniform(20, 60, (5, 2))], axis=1)
        difficult = np.zeros(5, bool)
        difficult[0] = rng.random() < 0.3
        rows = []
        for box in boxes:
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 detections per box
                rows.append([*(box + rng.normal(0, 6, 4)), round(rng.random(), 1)])
        for _ in range(3):  # false positives elsewhere
            x, y = rng.uniform(250, 400, 2)
            rows.append([x, y, x + 30, y + 30, round(rng.random(), 1)])
        detections.append([np.asarray(rows, np.float64).reshape(-1, 5)])
        annotations.append([{"bboxes": boxes, "difficult": difficult}])
    return detections, annotations


def class_result(detections, annotations) -> ClassResult:
    recall, precision, boxes, scores = precision_recall(
        detections, annotations, 0, return_scores=True
    )
    return ClassResult(0, "x", 0.0, boxes, sum(len(d[0]) for d in detections), recall,
                       precision, scores)  # fmt: skip


def refiltered(detections, annotations, threshold: float) -> tuple[int, int, int]:
    """TP, FP and boxes of the detections scoring above ``threshold``, matched afresh."""
    kept = [[d[0][d[0][:, 4] > threshold]] for d in detections]
    recall, precision, boxes = precision_recall(kept, annotations, 0)
    if not len(recall):
        return 0, 0, boxes
    tp = int(round(recall[-1] * boxes))
    return tp, len(recall) - tp, boxes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operating_points_equal_filtering_and_matching_again(seed):
    detections, annotations = synthetic(seed)
    result = class_result(detections, annotations)
    for threshold in (0.0, 0.05, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0):
        point = operating_point(result, threshold)
        assert (point.true_positives, point.false_positives, point.boxes) == refiltered(
            detections, annotations, threshold
        )
        if point.true_positives:
            p, r = point.precision, point.recall
            assert point.f1 == pytest.approx(2 * p * r / (p + r))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_f1_threshold_is_the_best_of_every_threshold(seed):
    detections, annotations = synthetic(seed)
    result = class_result(detections, annotations)
    best = best_f1(result, floor=0.0)

    def f1(threshold: float) -> float:
        tp, fp, boxes = refiltered(detections, annotations, threshold)
        return 2 * tp / (2 * tp + fp + (boxes - tp)) if tp else 0.0

    grid = np.linspace(0, 1, 201)
    assert best.f1 == pytest.approx(max(f1(t) for t in grid))
    assert f1(best.threshold) == pytest.approx(best.f1)  # the threshold gives what it says
    assert 0 < best.f1 < 1


def test_report_thresholds_in_predict_and_convert(tmp_path, capsys):
    snapshot, _, _ = small_snapshot(tmp_path / "snapshot.keras")
    image = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), image)
    # Ground truth: every other confident detection (the model's AP is then between 0 and 1).
    model = models.load_model(str(snapshot), convert=True, score_threshold=0.05)
    found = detect(model, [image], 96, 128)[0]
    confident = np.flatnonzero(found.scores > 0.3)[::2]
    assert len(set(found.labels[confident].tolist())) >= 2
    names = ["a", "b", "c"]
    rows = [f"{photo},{','.join(str(int(round(v))) for v in found.boxes[i])},"
            f"{names[found.labels[i]]}" for i in confident]  # fmt: skip
    (tmp_path / "truth.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "classes.csv").write_text("a,0\nb,1\nc,2\n")

    dataset = ["csv", str(tmp_path / "truth.csv"), str(tmp_path / "classes.csv")]
    save = tmp_path / "evaluation"
    assert evaluate_cli.main([*dataset, str(snapshot), "--save-path", str(save)]) == 0
    printed = capsys.readouterr().out
    assert "best F1 at" in printed and "P@0.05" in printed
    report = json.loads((save / "report.json").read_text())
    thresholds = report["thresholds"]
    assert thresholds["score_threshold"] == pytest.approx(0.05)
    overall = thresholds["overall"]["at_threshold"]
    assert overall["recall"] == pytest.approx(1.0)  # every box is one of the detections
    assert 0 < overall["precision"] < 1
    best = class_thresholds_from_report(save / "report.json", names)
    assert len(best) == 3 and all(0.05 <= t < 1 for t in best)
    expected = sum(
        1 for s, label in zip(found.scores, found.labels) if s > best[label] and s > min(best)
    )
    assert 0 < expected < len(found)

    # retinanet-predict --score-threshold best:REPORT.json keeps each class's own cut.
    out = tmp_path / "predicted"
    argv = [str(snapshot), str(photo), "-o", str(out), "--no-progress", "--no-draw"]
    assert predict_cli.main([*argv, "--score-threshold", f"best:{save / 'report.json'}"]) == 0
    document = json.loads((out / "detections.json").read_text())
    kept = document["images"][0]["detections"]
    assert len(kept) == expected
    for detection in kept:
        assert detection["score"] > document["class_score_thresholds"][detection["class"]]

    # retinanet-convert records them; predict on the converted file applies them by default.
    converted = tmp_path / "inference.keras"
    argv_convert = [str(snapshot), str(converted), "--score-threshold",
                    f"best:{save / 'report.json'}"]  # fmt: skip
    assert convert_cli.main(argv_convert) == 0
    settings = models.read_metadata(str(converted))["detection_settings"]
    assert settings["class_score_thresholds"] == pytest.approx(list(best))
    assert settings["score_threshold"] == pytest.approx(min(best))
    out2 = tmp_path / "predicted2"
    assert predict_cli.main([str(converted), str(photo), "-o", str(out2), "--no-progress",
                             "--no-draw"]) == 0  # fmt: skip
    again = json.loads((out2 / "detections.json").read_text())["images"][0]["detections"]
    assert len(again) == expected
    # Evaluating the converted file scores every detection, not only those above the cuts.
    assert evaluate_cli.main([*dataset, str(converted)]) == 0
    assert f"{report['mAP']:.4f}" in capsys.readouterr().out


def test_bad_reports_are_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="evaluation report not found"):
        class_thresholds_from_report(tmp_path / "missing.json", ["a"])
    (tmp_path / "old.json").write_text(json.dumps({"mAP": 0.5, "classes": []}))
    with pytest.raises(ValueError, match="thresholds.best_thresholds"):
        class_thresholds_from_report(tmp_path / "old.json", ["a"])
    (tmp_path / "other.json").write_text(
        json.dumps({"thresholds": {"best_thresholds": {"cat": 0.4}}})
    )
    with pytest.raises(ValueError, match="does not know: \\['cat'\\]"):
        class_thresholds_from_report(tmp_path / "other.json", ["dog"])
    with pytest.raises(SystemExit):
        predict_cli.main(["m.keras", "x.jpg", "--score-threshold", "best:"])
    assert "name the report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_cli.main(["m.keras", "x.jpg", "--score-threshold", "1.5"])
    assert "best:REPORT.json" in capsys.readouterr().err
