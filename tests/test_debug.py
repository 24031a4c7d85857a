"""Tests for keras_retinanet.debug (anchor coverage) and the retinanet-debug CLI."""

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet.cli import debug as debug_cli
from keras_retinanet.debug import (
    UNCOVERED_COLOR,
    anchor_color,
    draw_coverage,
    image_coverage,
)
from keras_retinanet.model.anchors import AnchorParameters, anchors_for_shape

SMALL = ["--image-min-side", "240", "--image-max-side", "320", "--no-progress"]
SHARE = re.compile(r"boxes with no positive anchor .*: (\d+) / (\d+) = ([\d.]+)%")


def _dataset(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(missing_reason(name))
    return path


def _share(output: str) -> float:
    match = SHARE.search(output)
    assert match, output
    uncovered, boxes = int(match.group(1)), int(match.group(2))
    assert boxes > 0
    return uncovered / boxes


# --- image_coverage on a hand-made case -------------------------------------------------------


def _annotations(boxes, labels, difficult=None):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if difficult is None:
        difficult = np.zeros(len(boxes), dtype=bool)
    return {
        "bboxes": boxes,
        "labels": np.asarray(labels, dtype=np.int64),
        "difficult": np.asarray(difficult, dtype=bool),
    }


def test_image_coverage_golden_case():
    image = np.full((128, 128, 3), 90, dtype=np.uint8)
    annotations = _annotations(
        [
            # Exactly the P3 anchor of cell (2, 2) at ratio 1, scale 1: centre 20 ==
            # (2 + 0.5) * 8, side 32, so (4, 4, 36, 36): IoU 1.
            [4, 4, 36, 36],
            # 4x4 px: the smallest anchor (32x32) containing it has IoU 16 / 1024 < 0.5.
            [100, 100, 104, 104],
            # Difficult: never counted, never covered.
            [60, 10, 92, 42],
        ],
        [0, 1, 0],
        [False, False, True],
    )
    coverage = image_coverage(image, annotations, num_classes=2)
    assert coverage.best_iou[0] == pytest.approx(1.0)
    assert coverage.best_iou[1] == pytest.approx(16 / 1024, rel=1e-3)
    assert coverage.covered.tolist() == [True, False, False]
    assert coverage.counted.tolist() == [True, True, False]
    assert coverage.uncovered.tolist() == [False, True, False]
    # Training still gives the tiny box its best anchors (a low-quality match), so both easy
    # boxes have positive anchors of their class.
    assert set(coverage.positive_labels.tolist()) == {0, 1}

    # Larger anchors: the 32 px box is no longer covered (64x64 anchor: IoU 1024/4096).
    large = AnchorParameters(sizes=(64, 128, 256, 512, 1024))
    coverage = image_coverage(image, annotations, num_classes=2, anchor_parameters=large)
    assert coverage.uncovered.tolist() == [True, True, False]


def test_anchors_centred_in_the_padding_cover_nothing():
    # One level of 10 px anchors, stride 16: centres at 8, 24, 40, 56 on each axis of the
    # 64x64 padded input. The box (30, 30, 40, 40) in the corner of the 40x40 image overlaps
    # only the anchor centred at (40, 40) -> (35, 35, 45, 45), IoU 25 / 175; but that centre
    # lies in the padding, where training ignores anchors, so nothing covers the box.
    params = AnchorParameters(sizes=(10,), strides=(16,), ratios=(1.0,), scales=(1.0,))
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    annotations = _annotations([[30, 30, 40, 40]], [0])
    coverage = image_coverage(image, annotations, 1, params, padded_shape=(64, 64))
    assert coverage.best_iou[0] == 0.0
    assert not coverage.covered[0]
    # The same box moved 10 px up and left is matched exactly by the anchor at (24, 24)...
    # shifted by one pixel: (19, 19, 29, 29) vs (20, 20, 30, 30), IoU 81 / 119.
    annotations = _annotations([[20, 20, 30, 30]], [0])
    coverage = image_coverage(image, annotations, 1, params, padded_shape=(64, 64))
    assert coverage.best_iou[0] == pytest.approx(81 / 119, rel=1e-4)
    assert coverage.covered[0]


def test_draw_coverage_marks_uncovered_boxes_in_red():
    image = np.full((128, 128, 3), 90, dtype=np.uint8)
    annotations = _annotations([[4, 4, 36, 36], [100, 100, 104, 104]], [1, 1])
    coverage = image_coverage(image, annotations, num_classes=2)
    picture = draw_coverage(coverage, ["a", "b"])
    assert (image == 90).all()  # the input is not drawn on
    red = np.array(UNCOVERED_COLOR, dtype=np.uint8)
    assert (picture[104, 100:105] == red).all()  # bottom edge of the uncovered box
    assert not (picture[36, 4:37] == red).all(axis=-1).any()  # the covered box is not red
    # Positive anchors of class 1 are drawn, in a colour that is not the uncovered red.
    assert anchor_color(1) != UNCOVERED_COLOR
    assert (picture == np.array(anchor_color(1), dtype=np.uint8)).all(axis=-1).any()
    only_boxes = draw_coverage(coverage, ["a", "b"], draw_anchors=False)
    assert not (only_boxes == np.array(anchor_color(1), dtype=np.uint8)).all(axis=-1).any()


# --- the CLI on the shared datasets -----------------------------------------------------------


def test_debug_bccd_statistics_and_pictures(tmp_path, capsys):
    data = _dataset("bccd")
    output = tmp_path / "debug"
    argv = ["voc", str(data), "--limit", "4", "--output-dir", str(output)]
    assert debug_cli.main(argv + SMALL) == 0
    printed = capsys.readouterr().out
    share = _share(printed)
    for name in ("RBC", "WBC"):
        assert re.search(rf"^\s+{name}\s+\d+\s+\d+\s+[\d.]+%$", printed, re.MULTILINE)

    pictures = sorted(output.glob("*.png"))
    assert len(pictures) == 4
    picture = cv2.imread(str(pictures[0]))
    assert picture.shape[0] == 240 and picture.shape[1] == 320  # 640x480 resized
    report = json.loads((output / "coverage.json").read_text())
    assert report["images"] == 4
    assert report["uncovered_share"] == pytest.approx(share, abs=1e-3)
    assert report["classes"]["RBC"]["boxes"] > 0


def test_bad_anchor_config_raises_uncovered_share(tmp_path, capsys):
    data = _dataset("bccd")
    argv = ["voc", str(data), "--limit", "4"] + SMALL
    assert debug_cli.main(argv) == 0
    default_share = _share(capsys.readouterr().out)

    # Cells are ~30-60 px at this image size; anchors from 256 px cannot fit them.
    config = tmp_path / "huge_anchors.json"
    config.write_text(json.dumps({"sizes": [256, 512, 1024, 2048, 4096]}))
    assert debug_cli.main(argv + ["--config", str(config)]) == 0
    bad_share = _share(capsys.readouterr().out)
    assert bad_share > default_share + 0.5
    assert bad_share == pytest.approx(1.0)


def test_debug_raccoon_random_transform_anchors_only(tmp_path, capsys):
    data = _dataset("raccoon")
    output = tmp_path / "debug"
    argv = ["voc", str(data), "--limit", "3", "--random-transform", "--anchors"]
    assert debug_cli.main(argv + ["--output-dir", str(output)] + SMALL) == 0
    printed = capsys.readouterr().out
    assert _share(printed) <= 0.5  # raccoons are large: the default anchors fit most
    assert len(list(output.glob("*.png"))) == 3


def test_debug_without_output_dir_writes_nothing(tmp_path, capsys, monkeypatch):
    data = _dataset("raccoon")
    monkeypatch.chdir(tmp_path)
    assert debug_cli.main(["voc", str(data), "--limit", "2"] + SMALL) == 0
    assert "raccoon" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_debug_csv_dataset(tmp_path, capsys):
    data = _dataset("raccoon")
    image = data / "JPEGImages" / "raccoon-1.jpg"
    annotations = tmp_path / "annotations.csv"
    # raccoon-1.xml: xmin 81, ymin 88, xmax 522, ymax 408 (1-based) -> 0-based x1 = 80.
    annotations.write_text(f"{image},80,87,522,408,raccoon\n")
    classes = tmp_path / "classes.csv"
    classes.write_text("raccoon,0\n")
    output = tmp_path / "debug"
    argv = ["csv", str(annotations), str(classes), "--output-dir", str(output)]
    assert debug_cli.main(argv + SMALL) == 0
    assert _share(capsys.readouterr().out) == 0.0
    assert (output / "raccoon-1.png").is_file()


def test_debug_missing_folder_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no_such_dataset"
    assert debug_cli.main(["voc", str(missing), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_image_coverage_follows_the_variant_anchor_rule():
    # torchvision's anchors (corners rounded, centred at i * stride) are not ours (centred at
    # (i + 0.5) * stride): the positives drawn for a box in the corner are rows of
    # torchvision's grid, and the box's best IoU differs between the two rules.
    image = np.full((128, 128, 3), 90, dtype=np.uint8)
    box = _annotations([[0, 0, 16, 16]], [0])
    torchvision = image_coverage(image, box, 1, rule="torchvision")
    centred = image_coverage(image, box, 1)
    grid = anchors_for_shape((128, 128), rule="torchvision")
    assert len(torchvision.positive_anchors)
    for anchor in torchvision.positive_anchors:
        assert np.any(np.all(grid == anchor, axis=1))
    assert not np.array_equal(torchvision.best_iou, centred.best_iou)


def test_debug_reads_the_variant_of_a_snapshot(tmp_path):
    import zipfile

    snapshot = tmp_path / "converted.keras"
    with zipfile.ZipFile(snapshot, "w") as archive:  # read_metadata needs only its record
        archive.writestr("config.json", "{}")  # (and a config, to be a Keras file at all)
        record = {"variant": {"name": "torchvision_v1", "anchor_rule": "torchvision"}}
        archive.writestr("keras_retinanet.json", json.dumps(record))
    args = debug_cli.build_parser().parse_args(
        ["voc", str(_dataset("raccoon")), "--snapshot", str(snapshot)] + SMALL
    )
    generator = debug_cli.create_generator(args)
    assert generator.variant.anchor_rule == "torchvision"
