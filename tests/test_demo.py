"""retinanet-demo: the picture shows what the model found, whatever its scores, and says so."""

import json

import cv2
import numpy as np
import pytest

from keras_retinanet import demo, models
from keras_retinanet.inference import Detections
from keras_retinanet.visualization import label_color

GREEN = (0, 255, 0)


def pixels_of(picture, color):
    return int(np.all(picture == np.array(color, np.uint8), axis=-1).sum())


def test_picture_draws_low_scoring_best_detections_and_a_legend():
    # An early model: no score reaches 0.5. Each image still shows its best detections (as
    # many as it has boxes), in their class colour, beside the green ground truth.
    side = 96
    images = [np.full((96, 96, 3), 90, np.uint8) for _ in range(2)]
    truth = {"bboxes": np.array([[10, 10, 40, 40.0]]), "labels": np.array([0])}
    found = Detections(
        boxes=np.array([[50, 50, 90, 90], [5, 60, 30, 90]], np.float32),
        scores=np.array([0.21, 0.08], np.float32),
        labels=np.array([2, 1], np.int32),
    )
    nothing = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0))
    picture = demo.detections_picture(
        images, [truth, truth], [found, nothing], lambda k: f"c{k}", side
    )
    # One row of 4 tiles (two blank) under their 16-pixel score lines, plus the legend strip.
    assert picture.shape == (16 + side + 40, 4 * side, 3)
    first, second = picture[16 : 16 + side, :side], picture[16 : 16 + side, side : 2 * side]
    assert pixels_of(first, GREEN) > 0 and pixels_of(second, GREEN) > 0
    # The best detection (0.21 < 0.5) is drawn; the second is not (one box of ground truth).
    assert pixels_of(first, label_color(2)) > 50
    assert pixels_of(first, label_color(1)) == 0
    assert pixels_of(second, label_color(2)) == 0
    legend = picture[16 + side :]
    assert (legend == 255).mean() > 0.8 and (legend < 100).any()  # white strip with text


@pytest.mark.parametrize("backbone", [None, "mobilenet_v3_small_lite"])
def test_demo_end_to_end_prints_the_best_score(backbone, tmp_path, capsys):
    argv = ["--output-dir", str(tmp_path), "--weights", "none", "--minutes", "5",
            "--epochs", "1", "--steps", "1", "--batch-size", "2", "--image-side", "96",
            "--num-train", "4", "--num-test", "2", "--quiet"]  # fmt: skip
    demo.main(argv + (["--backbone", backbone] if backbone else []))
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["backbone"] == (backbone or "resnet50")
    assert f"shapes demo ({summary['backbone']})" in out
    # The snapshot evaluated is the asked backbone's.
    metadata = models.read_metadata(summary["snapshot"])
    assert metadata["backbone"] == summary["backbone"]
    assert 0.0 <= summary["best_score"] <= 1.0
    assert f"best detection score on the test images: {summary['best_score']:.3f}" in out
    picture = cv2.imread(summary["detections_image"])
    assert picture.shape == (16 + 96 + 40, 4 * 96, 3)
