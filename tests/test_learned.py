"""Tests for keras_retinanet.learned (has the model learned each class?) and
``retinanet-debug --scores``."""

import json

import numpy as np
import pytest

from keras_retinanet.learned import (
    ScoreReport,
    logit_histogram,
    median_probability,
    separation,
)
from keras_retinanet.model.anchors import anchors_for_shape
from keras_retinanet.model.targets import anchor_targets_bbox


def _pairwise_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    above = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(above + 0.5 * ties)


@pytest.mark.parametrize("shift", [0.0, 0.7, 2.5, -1.0])
def test_separation_from_histograms_matches_every_pair(shift):
    rng = np.random.default_rng(1)
    positive_logits = rng.normal(shift, 1.0, 700)
    negative_logits = rng.normal(0.0, 1.0, 3000)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    exact = _pairwise_auc(positive_logits, negative_logits)
    estimate = separation(
        logit_histogram(sigmoid(positive_logits)), logit_histogram(sigmoid(negative_logits))
    )
    assert estimate == pytest.approx(exact, abs=0.005)


def test_separation_edge_cases():
    low, high = logit_histogram(np.full(5, 0.01)), logit_histogram(np.full(5, 0.99))
    assert separation(high, low) == 1.0 and separation(low, high) == 0.0
    assert separation(low, low) == 0.5  # all tied
    assert np.isnan(separation(np.zeros_like(low), low))
    assert median_probability(logit_histogram([0.2, 0.3, 0.9])) == pytest.approx(0.3, abs=0.01)


BOXES = {
    "bboxes": np.array([[10, 10, 42, 42], [70, 60, 102, 92], [20, 64, 84, 124]], np.float32),
    "labels": np.array([0, 0, 1]),
}


def _scene(annotations=BOXES, coder="corners"):
    """A 128x128 image with two boxes of class 0 and one of class 1: its anchors and targets."""
    image = np.zeros((128, 128, 3), np.uint8)
    anchors = anchors_for_shape((128, 128))
    regression, classification = anchor_targets_bbox(
        anchors, [image], [annotations], 2, coder=coder
    )
    return anchors, regression[0], classification[0]


def test_a_model_that_scores_its_own_anchors_is_learned_and_finds_every_box():
    anchors, regression, classification = _scene()
    state = classification[:, -1]
    probabilities = np.where(classification[:, :2] == 1, 0.9, 0.05).astype(np.float32)
    probabilities[state == -1] = 0.99  # ignored anchors must not count
    report = ScoreReport(["a", "b"])
    # Perfect regression: the deltas are the targets.
    report.add_image(anchors, regression, classification, probabilities, regression[:, :4],
                     (128, 128), BOXES)  # fmt: skip
    assert [report.separation(k) for k in (0, 1)] == [1.0, 1.0]
    assert list(report.boxes) == [2, 1] and list(report.found) == [2, 1]
    assert report.verdict(0).startswith("learned")
    assert report.to_dict()["classes"]["b"]["found"] == 1


def test_chance_scores_are_not_learned_and_bad_boxes_are_not_found():
    anchors, regression, classification = _scene()
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.01, 0.1, classification[:, :2].shape).astype(np.float32)
    # Deltas that push every box 3 anchor-widths to the right: IoU 0 with its target.
    deltas = regression[:, :4].copy()
    deltas[:, 0] += 3 / 0.2
    deltas[:, 2] += 3 / 0.2
    report = ScoreReport(["a", "b"])
    report.add_image(anchors, regression, classification, probabilities, deltas, (128, 128), BOXES)
    assert 0.3 < report.separation(0) < 0.7
    assert report.verdict(0).startswith("not learned")
    assert list(report.found) == [0, 0]
    # Separated but misplaced.
    report = ScoreReport(["a", "b"])
    scored = np.where(classification[:, :2] == 1, 0.9, 0.05).astype(np.float32)
    report.add_image(anchors, regression, classification, scored, deltas, (128, 128), BOXES)
    assert report.separation(0) == 1.0 and report.verdict(0).startswith("learned but misplaced")


def test_anchors_centred_in_the_padding_do_not_count():
    anchors, regression, classification = _scene()
    probabilities = np.where(classification[:, :2] == 1, 0.9, 0.05).astype(np.float32)
    centre_x = (anchors[:, 0] + anchors[:, 2]) / 2
    probabilities[centre_x >= 100] = 0.999  # the image is 100 wide, padded to 128
    report = ScoreReport(["a", "b"])
    report.add_image(anchors, regression, classification, probabilities, regression[:, :4],
                     (128, 100), BOXES)  # fmt: skip
    assert report.separation(0) == 1.0
    # Counted, the padding's high scores would have outranked the positives.
    unpadded = ScoreReport(["a", "b"])
    unpadded.add_image(anchors, regression, classification, probabilities, regression[:, :4],
                       (128, 128), BOXES)  # fmt: skip
    assert unpadded.separation(0) < 1.0


def test_boxes_with_fractional_corners_are_each_counted_once():
    # Resized boxes have fractional corners; each positive anchor goes to the box its decoded
    # target matches, whatever the rounding of the decoding.
    rng = np.random.default_rng(4)
    boxes = {
        "bboxes": (BOXES["bboxes"] * 1.25 - 11.95).clip(0, 127) + rng.uniform(0, 0.1, (3, 4)),
        "labels": BOXES["labels"],
    }
    for coder in ("corners", "centre_size"):
        anchors, regression, classification = _scene(boxes, coder)
        probabilities = np.where(classification[:, :2] == 1, 0.9, 0.05).astype(np.float32)
        report = ScoreReport(["a", "b"])
        report.add_image(anchors, regression, classification, probabilities,
                         regression[:, :4], (128, 128), boxes, box_coder=coder)  # fmt: skip
        assert list(report.annotated) == [2, 1]
        assert list(report.boxes) == [2, 1] and list(report.found) == [2, 1], coder


def test_the_centre_size_coder_decodes_the_model_deltas():
    anchors, regression, classification = _scene(coder="centre_size")
    probabilities = np.where(classification[:, :2] == 1, 0.9, 0.05).astype(np.float32)
    # A centre-size dw of log(3) makes every box three times as wide (IoU 1/3: not found);
    # read as the corners coder's x2 offset it moves x2 by 0.22 anchor widths (found).
    deltas = regression[:, :4].copy()
    deltas[:, 2] += np.log(3.0)
    for coder, found in (("centre_size", [0, 0]), ("corners", [2, 1])):
        report = ScoreReport(["a", "b"])
        report.add_image(anchors, regression, classification, probabilities, deltas,
                         (128, 128), BOXES, box_coder=coder)  # fmt: skip
        assert list(report.found) == found, coder


# --- retinanet-debug --scores -------------------------------------------------------------


def test_debug_scores_of_an_untrained_snapshot(tmp_path, capsys):
    from heads import MAX_SIDE, MIN_SIDE, small_snapshot

    from keras_retinanet import models
    from keras_retinanet.cli import debug as debug_cli
    from keras_retinanet.datasets.shapes import SHAPE_CLASSES, write_shapes_dataset

    data = write_shapes_dataset(tmp_path / "shapes", num_train=1, num_test=3,
                                image_size=(96, 128), shape_size=(24, 60))  # fmt: skip
    snapshot, model, _ = small_snapshot(tmp_path / "small.keras")
    output = tmp_path / "out"
    argv = ["voc", str(data), "--set", "test", "--snapshot", str(snapshot), "--scores",
            "--output-dir", str(output), "--no-progress", "--image-min-side", str(MIN_SIDE),
            "--image-max-side", str(MAX_SIDE)]  # fmt: skip
    # The snapshot's classes (a, b, c) are the ones read: the shapes' names are not among them.
    assert debug_cli.main(argv) == 2
    assert "'rectangle', which is not in the class list ['a', 'b', 'c']" in capsys.readouterr().err
    metadata = dict(models.read_metadata(str(snapshot)), classes=list(SHAPE_CLASSES))
    models.save_model(model, str(snapshot), metadata=metadata)
    assert debug_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "scores of the model at the anchors, 3 images" in out
    figures = json.loads((output / "scores.json").read_text())
    assert figures["images"] == 3
    counted = [c for c in figures["classes"].values() if c["boxes"]]
    assert counted, figures
    for figures_of_class in counted:
        # Random weights: no class is learned.
        assert figures_of_class["separation"] < 0.95
        assert not figures_of_class["verdict"].startswith("learned")


def test_debug_scores_needs_a_training_snapshot_and_its_anchors(tmp_path, capsys):
    from heads import ANCHORS, small_snapshot

    from keras_retinanet import models
    from keras_retinanet.cli import debug as debug_cli

    with pytest.raises(SystemExit):
        debug_cli.main(["voc", str(tmp_path), "--scores", "--no-progress"])
    assert "--scores needs --snapshot" in capsys.readouterr().err

    snapshot, model, _ = small_snapshot(tmp_path / "small.keras")
    with pytest.raises(SystemExit):
        debug_cli.main(["voc", str(tmp_path), "--snapshot", str(snapshot), "--scores",
                        "--config", "anchors.json", "--no-progress"])  # fmt: skip
    assert "leave out --config" in capsys.readouterr().err

    inference = tmp_path / "inference.keras"
    wrapped = models.retinanet_box(model, anchor_parameters=ANCHORS)
    models.save_model(wrapped, str(inference), {"model": "inference"})
    argv = ["voc", str(tmp_path), "--snapshot", str(inference), "--scores", "--no-progress"]
    assert debug_cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "is an inference model" in error and str(inference) in error


def test_debug_scores_on_bccd(tmp_path, capsys):
    # The real dense dataset (up to 30 boxes an image), with an untrained 3-class snapshot
    # given BCCD's class names: every box is counted once, and nothing is learned.
    from heads import MAX_SIDE, MIN_SIDE, small_snapshot
    from shared_data import shared

    from keras_retinanet import models
    from keras_retinanet.cli import debug as debug_cli

    data = shared("bccd")
    snapshot, model, _ = small_snapshot(tmp_path / "small.keras")
    classes = (data / "classes.txt").read_text().split()
    metadata = dict(models.read_metadata(str(snapshot)), classes=classes)
    models.save_model(model, str(snapshot), metadata=metadata)
    argv = ["voc", str(data), "--set", "test", "--snapshot", str(snapshot), "--scores",
            "--limit", "3", "--output-dir", str(tmp_path / "out"), "--no-progress",
            "--image-min-side", str(MIN_SIDE), "--image-max-side", str(MAX_SIDE)]  # fmt: skip
    assert debug_cli.main(argv) == 0
    capsys.readouterr()
    coverage = json.loads((tmp_path / "out" / "coverage.json").read_text())
    figures = json.loads((tmp_path / "out" / "scores.json").read_text())["classes"]
    assert sum(c["annotated"] for c in figures.values()) == coverage["boxes"]
    for name in classes:
        assert figures[name]["found"] <= figures[name]["boxes"] <= figures[name]["annotated"]
        if figures[name]["boxes"]:
            assert not figures[name]["verdict"].startswith("learned")
