"""Tests for keras_retinanet.predict and the retinanet-predict CLI, on the shared raccoon images."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from shared_data import DATA, missing_reason

from keras_retinanet import models
from keras_retinanet.cli import predict as predict_cli
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.predict import DETECTIONS_FILE, collect_images

RACCOON = DATA / "raccoon" / "JPEGImages"
# Two colour JPEGs, a grayscale JPEG (raccoon-150) and one saved below as a PNG named .jpg.
RACCOON_IMAGES = ["raccoon-1.jpg", "raccoon-10.jpg", "raccoon-150.jpg"]
SMALL = ["--image-min-side", "96", "--image-max-side", "128", "--no-progress"]

pytestmark = pytest.mark.skipif(not RACCOON.is_dir(), reason=missing_reason())


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """An untrained one-class model saved the way retinanet-train saves snapshots."""
    model = models.retinanet_model(num_classes=1, weights=None)
    path = tmp_path_factory.mktemp("snapshot") / "raccoon.keras"
    metadata = {
        "format_version": 1,
        "epoch": 1,
        "classes": ["raccoon"],
        "num_classes": 1,
        "backbone": "resnet50",
        "anchor_parameters": AnchorParameters().to_dict(),
        "image_min_side": 96,
        "image_max_side": 128,
        "model": "training",
    }
    models.save_model(model, str(path), metadata)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Three raccoon JPEGs, a PNG named .jpg, a corrupt .jpg and a text file."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in RACCOON_IMAGES:
        shutil.copy(RACCOON / name, folder / name)
    Image.open(RACCOON / "raccoon-100.jpg").save(folder / "png-inside.jpg", format="PNG")
    # A JPEG header followed by garbage: named like an image, but cannot be decoded.
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)
    (folder / "notes.txt").write_text("not an image, and not picked from the folder")
    return folder


def _read_json(output: Path) -> dict:
    with open(output / DETECTIONS_FILE, encoding="utf-8") as f:
        return json.load(f)


def test_predict_folder_skips_unreadable_image(snapshot, image_folder, tmp_path, capsys):
    output = tmp_path / "out"
    # An untrained model scores every anchor about 0.01 (the prior), so a threshold below
    # that keeps detections to check; 0.5 would keep none.
    argv = [str(snapshot), str(image_folder), "--output", str(output), "--score-threshold", "0.005"]
    with pytest.warns(UserWarning, match="broken.jpg"):
        status = predict_cli.main(argv + SMALL + ["--batch-size", "2"])
    assert status == 0

    readable = 4  # 5 image files in the folder, one of them corrupt; notes.txt is not taken
    drawn = sorted(p.name for p in output.iterdir() if p.suffix in (".jpg", ".png"))
    assert drawn == sorted(["raccoon-1.jpg", "raccoon-10.jpg", "raccoon-150.jpg", "png-inside.jpg"])

    document = _read_json(output)
    assert document["classes"] == ["raccoon"]
    assert document["skipped"] == [str(image_folder / "broken.jpg")]
    assert "broken.jpg" in document["errors"][str(image_folder / "broken.jpg")]
    assert len(document["images"]) == readable
    total = 0
    for record in document["images"]:
        height, width = cv2.imread(record["path"], cv2.IMREAD_UNCHANGED).shape[:2]
        assert (record["width"], record["height"]) == (width, height)
        # The drawn image keeps the original size and differs from the input (boxes drawn).
        drawn_image = cv2.imread(record["output"])
        assert drawn_image.shape[:2] == (height, width)
        detections = record["detections"]
        total += len(detections)
        for detection in detections:
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
            assert detection["score"] > 0.005
            assert detection["label"] == 0 and detection["class"] == "raccoon"
        scores = [d["score"] for d in detections]
        assert scores == sorted(scores, reverse=True)
    assert total >= 1

    summary = capsys.readouterr().out
    assert f"{readable} image(s)" in summary and "1 unreadable" in summary


def test_predict_draws_boxes_on_original_pixels(snapshot, tmp_path):
    source = tmp_path / "raccoon-1.jpg"
    shutil.copy(RACCOON / "raccoon-1.jpg", source)
    output = tmp_path / "out"
    argv = [str(snapshot), str(source), "--output", str(output), "--score-threshold", "0.005"]
    assert predict_cli.main(argv + SMALL + ["--max-detections", "3"]) == 0
    record = _read_json(output)["images"][0]
    assert 1 <= len(record["detections"]) <= 3

    original = cv2.imread(str(source)).astype(np.int16)
    drawn = cv2.imread(record["output"]).astype(np.int16)
    # JPEG re-encoding changes every pixel a little; drawn outlines and captions change a lot.
    changed = np.abs(drawn - original).max(axis=-1) > 60
    assert changed.any()
    # Every strongly changed pixel lies on or near a detection box (outline, caption above).
    near_box = np.zeros(changed.shape, dtype=bool)
    for detection in record["detections"]:
        x1, y1, x2, y2 = (int(round(v)) for v in detection["box"])
        near_box[max(y1 - 25, 0) : y2 + 4, max(x1 - 4, 0) : x2 + 150] = True
    assert not (changed & ~near_box).any()


def test_predict_glob_and_class_file_for_snapshot_without_metadata(snapshot, tmp_path):
    bare = tmp_path / "bare.h5"
    models.save_model(models.load_model(str(snapshot)), str(bare))  # no metadata
    assert models.read_metadata(str(bare)) == {}
    classes = tmp_path / "classes.txt"
    classes.write_text("procyon\n")
    folder = tmp_path / "images"
    folder.mkdir()
    for name in RACCOON_IMAGES:
        shutil.copy(RACCOON / name, folder / name)
    output = tmp_path / "out"
    pattern = str(folder / "raccoon-1*.jpg")  # raccoon-1.jpg, raccoon-10.jpg, raccoon-150.jpg
    argv = [str(bare), pattern, "--output", str(output), "--score-threshold", "0.005"]
    assert predict_cli.main(argv + SMALL + ["--classes", str(classes), "--no-draw"]) == 0
    document = _read_json(output)
    assert [Path(r["path"]).name for r in document["images"]] == sorted(RACCOON_IMAGES)
    assert all(d["class"] == "procyon" for r in document["images"] for d in r["detections"])
    assert not any(p.suffix == ".jpg" for p in output.iterdir())  # --no-draw


def test_missing_input_is_an_error_naming_it(snapshot, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "photo.jpg"
    assert predict_cli.main([str(snapshot), str(missing), "--output", str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_collect_images_expands_folders_and_patterns(tmp_path):
    for name in ["b.JPG", "a.png", "c.txt", "d.jpeg"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jpg").write_bytes(b"")
    # Folder: image extensions only, case-insensitive, sorted, not recursive.
    assert [Path(p).name for p in collect_images([tmp_path])] == ["a.png", "b.JPG", "d.jpeg"]
    # Recursive glob, an explicit file of any extension, and no duplicates.
    paths = collect_images([str(tmp_path / "**" / "*.jpg"), str(tmp_path / "c.txt"), tmp_path])
    assert [Path(p).name for p in paths] == ["e.jpg", "c.txt", "a.png", "b.JPG", "d.jpeg"]
    with pytest.raises(FileNotFoundError, match="no images found"):
        with pytest.warns(UserWarning, match="matches no file"):
            collect_images([str(tmp_path / "*.gif")])
